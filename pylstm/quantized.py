"""Low-precision inference: ``pylstm.quantize(module, dtype)`` returns a new inference-only module of the same kind.

``dtype="int8"``: reference.py's int8 section. Weights symmetric int8 with one scale per output row (quantized once,
here); each product's input (x_t and h_{t−1}) quantized at every step per row as u8 with a zero point; products
accumulated exactly in int32. The compiled kernels run the int8 dot form of the CPU (``pylstm.config()["int8"]``:
AVX-512 VNNI, AVX-VNNI, AVX2, or portable loops).

``dtype="bfloat16"``: reference.py's bfloat16 section. Weights and each product's input rounded to bfloat16, products
summed in float32 (``vdpbf16ps``, ``pylstm.config()["bf16"]``); CPUs without AVX512_BF16 are refused with a message.

In both, gate maths, biases, peepholes and the cell state stay in float32. The quantized module has the float
module's call, ``lengths=``, ``batch_first``, states and ``stream()``. Its ``state_dict()`` holds each weight matrix as
int8 (``weight_ih_l0``) with its row scales (``weight_ih_l0_scale``), or, for bfloat16, as float32 arrays whose
values are bfloat16 values; the biases (and peepholes) in float32. It deep-copies and pickles. ``backward`` and
training mode are refused.
"""

from __future__ import annotations

import numpy as np

from . import _cells, _core, reference
from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN

__all__ = ["quantize", "QuantizedLSTM", "QuantizedGRU", "QuantizedRNN", "QuantizedLSTMCell", "QuantizedGRUCell",
           "QuantizedRNNCell"]

_DTYPES = ("int8", "bfloat16")
_WEIGHTS = ("weight_ih", "weight_hh", "weight_hr")  # the matrices held in low precision


def _bf16_missing():
    """Why this process has no bfloat16 products (None when it has them)."""
    if _core.bf16_path():
        return None
    cap = __import__("os").environ.get("PYLSTM_ISA")
    if "avx512" in _core.isa_available() and _core.isa() != "avx512":
        return f"PYLSTM_ISA={cap} caps the kernels below the avx512 level, where they are"
    return "this CPU lacks AVX512_BF16 (vdpbf16ps)"


def _quantized_params(float_params, qdtype):
    """The quantized module's parameters from the float module's, in its order: int8 weights each followed by its
    row scales, or bfloat16-rounded weights (float32 arrays); everything else as float32."""
    out = {}
    for name, p in float_params.items():
        if name.split("_l")[0] not in _WEIGHTS:
            out[name] = np.array(p, dtype=np.float32)
        elif qdtype == "int8":
            q, scale, _ = reference.quantize_weights_int8(p)
            out[name] = q
            out[name + "_scale"] = scale
        else:
            out[name] = reference.to_bfloat16(p)
    return out


