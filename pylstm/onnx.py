"""ONNX in and out: export pylstm's LSTM, GRU and RNN modules, run ONNX LSTM / GRU / RNN nodes with pylstm's kernels,
and turn such models into pylstm modules. Needs the optional onnx package: pip install "pylstm[onnx]".

An int8 LSTM (pylstm.quantize) is written as ONNX Runtime's com.microsoft DynamicQuantizeLSTM node, and such nodes,
including those onnxruntime.quantization.quantize_dynamic writes, run through pylstm's int8 kernels (pylstm.quantize's
math: the weights as the model carries them, the activations quantized per row at every step).

ONNX's recurrent operators hold, per direction, W (G·H, I) and R (G·H, H) with the gates in ONNX's order (LSTM
i, o, f, c; GRU z, r, h; RNN one block) and B = [Wb, Rb] (2·G·H); PyTorch's order, which pylstm uses, is LSTM i, f,
g, o and GRU r, z, n. Y is (T, D, N, H) (layout 0) or (N, T, D, H) (layout 1); Y_h and Y_c (D, N, H) or (N, D, H).
"""

from __future__ import annotations

import os

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without onnx
    raise ImportError('pylstm.onnx needs the onnx package: pip install "pylstm[onnx]" (or pip install onnx)') from exc

from . import _cells, _core, reference
from .layers import GRU, LSTM, RNN
from .quantized import QuantizedLSTM

__all__ = ["export", "run", "to_module"]

# ONNX's op types are the cell kinds' module names (pylstm._cells, which also holds ONNX's gate order).
_OPS = _cells.BY_MODULE_NAME
_LAYERS = {cls._kind: cls for cls in (LSTM, GRU, RNN)}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
# The RNN's nonlinearity as ONNX's activation name, and back.
_RNN_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}
_ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
# ONNX Runtime's int8 LSTM: LSTM's attributes and inputs, its W and R quantized and transposed ((D, I, 4H) and
# (D, H, 4H)), then W_scale, W_zero_point, R_scale, R_zero_point ((D,) per tensor or (D, 4H) per channel).
_QLSTM, _MS = "DynamicQuantizeLSTM", "com.microsoft"


def _to_onnx(w, order, H):
    return np.concatenate([w[g * H:(g + 1) * H] for g in order], axis=0)


def _peep_to_pylstm(p, H):
    """ONNX's P row (p_i, p_o, p_f) as pylstm's weight_ch (p_i, p_f, p_o)."""
    return np.ascontiguousarray(np.concatenate([p[:H], p[2 * H:], p[H:2 * H]]))


def _peep_to_onnx(w, H):
    return np.concatenate([w[:H], w[2 * H:], w[H:2 * H]])


def _to_torch(w, order, H):
    out = np.empty_like(w)
    for k, g in enumerate(order):
        out[g * H:(g + 1) * H] = w[k * H:(k + 1) * H]
    return out


