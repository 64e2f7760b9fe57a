"""pylstm.onnx and int8 (issue 26): ONNX Runtime's com.microsoft DynamicQuantizeLSTM through pylstm.onnx.run and
to_module (the models onnxruntime.quantization.quantize_dynamic writes), and export() of a pylstm.quantize model
as that node, run by ONNX Runtime. Results are compared as ‖a − b‖ / ‖b‖ over the whole output: the int8 maths of
the two libraries differ (ORT quantizes each step's activations per tensor, pylstm per row)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

import pylstm  # noqa: E402
import pylstm.onnx as px  # noqa: E402


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_quantized(model, tmp_path, **kw):
    """What onnxruntime.quantization.quantize_dynamic writes from `model`."""
    src, dst = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save(model, src)
    quantization.quantize_dynamic(str(src), str(dst), **kw)
    return onnx.load(dst)


CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True), dict(bias=False)]


@pytest.mark.parametrize("config", CONFIGS, ids=["one layer", "two layers both ways", "batch_first", "no bias"])
@pytest.mark.parametrize("weights", ["QInt8", "QInt8 per channel", "QUInt8"])
def test_ort_quantize_dynamic_output_runs_through_run_and_to_module(config, weights, tmp_path):
    m = pylstm.LSTM(12, 20, seed=1, **config).eval()
    kw = dict(weight_type=getattr(quantization.QuantType, weights.split()[0]), per_channel="channel" in weights)
    model = ort_quantized(px.export(m), tmp_path, **kw)
    ops = sorted({(n.domain, n.op_type) for n in model.graph.node})
    assert ("com.microsoft", "DynamicQuantizeLSTM") in ops and all(op in ("DynamicQuantizeLSTM", "Transpose",
                                                                          "Reshape", "Identity", "Concat")
                                                                   for _, op in ops)
    x = np.random.default_rng(2).standard_normal((9, 4, 12) if not config.get("batch_first") else (4, 9, 12))
    x = x.astype(np.float32)
    theirs = session(model).run(None, {"input": x})
    ours = px.run(model, {"input": x})
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert rel(a, b) < 1e-2
    q = px.to_module(model)
    assert isinstance(q, pylstm.QuantizedLSTM)
    out, (h_n, c_n) = q(x)
    np.testing.assert_allclose(out, ours[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_n, ours[1], rtol=1e-5, atol=1e-6)
    # Against pylstm's own float32 on the weights before quantization: the int8 error, both libraries.
    y32, _ = m(x)
    assert rel(ours[0], y32) < 2e-2 and rel(theirs[0], y32) < 2e-2


def test_the_models_integers_are_kept_when_they_are_pylstms_form(tmp_path):
    m = pylstm.LSTM(6, 8, seed=3)
    model = ort_quantized(px.export(m), tmp_path, weight_type=quantization.QuantType.QInt8, per_channel=True)
    q = px.to_module(model)
    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    W = init["W_l0_quantized"][0].T  # (4H, I) in ONNX's gate order i, o, f, c
    H = 8
    torch_order = np.concatenate([W[:H], W[2 * H:3 * H], W[3 * H:], W[H:2 * H]])  # i, f, c(g), o
    np.testing.assert_array_equal(q.state_dict()["weight_ih_l0"], torch_order)


@pytest.mark.parametrize("config", CONFIGS[:3], ids=["one layer", "two layers both ways", "batch_first"])
def test_export_of_an_int8_lstm_runs_in_onnx_runtime(config, tmp_path):
    q = pylstm.quantize(pylstm.LSTM(10, 16, seed=4, peepholes=False, **config), "int8")
    model = px.export(q, tmp_path / "q.onnx")
    assert [n.op_type for n in model.graph.node if n.domain == "com.microsoft"] == \
        ["DynamicQuantizeLSTM"] * q.num_layers
    x = np.random.default_rng(5).standard_normal((7, 3, 10)).astype(np.float32)
    ours, (h_n, c_n) = q(x)
    theirs = session(onnx.load(tmp_path / "q.onnx")).run(None, {"input": x})
    assert rel(theirs[0], ours) < 1e-2 and rel(theirs[1], h_n) < 1e-2 and rel(theirs[2], c_n) < 1e-2
    back = px.to_module(model)  # the exported integers and scales come back as they were
    for k, v in q.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)


def test_run_takes_the_layout_operators_and_names_any_other():
    g = pylstm.GRU(2, 3, 2, bidirectional=True, seed=0).eval()
    x = np.random.default_rng(6).standard_normal((4, 2, 2)).astype(np.float32)
    y, h_n = px.run(px.export(g), {"input": x})
    out, h = g(x)
    np.testing.assert_allclose(y, out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_n, h, rtol=1e-5, atol=1e-6)
    model = px.export(g)
    model.graph.node.append(onnx.helper.make_node("Relu", ["output"], ["relu"]))
    with pytest.raises(ValueError, match="not Relu"):
        px.run(model, {"input": x})


@pytest.mark.skipif(pylstm.config()["bf16"] == "none", reason="no bfloat16 products at this level")
def test_a_bfloat16_lstm_has_no_onnx_form():
    with pytest.raises(ValueError, match="no ONNX form"):
        px.export(pylstm.quantize(pylstm.LSTM(3, 4), "bfloat16"))