class _Quantized:
    """What the quantized layers share (mixed in before their float class): inference only, low-precision weights,
    and the kernels (_core.lowp_forward on packed weights kept per layer direction)."""

    def _refuse_zoneout(self):
        raise ValueError("a quantized module has no zoneout: its low-precision kernels have no zoned state")

    def _quantize_init(self, dtype):
        self.qdtype = dtype
        self._params = _quantized_params(self._params, dtype)
        self.grads = {}
        self.training = False

    @property
    def _cell_name(self):
        """The kernels' cell: "lstm", "lstm_proj", "gru", "gru_orig" or "rnn_<nonlinearity>"."""
        name = self._kind.name
        if name == "rnn":
            return f"rnn_{self.nonlinearity}"
        if name == "gru":
            return "gru" if self.linear_before_reset else "gru_orig"
        return "lstm_proj" if getattr(self, "proj_size", 0) else "lstm"

    # ---- inference only ----------------------------------------------------------------------------------------
    def train(self, mode=True):
        if mode:
            raise ValueError(f"{type(self).__name__} is inference-only ({self.qdtype} weights have no gradients): "
                             "train(True) is refused; train the float32 module and quantize it again")
        self.training = False
        return self

    def backward(self, *args, **kwargs):
        raise ValueError(f"{type(self).__name__} is inference-only: backward is refused; train the float32 module "
                         "and quantize it again")

    def zero_grad(self):
        pass

    def edit_parameters(self):
        raise ValueError(f"{type(self).__name__}'s weights are quantized: edit the float32 module and quantize it "
                         "again (load_state_dict takes quantized weights)")

    def to_torch(self):
        raise ValueError(f"{type(self).__name__} has no torch.nn form: use pylstm.torch.quantize_dynamic on a torch "
                         "model, or to_torch() on the float32 module")

    @classmethod
    def from_torch(cls, module, *, seed=None):
        raise ValueError(f"{cls.__name__} is made by pylstm.quantize(module, dtype), not from torch")

    def load_state_dict(self, state_dict, strict=True):
        """As the float module's, with each low-precision weight checked: int8 weights integers in [−127, 127]
        with finite positive scales; bfloat16 weights bfloat16 values."""
        if hasattr(state_dict, "keys"):
            for name in state_dict.keys():
                if name not in self._params:
                    continue
                value = np.asarray(state_dict[name])
                if self._params[name].dtype == np.int8:
                    if not np.issubdtype(value.dtype, np.integer):
                        raise TypeError(f"state_dict[{name!r}] must hold integers (an int8 weight), got dtype "
                                        f"{value.dtype}")
                    if value.size and (value.min() < -127 or value.max() > 127):
                        raise ValueError(f"state_dict[{name!r}] must lie in [-127, 127], got [{value.min()}, "
                                         f"{value.max()}]")
                elif name.endswith("_scale") and value.size and not (np.isfinite(value).all() and value.min() > 0):
                    raise ValueError(f"state_dict[{name!r}] must hold finite positive scales")
                elif self.qdtype == "bfloat16" and name.split("_l")[0] in _WEIGHTS:
                    v = np.asarray(value, np.float32)
                    if not np.array_equal(reference.to_bfloat16(v), v, equal_nan=True):
                        raise ValueError(f"state_dict[{name!r}] must hold bfloat16 values (round with "
                                         "pylstm.reference.to_bfloat16)")
        super().load_state_dict(state_dict, strict)

    # ---- the kernels -------------------------------------------------------------------------------------------
    def _param_shapes(self):
        shapes = super()._param_shapes()
        if not getattr(self, "_params", None):
            return shapes  # the float class's __init__ drawing its parameters
        return {k: v.shape for k, v in self._params.items()}

    def _layer_weights(self, layer, d):  # the kernels take the packed weights by layer direction
        return (layer, d)

    def _packed(self, sfx):
        """The packed weights of the parameters named with suffix sfx ("_l0", "_l1_reverse"; "" for a cell)."""
        if not hasattr(self, "_packs"):
            self._packs = {}
        pk = self._packs.get(sfx)
        if pk is None or pk[1] != self._version:
            p = self._params
            tail = (p.get("bias_ih" + sfx), p.get("bias_hh" + sfx), p.get("weight_ch" + sfx))
            if self.qdtype == "int8":
                packed = _core.pack_int8(self._cell_name, p["weight_ih" + sfx], p["weight_ih" + sfx + "_scale"],
                                         p["weight_hh" + sfx], p["weight_hh" + sfx + "_scale"], *tail,
                                         p.get("weight_hr" + sfx), p.get("weight_hr" + sfx + "_scale"))
            else:
                packed = _core.pack_bf16(self._cell_name, p["weight_ih" + sfx], p["weight_hh" + sfx], *tail,
                                         p.get("weight_hr" + sfx))
            pk = self._packs[sfx] = (packed, self._version)
        return pk[0]

    def _kernel_forward(self, x, s0, key, *, reverse, training, y, batch_sizes=None, rd=None, zone=None, cache=None,
                        transient=False):
        h0, c0 = (None, None) if s0 is None else (s0[0], s0[1] if len(s0) > 1 else None)
        _, h_n, c_n = _core.lowp_forward(x, h0, c0, self._packed(_cells.param_suffix(*key)), reverse=reverse, y=y,
                                         batch_sizes=batch_sizes)
        return ([h_n] if c_n is None else [h_n, c_n]), None

    def _kernel_step(self, xs, s0, zone=None):  # the cells' one step
        h0, c0 = (None, None) if s0 is None else (s0[0], s0[1] if len(s0) > 1 else None)
        y, h_n, c_n = _core.lowp_forward(xs, h0, c0, self._packed(""))
        return y, ([h_n] if c_n is None else [h_n, c_n]), None

    def __repr__(self):
        return super().__repr__()[:-1] + f", dtype={self.qdtype})"


class QuantizedLSTM(_Quantized, LSTM):
    """An int8 or bfloat16 LSTM for inference, made by ``pylstm.quantize(lstm, dtype)``: see pylstm.quantize.

    Made directly, it starts from the quantized form of a freshly initialised LSTM; ``load_state_dict`` then takes
    the weights a quantized module's ``state_dict`` holds."""

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 bidirectional=False, proj_size=0, peepholes=False, dtype="int8"):
        _check_dtype(dtype)
        LSTM.__init__(self, input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                      bidirectional=bidirectional, proj_size=proj_size, peepholes=peepholes, dtype="float32", seed=0)
        self._quantize_init(dtype)

    def _fused(self):
        # Streams take the one-call path with the low-precision streaming step; with a projection (a second
        # product per step) they run the one-step forward.
        return not self.proj_size

    _stream_step = staticmethod(_core.lowp_stream_step)

    def _stream_packs(self):
        return [self._packed(_cells.param_suffix(layer, 0)) for layer in range(self.num_layers)]


class QuantizedGRU(_Quantized, GRU):
    """An int8 or bfloat16 GRU (either form) for inference: see pylstm.quantize."""

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 bidirectional=False, linear_before_reset=True, dtype="int8"):
        _check_dtype(dtype)
        GRU.__init__(self, input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                     bidirectional=bidirectional, linear_before_reset=linear_before_reset, dtype="float32", seed=0)
        self._quantize_init(dtype)