# ---- export -----------------------------------------------------------------------------------------------------
def export(module, f=None, *, opset=17, lengths=False, initial_state=False):
    """Writes `module` (pylstm.LSTM, GRU or RNN: any number of layers, either direction, batch_first) as an ONNX
    model to `f` (a path or a binary file; None: not written) and returns the ModelProto.

    The graph takes ``input`` shaped as the module takes x ((T, N, I), or (N, T, I) with batch_first); with
    ``lengths=True`` also ``sequence_lens`` (N int32, pylstm's ``lengths``), and with ``initial_state=True`` also
    ``h0`` (and ``c0``) shaped (num_layers·D, N, H). It returns ``output``, ``h_n`` (and ``c_n``), as the module's
    forward in eval mode does (dropout is a training-time operation and is not exported). One ONNX node per layer,
    joined by Transpose / Reshape / Slice / Concat; the result passes onnx.checker.
    """
    quantized = type(module) is QuantizedLSTM
    if type(module) not in _LAYERS.values() and not quantized:
        raise TypeError(f"export takes a pylstm.LSTM, GRU, RNN or QuantizedLSTM module, got {type(module).__name__}")
    if quantized and module.qdtype != "int8":
        raise ValueError(f"a {module.qdtype} LSTM has no ONNX form that ONNX Runtime runs on CPU (int8 is written "
                         "as DynamicQuantizeLSTM)")
    if getattr(module, "proj_size", 0):
        raise ValueError("an LSTM with proj_size has no ONNX form: ONNX's LSTM has no projection of h")
    if getattr(module, "layer_norm", False):
        raise ValueError("layer_norm has no ONNX form: the LSTM op has no normalisation of its gate products or "
                         "cell state, and pylstm does not export it as a Loop of primitive ops")
    if getattr(module, "_zoneout_on", False):
        raise ValueError("zoneout has no ONNX form: in eval it keeps a share z of each previous state, which no "
                         "ONNX recurrent op does (recurrent dropout and weight-drop export as the plain model)")
    if not isinstance(opset, int) or not 14 <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset must be an int from 14 to {onnx.defs.onnx_opset_version()} (this onnx), got {opset!r}")
    dt = module.dtype
    elem = _ELEM[dt]
    L, D, H = module.num_layers, module.num_directions, module.hidden_size
    kind = module._kind
    op, order = kind.module_name, kind.onnx_order
    if quantized:
        op = _QLSTM
    params = module.state_dict()
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    inputs = [helper.make_tensor_value_info("input", elem, ["N", "T", module.input_size] if module.batch_first
                                            else ["T", "N", module.input_size])]
    x = "input"
    if module.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["x_tn"], perm=[1, 0, 2]))
        x = "x_tn"
    seq = ""
    if lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["N"]))
        seq = "sequence_lens"
    states = [s + "0" for s in kind.states]
    if initial_state:
        inputs += [helper.make_tensor_value_info(s, elem, [L * D, "N", H]) for s in states]
        const("axis0", np.array([0], np.int64))
    const("to_tn_flat", np.array([0, 0, -1], np.int64))
    finals = {s: [] for s in states}
    for layer in range(L):
        W, R, B, scales = [], [], [], {"W": [], "R": []}
        for d in range(D):
            sfx = _cells.param_suffix(layer, d)
            W.append(_to_onnx(params["weight_ih" + sfx], order, H))
            R.append(_to_onnx(params["weight_hh" + sfx], order, H))
            if quantized:  # DynamicQuantizeLSTM's weights are transposed, with a scale per output column
                W[-1], R[-1] = W[-1].T, R[-1].T
                scales["W"].append(_to_onnx(params["weight_ih" + sfx + "_scale"], order, H))
                scales["R"].append(_to_onnx(params["weight_hh" + sfx + "_scale"], order, H))
            if module.bias:
                B.append(np.concatenate([_to_onnx(params["bias_ih" + sfx], order, H),
                                         _to_onnx(params["bias_hh" + sfx], order, H)]))
        node_in = [x, const(f"W_l{layer}", np.stack(W)), const(f"R_l{layer}", np.stack(R)),
                   const(f"B_l{layer}", np.stack(B)) if B else "", seq]
        if initial_state:
            const(f"start_l{layer}", np.array([layer * D], np.int64))
            const(f"end_l{layer}", np.array([(layer + 1) * D], np.int64))
            for s in states:
                nodes.append(helper.make_node("Slice", [s, f"start_l{layer}", f"end_l{layer}", "axis0"],
                                              [f"{s}_l{layer}"]))
            node_in += [f"{s}_l{layer}" for s in states]
        else:
            node_in += [""] * len(states)
        if getattr(module, "peepholes", False):
            node_in.append(const(f"P_l{layer}", np.stack([
                _peep_to_onnx(params[_cells.param_name("weight_ch", layer, d)], H) for d in range(D)])))
        if quantized:
            node_in += [""] * (8 - len(node_in))
            for w in ("W", "R"):
                node_in += [const(f"{w}_scale_l{layer}", np.stack(scales[w])),
                            const(f"{w}_zero_point_l{layer}", np.zeros((D, 4 * H), np.int8))]
        while node_in and node_in[-1] == "":
            node_in.pop()
        outs = [f"Y_l{layer}"] + [f"{s[0]}n_l{layer}" for s in states]
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if quantized:
            attrs["domain"] = _MS
        if op == "GRU":
            attrs["linear_before_reset"] = int(module.linear_before_reset)
        if op == "RNN":
            attrs["activations"] = [_RNN_ACTIVATIONS[module.nonlinearity]] * D
        nodes.append(helper.make_node(op, node_in, outs, name=f"{op.lower()}_l{layer}", **attrs))
        for s, o in zip(states, outs[1:]):
            finals[s].append(o)
        # Y (T, D, N, H) -> (T, N, D·H), pylstm's (and torch's) layer output and the next layer's input
        nodes.append(helper.make_node("Transpose", [outs[0]], [f"Y_tn_l{layer}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Y_tn_l{layer}", "to_tn_flat"], [f"out_l{layer}"]))
        x = f"out_l{layer}"
    if module.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["output"]))
    outputs = [helper.make_tensor_value_info("output", elem, ["N", "T", D * H] if module.batch_first
                                             else ["T", "N", D * H])]
    for s in states:
        name = s[0] + "_n"
        nodes.append(helper.make_node("Concat", finals[s], [name], axis=0) if L > 1
                     else helper.make_node("Identity", finals[s], [name]))
        outputs.append(helper.make_tensor_value_info(name, elem, [L * D, "N", H]))
    graph = helper.make_graph(nodes, f"pylstm_{kind.name}", inputs, outputs, initializer=inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets + ([helper.make_opsetid(_MS, 1)] if quantized else []),
                              producer_name="pylstm")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(model, {"pylstm.batch_first": str(int(module.batch_first))})
    onnx.checker.check_model(model)
    if f is not None:
        onnx.save(model, f)
    return model


