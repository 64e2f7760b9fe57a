"""Streaming inference: a 2-layer LSTM (I = H = 256, float32, batch 1) called once per time step with the state
carried, pylstm against torch and ONNX Runtime in one run.

    pytest benchmarks -k stream --benchmark-enable --benchmark-json=stream.json
    python benchmarks/table.py stream.json

"pylstm-stream" is ``layer.stream().step(x_t)``; "pylstm-int8-stream" the same on ``pylstm.quantize(layer, "int8")``
(1 MB of int8 weights in place of 4 MB); "pylstm-call" is ``out, state = layer(x_t, state)`` on a one-step
sequence; "torch" is nn.LSTM(256, 256, 2) on a one-step sequence under inference_mode; "ort" is one session run
per step of a model with both layers (two LSTM nodes, the states as inputs and outputs). Each round runs STEPS
steps; the table divides by STEPS. Compare with ../shared/tools/stream-floor 2 4 (reading the 4 MB of weights).
"""

import time
from functools import partial

import numpy as np
import pytest

import pylstm

I = H = 256
LAYERS, N, STEPS, THREADS = 2, 1, 200, 2
SETTLE_S = 0.5


def _inputs():
    return np.random.default_rng(0).standard_normal((STEPS, N, I)).astype(np.float32)


def _pylstm_stream(dtype=None):
    m = pylstm.LSTM(I, H, LAYERS, seed=0).eval()
    if dtype is not None:
        m = pylstm.quantize(m, dtype)
    xs = _inputs()
    s = m.stream()

    def run():
        for x in xs:
            s.step(x)
    return run


def _pylstm_call():
    m = pylstm.LSTM(I, H, LAYERS, seed=0).eval()
    xs = _inputs()[:, None]
    state = [None]

    def run():
        st = state[0]
        for x in xs:
            _, st = m(x, st)
        state[0] = st
    return run


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(THREADS)
    m = torch.nn.LSTM(I, H, LAYERS).eval()
    xs = torch.from_numpy(_inputs()[:, None])
    state = [None]

    def run():
        st = state[0]
        with torch.inference_mode():
            for x in xs:
                _, st = m(x, st)
        state[0] = st
    return run


def _ort_model(m):
    """Both layers of m as one ONNX graph: X (1, N, I) and each layer's h, c in; Y (N, H) and the new states out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    order = [0, 3, 1, 2]  # PyTorch's gates i, f, g, o in ONNX's order i, o, f, c
    p = m.state_dict()

    def reorder(w):
        return np.concatenate([w[g * H:(g + 1) * H] for g in order], axis=0)

    nodes, inits, inputs, outputs = [], [], [], []
    f32 = TensorProto.FLOAT
    inputs.append(helper.make_tensor_value_info("X", f32, [1, N, I]))
    x = "X"
    for l in range(LAYERS):
        W = reorder(p[f"weight_ih_l{l}"])[None]
        R = reorder(p[f"weight_hh_l{l}"])[None]
        B = np.concatenate([reorder(p[f"bias_ih_l{l}"]), reorder(p[f"bias_hh_l{l}"])])[None]
        inits += [numpy_helper.from_array(a.astype(np.float32), f"{n}{l}") for a, n in ((W, "W"), (R, "R"), (B, "B"))]
        inputs += [helper.make_tensor_value_info(f"h{l}", f32, [1, N, H]),
                   helper.make_tensor_value_info(f"c{l}", f32, [1, N, H])]
        nodes.append(helper.make_node("LSTM", [x, f"W{l}", f"R{l}", f"B{l}", "", f"h{l}", f"c{l}"],
                                      [f"Y{l}", f"h{l}_out", f"c{l}_out"], hidden_size=H))
        inits.append(numpy_helper.from_array(np.array([1], np.int64), f"axis{l}"))
        nodes.append(helper.make_node("Squeeze", [f"Y{l}", f"axis{l}"], [f"X{l + 1}"]))
        x = f"X{l + 1}"
        outputs += [helper.make_tensor_value_info(f"h{l}_out", f32, [1, N, H]),
                    helper.make_tensor_value_info(f"c{l}_out", f32, [1, N, H])]
    outputs.insert(0, helper.make_tensor_value_info(x, f32, [1, N, H]))
    graph = helper.make_graph(nodes, "lstm_stream", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _ort():
    pytest.importorskip("onnxruntime")
    from pylstm.onnx import ort_session

    m = pylstm.LSTM(I, H, LAYERS, seed=0)
    sess = ort_session(_ort_model(m), threads=THREADS)
    xs = _inputs()[:, None]
    zeros = np.zeros((1, N, H), np.float32)
    state = [{f"{k}{l}": zeros for l in range(LAYERS) for k in "hc"}]
    names = [o.name for o in sess.get_outputs()]

    def run():
        feed = dict(state[0])
        for x in xs:
            feed["X"] = x
            out = sess.run(None, feed)
            for name, value in zip(names[1:], out[1:]):
                feed[name[:-4]] = value  # "h0_out" -> "h0"
        state[0] = {k: v for k, v in feed.items() if k != "X"}
    return run


IMPLS = {"pylstm-stream": _pylstm_stream, "pylstm-int8-stream": partial(_pylstm_stream, "int8"),
         "pylstm-call": _pylstm_call, "torch": _torch, "ort": _ort}


def test_ort_model_matches_pylstm():
    """The ORT streaming model computes the same two layers as pylstm (so the timings compare the same work)."""
    pytest.importorskip("onnxruntime")
    from pylstm.onnx import ort_session

    m = pylstm.LSTM(I, H, LAYERS, seed=0).eval()
    xs = _inputs()[:3]
    y, _ = m(xs)
    sess = ort_session(_ort_model(m), threads=THREADS)
    feed = {f"{k}{l}": np.zeros((1, N, H), np.float32) for l in range(LAYERS) for k in "hc"}
    names = [o.name for o in sess.get_outputs()]
    for t in range(3):
        feed["X"] = xs[t:t + 1]
        out = sess.run(None, feed)
        np.testing.assert_allclose(out[0][0], y[t], rtol=1e-4, atol=1e-5)
        for name, value in zip(names[1:], out[1:]):
            feed[name[:-4]] = value


@pytest.mark.parametrize("impl", list(IMPLS))
def test_stream(benchmark, impl):
    pylstm.set_num_threads(THREADS)
    run = IMPLS[impl]()
    benchmark.group = "stream"
    benchmark.extra_info.update(stream=True, impl=impl, steps=STEPS, layers=LAYERS, N=N, I=I, H=H, threads=THREADS,
                                isa=pylstm.config()["isa"])
    if benchmark.enabled:
        time.sleep(SETTLE_S)
    benchmark.pedantic(run, rounds=15, warmup_rounds=1)