class QuantizedRNN(_Quantized, RNN):
    """An int8 or bfloat16 Elman RNN (tanh, relu or sigmoid) for inference: see pylstm.quantize."""

    def __init__(self, input_size, hidden_size, num_layers=1, *, nonlinearity="tanh", bias=True, batch_first=False,
                 bidirectional=False, dtype="int8"):
        _check_dtype(dtype)
        RNN.__init__(self, input_size, hidden_size, num_layers, nonlinearity=nonlinearity, bias=bias,
                     batch_first=batch_first, bidirectional=bidirectional, dtype="float32", seed=0)
        self._quantize_init(dtype)


class QuantizedLSTMCell(_Quantized, LSTMCell):
    """An int8 or bfloat16 LSTMCell for inference: see pylstm.quantize."""

    def __init__(self, input_size, hidden_size, bias=True, *, peepholes=False, dtype="int8"):
        _check_dtype(dtype)
        LSTMCell.__init__(self, input_size, hidden_size, bias, peepholes=peepholes, dtype="float32", seed=0)
        self._quantize_init(dtype)


class QuantizedGRUCell(_Quantized, GRUCell):
    """An int8 or bfloat16 GRUCell (either form) for inference: see pylstm.quantize."""

    def __init__(self, input_size, hidden_size, bias=True, *, linear_before_reset=True, dtype="int8"):
        _check_dtype(dtype)
        GRUCell.__init__(self, input_size, hidden_size, bias, linear_before_reset=linear_before_reset, dtype="float32",
                         seed=0)
        self._quantize_init(dtype)


class QuantizedRNNCell(_Quantized, RNNCell):
    """An int8 or bfloat16 RNNCell for inference: see pylstm.quantize."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, dtype="int8"):
        _check_dtype(dtype)
        RNNCell.__init__(self, input_size, hidden_size, bias, nonlinearity, dtype="float32", seed=0)
        self._quantize_init(dtype)


def _check_dtype(dtype):
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be 'int8' or 'bfloat16', got {type(dtype).__name__}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'int8' or 'bfloat16', got {dtype!r}")
    if dtype == "bfloat16" and _bf16_missing():
        raise ValueError(f"dtype='bfloat16' needs bfloat16 products, and {_bf16_missing()}; use 'int8'")


def quantize(module, dtype):
    """A new inference-only module of the same kind as ``module`` whose products run in ``dtype``, ``"int8"`` or
    ``"bfloat16"`` (see the module docstring for the maths).

    It takes ``pylstm.LSTM`` (peepholes or a projection), ``pylstm.GRU`` (both forms), ``pylstm.RNN`` (tanh, relu,
    sigmoid) and their cells, with any number of layers, both directions, lengths, batch_first and ``stream()``.
    ``"bfloat16"`` on a CPU without bfloat16 products is refused with a message. ``module`` is left unchanged."""
    _check_dtype(dtype)
    if isinstance(module, _Quantized):
        raise ValueError(f"module is already quantized ({type(module).__name__}, {module.qdtype})")
    kinds = {LSTM: QuantizedLSTM, GRU: QuantizedGRU, RNN: QuantizedRNN, LSTMCell: QuantizedLSTMCell,
             GRUCell: QuantizedGRUCell, RNNCell: QuantizedRNNCell}
    if type(module) not in kinds:
        raise ValueError(f"pylstm.quantize takes pylstm.LSTM, GRU, RNN and their cells, got {type(module).__name__}")
    if module.dtype != np.float32:
        raise ValueError(f"module must be float32 to quantize, got {module.dtype.name}")
    if getattr(module, "layer_norm", False):
        raise ValueError("pylstm.quantize does not take layer_norm: the low-precision kernels have no normalisation "
                         "(the layer-norm LSTM runs in float32 or float64)")
    if getattr(module, "_zoneout_on", False):
        raise ValueError("pylstm.quantize does not take zoneout yet: the low-precision kernels have no zoned state "
                         "(recurrent dropout and weight-drop quantize as the plain model they are in eval)")
    cls = kinds[type(module)]
    kw = dict(bias=module.bias, dtype=dtype)
    for option in ("proj_size", "linear_before_reset"):
        if hasattr(module, option):
            kw[option] = getattr(module, option)
    if hasattr(module, "peepholes"):
        kw["peepholes"] = module.peepholes
    if hasattr(module, "nonlinearity"):
        kw["nonlinearity"] = module.nonlinearity
    if hasattr(module, "num_layers"):
        q = cls(module.input_size, module.hidden_size, module.num_layers, batch_first=module.batch_first,
                bidirectional=module.bidirectional, **kw)
    else:
        q = cls(module.input_size, module.hidden_size, **kw)
    with module._lock:
        q._params = _quantized_params(module._params, dtype)
    q._changed()
    return q
