"""Builds one-layer ONNX LSTM / GRU / RNN models from PyTorch-ordered weights, for `pylstm bench` and the ONNX Runtime
tests and benchmarks (needs the optional onnx and onnxruntime). ONNX orders the gates differently (LSTM i, o, f, c;
GRU z, r, h) and packs both biases in one B."""

import numpy as np

# For each kind: the ONNX op and the permutation of PyTorch's gate blocks into ONNX's order.
_OPS = {"lstm": ("LSTM", [0, 3, 1, 2]), "gru": ("GRU", [1, 0, 2]), "rnn": ("RNN", [0])}


def _reorder(w, order, H):
    return np.concatenate([w[g * H:(g + 1) * H] for g in order], axis=0)


def onnx_model(kind, W_ih, W_hh, b_ih, b_hh, *, linear_before_reset=True, nonlinearity="tanh"):
    """An ONNX model with input X (T, N, I) and outputs Y (T, 1, N, H) and Y_h (1, N, H), for one direction."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    op, order = _OPS[kind]
    H = W_hh.shape[1]
    dt = W_ih.dtype
    W = _reorder(W_ih, order, H)[None]
    R = _reorder(W_hh, order, H)[None]
    B = np.concatenate([_reorder(b_ih, order, H), _reorder(b_hh, order, H)])[None].astype(dt)
    attrs = dict(hidden_size=H)
    if kind == "gru":
        attrs["linear_before_reset"] = int(linear_before_reset)
    if kind == "rnn":
        attrs["activations"] = ["Relu" if nonlinearity == "relu" else "Tanh"]
    node = helper.make_node(op, ["X", "W", "R", "B"], ["Y", "Y_h"], **attrs)
    elem = TensorProto.FLOAT if dt == np.float32 else TensorProto.DOUBLE
    graph = helper.make_graph(
        [node], kind, [helper.make_tensor_value_info("X", elem, ["T", "N", W_ih.shape[1]])],
        [helper.make_tensor_value_info("Y", elem, ["T", 1, "N", H]),
         helper.make_tensor_value_info("Y_h", elem, [1, "N", H])],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_session(model, threads=2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