# ---- reading models ---------------------------------------------------------------------------------------------
def _load(model):
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)) or hasattr(model, "read"):
        return onnx.load(model)
    raise TypeError(f"model must be an onnx.ModelProto, a path, a file or bytes, got {type(model).__name__}")


def _is_recurrent(node):
    return (node.op_type in _OPS and node.domain in ("", "ai.onnx")) or (node.op_type == _QLSTM and node.domain == _MS)


def _recurrent_nodes(graph):
    return [n for n in graph.node if _is_recurrent(n)]


class _Node:
    """An ONNX LSTM / GRU / RNN node's attributes, checked against what pylstm runs."""

    def __init__(self, node):
        self.name = node.op_type if not node.name else node.name
        self.quantized = node.op_type == _QLSTM
        self.op = "LSTM" if self.quantized else node.op_type  # the float operator whose math it runs
        self.kind = _OPS[self.op]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        known = {"hidden_size", "direction", "layout", "activations", "clip", "activation_alpha",
                 "activation_beta"} | ({"input_forget"} if self.op == "LSTM" else set()) \
            | ({"linear_before_reset"} if self.op == "GRU" else set())
        if self.quantized:
            known.discard("layout")  # DynamicQuantizeLSTM has none
        for a in attrs:
            if a not in known:
                raise ValueError(f"{self.name}: unknown {self.op} attribute {a!r}")
        if "clip" in attrs:
            raise ValueError(f"{self.name}: the attribute 'clip' (cell clipping) is not supported by pylstm")
        if attrs.get("input_forget", 0):
            raise ValueError(f"{self.name}: the attribute 'input_forget' (coupled input and forget gates) is not "
                             "supported by pylstm")
        for a in ("activation_alpha", "activation_beta"):
            if a in attrs:
                raise ValueError(f"{self.name}: the attribute {a!r} is not supported by pylstm (no activation here "
                                 "takes parameters)")
        self.direction = attrs.get("direction", b"forward")
        self.direction = self.direction.decode() if isinstance(self.direction, bytes) else self.direction
        if self.direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{self.name}: direction must be forward, reverse or bidirectional, got "
                             f"{self.direction!r}")
        self.D = 2 if self.direction == "bidirectional" else 1
        self.layout = int(attrs.get("layout", 0))
        if self.layout not in (0, 1):
            raise ValueError(f"{self.name}: layout must be 0 or 1, got {self.layout}")
        self.hidden_size = attrs.get("hidden_size")
        self.linear_before_reset = bool(attrs.get("linear_before_reset", 0))
        acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
        self.nonlinearity = "tanh"
        if self.op == "RNN":
            acts = acts or ["Tanh"] * self.D
            if len(acts) != self.D or len(set(acts)) != 1 or acts[0] not in _RNN_ACTIVATIONS.values():
                raise ValueError(f"{self.name}: the attribute 'activations' {acts} is not supported: pylstm's RNN runs "
                                 "Tanh, Relu or Sigmoid, the same in both directions")
            self.nonlinearity = acts[0].lower()
        elif acts and acts != _DEFAULT_ACTIVATIONS[self.op] * self.D:
            raise ValueError(f"{self.name}: the attribute 'activations' {acts} is not supported: pylstm's {self.op} "
                             f"runs {_DEFAULT_ACTIVATIONS[self.op]} (the default)")


