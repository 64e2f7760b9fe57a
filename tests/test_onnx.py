"""pylstm against ONNX Runtime on the same weights (skipped without onnx and onnxruntime). ONNX's default GRU is
the original form (linear_before_reset=0), the one torch does not have: this is its only outside check."""

import numpy as np
import pytest
from helpers import rel_err

import pylstm

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from pylstm.onnx import layer_model as onnx_model  # noqa: E402  (after the skips: needs onnx)
from pylstm.onnx import ort_session


@pytest.mark.parametrize("kind,kw", [("lstm", {}), ("gru", {"linear_before_reset": True}),
                                     ("gru", {"linear_before_reset": False}), ("rnn", {"nonlinearity": "tanh"}),
                                     ("rnn", {"nonlinearity": "relu"}), ("rnn", {"nonlinearity": "sigmoid"})], ids=str)
def test_matches_onnx_runtime(rng, kind, kw):
    T, N, I, H = 7, 3, 5, 6
    m = getattr(pylstm, kind.upper())(I, H, **kw, seed=3)
    p = m.state_dict()
    model = onnx_model(kind, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"], **kw)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    y, y_h = ort_session(model).run(None, {"X": x})
    out, fin = m.eval()(x)
    h_n = fin[0] if kind == "lstm" else fin
    assert rel_err(out, y[:, 0]) < 1e-5
    assert rel_err(h_n, y_h) < 1e-5