def _values(model, inputs):
    """name -> array: the initializers, then the caller's inputs (a dict, or a list in graph-input order)."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        names = [i.name for i in model.graph.input if i.name not in values]
        inputs = list(inputs)
        if len(inputs) != len(names):
            raise ValueError(f"inputs: the model takes {len(names)} inputs {names}, got {len(inputs)}")
        inputs = dict(zip(names, inputs))
    values.update({k: np.asarray(v) for k, v in inputs.items()})
    return values


def _arg(node, values, k, what):
    name = node.input[k] if k < len(node.input) else ""
    if not name:
        return None
    if name not in values:
        raise ValueError(f"inputs: the node's {what} input {name!r} was not given")
    return values[name]


# ---- run --------------------------------------------------------------------------------------------------------
def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _reshape(node, x, shape):
    shape = [int(v) for v in shape]
    if not _attrs(node).get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


def _slice(node, x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for a, b, e, st in zip(axes, starts, ends, steps):
        index[int(a)] = slice(int(b), int(e), int(st))
    return x[tuple(index)]


def _axes(node, args):
    axes = args[1] if len(args) > 1 and args[1] is not None else _attrs(node).get("axes")
    return None if axes is None else [int(a) for a in axes]


# The layout operators that export() and onnxruntime's quantize_dynamic put around recurrent nodes.
_LAYOUT_OPS = {
    "Identity": lambda node, a: a[0],
    "Transpose": lambda node, a: np.transpose(a[0], _attrs(node).get("perm")),
    "Reshape": lambda node, a: _reshape(node, a[0], a[1]),
    "Concat": lambda node, a: np.concatenate([v for v in a if v is not None], axis=_attrs(node)["axis"]),
    "Slice": lambda node, a: _slice(node, *a),
    "Squeeze": lambda node, a: np.squeeze(a[0], axis=None if _axes(node, a) is None else tuple(_axes(node, a))),
    "Unsqueeze": lambda node, a: np.expand_dims(a[0], tuple(_axes(node, a))),
}


def run(model, inputs=None):
    """Executes a model of ONNX LSTM, GRU and RNN nodes (and ONNX Runtime's com.microsoft DynamicQuantizeLSTM) with
    pylstm's kernels, with the layout operators around them (Identity, Transpose, Reshape, Concat, Slice, Squeeze,
    Unsqueeze): a single-node model (the form of ONNX's own operator tests), what export() writes, or what
    onnxruntime.quantization.quantize_dynamic writes from it. `inputs` maps graph-input names to arrays (or lists
    them in graph-input order). Returns the graph's outputs as ONNX Runtime's ``session.run(None, inputs)`` would: a
    list in graph-output order."""
    model = _load(model)
    if not _recurrent_nodes(model.graph):
        raise ValueError("the model has no LSTM, GRU, RNN or DynamicQuantizeLSTM node")
    values = _values(model, inputs)
    for node in model.graph.node:
        if _is_recurrent(node):
            results = _run_recurrent(node, values)
        elif node.op_type in _LAYOUT_OPS and node.domain in ("", "ai.onnx"):
            args = [_arg(node, values, k, f"#{k}") for k in range(len(node.input))]
            results = [_LAYOUT_OPS[node.op_type](node, args)]
        else:
            raise ValueError(f"{node.name or node.op_type}: run executes LSTM, GRU, RNN and DynamicQuantizeLSTM nodes "
                             f"and the layout operators {sorted(_LAYOUT_OPS)} around them, not {node.op_type} (use "
                             "onnxruntime for other graphs)")
        for name, value in zip(node.output, results):
            if name:
                values[name] = value
    out = []
    for o in model.graph.output:
        if o.name not in values:
            raise ValueError(f"graph output {o.name!r} is computed by no node")
        out.append(values[o.name])
    return out


def _run_recurrent(node, values):
    spec = _Node(node)
    X = _arg(node, values, 0, "X")
    W, R = _arg(node, values, 1, "W"), _arg(node, values, 2, "R")
    if X is None or W is None or R is None:
        raise ValueError(f"{spec.name}: X, W and R are required inputs")
    got = dict(B=_arg(node, values, 3, "B"), sequence_lens=_arg(node, values, 4, "sequence_lens"),
               initial_h=_arg(node, values, 5, "initial_h"))
    if spec.op == "LSTM":
        got["initial_c"] = _arg(node, values, 6, "initial_c")
        got["P"] = _arg(node, values, 7, "P")
    if spec.quantized:
        scales = [_arg(node, values, k, n) for k, n in
                  ((8, "W_scale"), (9, "W_zero_point"), (10, "R_scale"), (11, "R_zero_point"))]
        if scales[0] is None or scales[2] is None:
            raise ValueError(f"{spec.name}: W_scale and R_scale are required inputs")
        got["quantized"] = scales
    return _execute(spec, X, W, R, **got)


def _int8_rows(spec, name, q, scale, zero, D, G, H, K, order):
    """Per direction, DynamicQuantizeLSTM's quantized weight q (D, K, G·H) with its scale and zero point ((D,) or
    (D, G·H)) as pylstm's (Wq (G·H, K) int8 in PyTorch's gate order, row scales (G·H,)). The model's own integers
    and scales are kept when they are pylstm's form (int8 in [−127, 127], zero point 0); otherwise (uint8 weights,
    a zero point, −128) the weights s·(q − z) are quantized again per row as pylstm.quantize does."""
    if q.shape != (D, K, G * H):
        raise ValueError(f"{spec.name}: {name} must have shape {(D, K, G * H)}, got {q.shape}")
    if q.dtype not in (np.int8, np.uint8):
        raise TypeError(f"{spec.name}: {name} must be int8 or uint8, got {q.dtype}")
    per = {(D,): False, (D, G * H): True}
    if np.shape(scale) not in per:
        raise ValueError(f"{spec.name}: {name}_scale must have shape {(D,)} or {(D, G * H)}, got {np.shape(scale)}")
    zero = np.zeros(np.shape(scale), np.int32) if zero is None else np.asarray(zero)
    if zero.shape != np.shape(scale):
        raise ValueError(f"{spec.name}: {name}_zero_point must have the shape of {name}_scale, got {zero.shape}")
    out = []
    for d in range(D):
        s = np.broadcast_to(np.asarray(scale[d], np.float32), (G * H,))
        z = np.broadcast_to(zero[d].astype(np.int32), (G * H,))
        qd = q[d].T.astype(np.int32)  # (G·H, K), ONNX's gate order
        if q.dtype == np.int8 and not z.any() and qd.min(initial=0) >= -127 and (s > 0).all():
            wq, ws = qd.astype(np.int8), s.astype(np.float32)
        else:
            wq, ws, _ = reference.quantize_weights_int8(s[:, None] * (qd - z[:, None]).astype(np.float32))
        out.append((np.ascontiguousarray(_to_torch(wq, order, H)), np.ascontiguousarray(_to_torch(ws, order, H))))
    return out


def _execute(spec, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, quantized=None):
    """(Y, Y_h[, Y_c]) of one ONNX recurrent node, in ONNX's shapes, through pylstm's kernels (the int8 ones for a
    DynamicQuantizeLSTM, whose `quantized` holds W_scale, W_zero_point, R_scale, R_zero_point)."""
    kind, order = spec.kind, spec.kind.onnx_order
    if X.dtype not in _ELEM or (quantized is not None and X.dtype != np.float32):
        raise TypeError(f"{spec.name}: X has dtype {X.dtype}; pylstm runs float32 and float64"
                        + (" (float32 for DynamicQuantizeLSTM)" if quantized is not None else ""))
    dt = X.dtype
    if X.ndim != 3:
        raise ValueError(f"{spec.name}: X must be 3-D, got shape {X.shape}")
    x = X.transpose(1, 0, 2) if spec.layout else X
    T, N, I = x.shape
    D, G = spec.D, len(order)
    int8 = None
    if quantized is not None:
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] != I or W.shape[2] % G:
            raise ValueError(f"{spec.name}: W must be ({D}, {I}, {G}·hidden_size), got {W.shape}")
        H = W.shape[2] // G
        int8 = (_int8_rows(spec, "W", W, quantized[0], quantized[1], D, G, H, I, order),
                _int8_rows(spec, "R", R, quantized[2], quantized[3], D, G, H, H, order))
        W = R = None
    else:
        if W.ndim != 3 or W.shape[0] != D or W.shape[2] != I or W.shape[1] % G:
            raise ValueError(f"{spec.name}: W must be ({D}, {G}·hidden_size, {I}), got {W.shape}")
        H = W.shape[1] // G
    if spec.hidden_size is not None and spec.hidden_size != H:
        raise ValueError(f"{spec.name}: hidden_size is {spec.hidden_size} but W holds {H} units per gate")
    for name, a, shape in (("R", R, (D, G * H, H)), ("B", B, (D, 2 * G * H)), ("P", P, (D, 3 * H))):
        if a is not None and a.shape != shape:
            raise ValueError(f"{spec.name}: {name} must have shape {shape}, got {a.shape}")
        if a is not None and a.dtype != dt:
            raise TypeError(f"{spec.name}: {name} has dtype {a.dtype}, X has {dt}")
    n_states = len(kind.states)
    states = []
    for name, s in (("initial_h", initial_h), ("initial_c", initial_c))[:n_states]:
        if s is not None:
            s = s.transpose(1, 0, 2) if spec.layout else s
            if s.shape != (D, N, H):
                raise ValueError(f"{spec.name}: {name} must have shape {(D, N, H) if not spec.layout else (N, D, H)}, "
                                 f"got {s.shape}")
            s = np.ascontiguousarray(s, dtype=dt)
        states.append(s)
    perm = batch_sizes = None
    if sequence_lens is not None:
        lens = np.asarray(sequence_lens).astype(np.int64)
        if lens.shape != (N,) or lens.min() < 1 or lens.max() > T:
            raise ValueError(f"{spec.name}: sequence_lens must hold {N} lengths from 1 to {T}, got {sequence_lens}")
        if lens.min() < T:  # variable lengths: the kernels want the batch sorted longest first
            perm = np.argsort(-lens, kind="stable")
            batch_sizes = _cells.batch_sizes(lens[perm], T)
            x = x[:, perm]
            states = [None if s is None else np.ascontiguousarray(s[:, perm]) for s in states]
    x = np.ascontiguousarray(x, dtype=dt)
    ys, finals = [], [[] for _ in range(n_states)]
    for d in range(D):
        b_ih = b_hh = None
        if B is not None:
            b_ih = np.ascontiguousarray(_to_torch(B[d, :G * H], order, H))
            b_hh = np.ascontiguousarray(_to_torch(B[d, G * H:], order, H))
        reverse = spec.direction == "reverse" or d == 1
        s0 = [None if s is None else s[d] for s in states]
        peep = None if P is None else _peep_to_pylstm(P[d], H)  # ONNX's input P: the peepholes
        if int8 is not None:
            (wq_ih, s_ih), (wq_hh, s_hh) = int8[0][d], int8[1][d]
            packed = _core.pack_int8("lstm", wq_ih, s_ih, wq_hh, s_hh, b_ih, b_hh, peep)
            y, *fin = _core.lowp_forward(x, *s0, packed, reverse=reverse, batch_sizes=batch_sizes)
        else:
            W_ih = np.ascontiguousarray(_to_torch(W[d], order, H))
            W_hh = np.ascontiguousarray(_to_torch(R[d], order, H))
            kw = dict(reverse=reverse, training=False, batch_sizes=batch_sizes, **kind.variant(spec))
            if peep is not None:
                kw["peep"] = peep
            y, *fin, _ = kind.forward(x, *s0, W_ih, W_hh, b_ih, b_hh, **kw)
        ys.append(y)
        for acc, f in zip(finals, fin):
            acc.append(f)
    Y = np.stack(ys, axis=1)  # (T, D, N, H)
    outs = [np.stack(f) for f in finals]  # (D, N, H)
    if perm is not None:
        inv = np.argsort(perm)
        Y, outs = Y[:, :, inv], [o[:, inv] for o in outs]
    if spec.layout:
        Y, outs = Y.transpose(2, 0, 1, 3), [o.transpose(1, 0, 2) for o in outs]
    return [np.ascontiguousarray(Y)] + [np.ascontiguousarray(o) for o in outs]


# ---- to_module --------------------------------------------------------------------------------------------------
def to_module(model, inputs=None):
    """The pylstm module equivalent to `model`, with its weights: a single ONNX LSTM / GRU / RNN node (forward or
    bidirectional; layout 1 gives batch_first), or a model that export() wrote (one node per layer). Weights are
    read from the initializers, or from `inputs` (name -> array) where the model takes them as graph inputs."""
    model = _load(model)
    nodes = _recurrent_nodes(model.graph)
    if not nodes:
        raise ValueError("the model has no LSTM, GRU or RNN node")
    specs = [_Node(n) for n in nodes]
    op = specs[0].op
    if any(s.op != op or s.quantized != specs[0].quantized or s.direction != specs[0].direction for s in specs):
        raise ValueError("to_module needs one kind of recurrent node with one direction throughout")
    if specs[0].direction == "reverse":
        raise ValueError("a direction='reverse' node has no pylstm module form (pylstm layers run forward, or both "
                         "ways with bidirectional=True); pylstm.onnx.run executes it")
    values = _values(model, inputs or {})
    props = {p.key: p.value for p in model.metadata_props}
    batch_first = props.get("pylstm.batch_first", str(specs[0].layout)) == "1"
    kind = specs[0].kind
    order = kind.onnx_order
    state, bias = {}, None
    input_size = hidden = None
    quantized = specs[0].quantized
    for layer, (node, spec) in enumerate(zip(nodes, specs)):
        W, R, B = (_arg(node, values, k, n) for k, n in ((1, "W"), (2, "R"), (3, "B")))
        if W is None or R is None:
            raise ValueError(f"{spec.name}: W and R must be initializers or given in inputs")
        Pw = _arg(node, values, 7, "P") if spec.op == "LSTM" else None
        G = len(order)
        I, H = (W.shape[1], W.shape[2] // G) if quantized else (W.shape[2], W.shape[1] // G)
        if layer == 0:
            input_size, hidden, bias, peepholes = I, H, B is not None, Pw is not None
        elif H != hidden or (B is not None) != bias or (Pw is not None) != peepholes:
            raise ValueError("to_module needs the same hidden size, biases and peepholes in every layer")
        if quantized:
            sc = [_arg(node, values, k, n) for k, n in
                  ((8, "W_scale"), (9, "W_zero_point"), (10, "R_scale"), (11, "R_zero_point"))]
            rows = (_int8_rows(spec, "W", W, sc[0], sc[1], spec.D, G, H, I, order),
                    _int8_rows(spec, "R", R, sc[2], sc[3], spec.D, G, H, H, order))
        for d in range(spec.D):
            sfx = _cells.param_suffix(layer, d)
            if quantized:
                (state["weight_ih" + sfx], state["weight_ih" + sfx + "_scale"]) = rows[0][d]
                (state["weight_hh" + sfx], state["weight_hh" + sfx + "_scale"]) = rows[1][d]
            else:
                state["weight_ih" + sfx] = _to_torch(W[d], order, H)
                state["weight_hh" + sfx] = _to_torch(R[d], order, H)
            if bias:
                state["bias_ih" + sfx] = _to_torch(B[d, :len(order) * H], order, H)
                state["bias_hh" + sfx] = _to_torch(B[d, len(order) * H:], order, H)
            if peepholes:
                state["weight_ch" + sfx] = _peep_to_pylstm(Pw[d], H)
    if quantized:
        module = QuantizedLSTM(input_size, hidden, len(nodes), bias=bias, batch_first=batch_first,
                               bidirectional=specs[0].D == 2, peepholes=peepholes, dtype="int8")
        module.load_state_dict(state)
        return module
    dtype = state["weight_ih_l0"].dtype
    kw = dict(bias=bias, batch_first=batch_first, bidirectional=specs[0].D == 2, dtype=dtype.name,
              **kind.variant(specs[0]))
    if peepholes:
        kw["peepholes"] = True
    module = _LAYERS[kind](input_size, hidden, len(nodes), **kw)
    module.load_state_dict(state)
    return module.eval()


# ---- one-layer models for tests and benchmarks ------------------------------------------------------------------
def layer_model(kind, W_ih, W_hh, b_ih, b_hh, *, linear_before_reset=True, nonlinearity="tanh"):
    """A single-node ONNX model (opset 14) of one layer direction from PyTorch-ordered weights, as ONNX Runtime runs
    it: input X (T, N, I), outputs Y (T, 1, N, H) and Y_h (1, N, H). Unlike `export` it also takes the original GRU
    form (``linear_before_reset=False``), which no torch module has. For `pylstm bench`, the tests and the
    benchmarks."""
    if kind not in _cells.KINDS:
        raise ValueError(f"kind must be one of {sorted(_cells.KINDS)}, got {kind!r}")
    if kind == "rnn" and nonlinearity not in _RNN_ACTIVATIONS:
        raise ValueError(f"nonlinearity must be one of {sorted(_RNN_ACTIVATIONS)}, got {nonlinearity!r}")
    op, order = _cells.KINDS[kind].module_name, _cells.KINDS[kind].onnx_order
    H = W_hh.shape[1]
    dt = W_ih.dtype
    W = _to_onnx(W_ih, order, H)[None]
    R = _to_onnx(W_hh, order, H)[None]
    B = np.concatenate([_to_onnx(b_ih, order, H), _to_onnx(b_hh, order, H)])[None].astype(dt)
    attrs = dict(hidden_size=H)
    if kind == "gru":
        attrs["linear_before_reset"] = int(linear_before_reset)
    if kind == "rnn":
        attrs["activations"] = [_RNN_ACTIVATIONS[nonlinearity]]
    node = helper.make_node(op, ["X", "W", "R", "B"], ["Y", "Y_h"], **attrs)
    elem = _ELEM[np.dtype(dt)]
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
    """An ONNX Runtime CPU session of `model` on `threads` intra-op threads (needs onnxruntime)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
