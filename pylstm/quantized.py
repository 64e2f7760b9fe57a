"""Low-precision inference: ``pylstm.quantize(module, "int8")`` returns a new inference-only module of the same kind.

The int8 math is reference.py's int8 section: weights symmetric int8 with one scale per output row (quantized once,
here); each product's input (x_t and h_{t−1}) quantized at every step per row as u8 with a zero point; products
accumulated exactly in int32; gate maths, biases, peepholes and the cell state in float32. The compiled kernels run
the int8 dot form of the CPU (``pylstm.config()["int8"]``: AVX-512 VNNI, AVX-VNNI, AVX2, or portable loops).

The quantized module has the float module's call, ``lengths=``, ``batch_first``, states and ``stream()``; its
``state_dict()`` holds each weight matrix as int8 (``weight_ih_l0``) with its row scales (``weight_ih_l0_scale``),
and the biases (and peepholes) in float32. It deep-copies and pickles. ``backward`` and training mode are refused.
"""

from __future__ import annotations

import numpy as np

from . import _cells, _core, reference
from .layers import LSTM

__all__ = ["quantize", "QuantizedLSTM"]

_DTYPES = ("int8", "bfloat16")


class _Quantized:
    """What every quantized module shares: inference only, no gradients, int8 weights with row scales."""

    _WEIGHTS = ("weight_ih", "weight_hh")  # the matrices held as int8 with a "_scale" each

    def train(self, mode=True):
        if mode:
            raise ValueError(f"{type(self).__name__} is inference-only (int8 weights have no gradients): train(True) "
                             "is refused; train the float32 module and quantize it again")
        self.training = False
        return self

    def backward(self, *args, **kwargs):
        raise ValueError(f"{type(self).__name__} is inference-only: backward is refused; train the float32 module "
                         "and quantize it again")

    def zero_grad(self):
        pass

    def edit_parameters(self):
        raise ValueError(f"{type(self).__name__}'s weights are quantized: edit the float32 module and quantize it "
                         "again (load_state_dict takes int8 weights with their scales)")

    def _to_torch_refused(self):
        raise ValueError(f"{type(self).__name__} has no torch.nn form: use pylstm.torch.quantize_dynamic on a torch "
                         "model, or to_torch() on the float32 module")

    def to_torch(self):
        self._to_torch_refused()

    @classmethod
    def from_torch(cls, module, *, seed=None):
        raise ValueError(f"{cls.__name__} is made by pylstm.quantize(module, 'int8'), not from torch")

    def load_state_dict(self, state_dict, strict=True):
        """As the float module's, with each int8 weight checked: integers in [−127, 127], scales positive."""
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
        super().load_state_dict(state_dict, strict)


def _quantized_params(float_params, weight_names):
    """The quantized module's parameters from the float module's, in its order: each matrix named in weight_names
    as int8 followed by its row scales; everything else as float32."""
    out = {}
    for name, p in float_params.items():
        if name.split("_l")[0] in weight_names:
            q, scale, _ = reference.quantize_weights_int8(p)
            out[name] = q
            out[name + "_scale"] = scale
        else:
            out[name] = np.array(p, dtype=np.float32)
    return out


class QuantizedLSTM(_Quantized, LSTM):
    """An int8 LSTM for inference, made by ``pylstm.quantize(lstm, "int8")``: see pylstm.quantize."""

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 bidirectional=False, peepholes=False):
        # The float module's parameters are drawn (and replaced by quantize or load_state_dict): a quantized module
        # made directly starts from the quantized form of a freshly initialised LSTM.
        LSTM.__init__(self, input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                      bidirectional=bidirectional, peepholes=peepholes, dtype="float32", seed=0)
        self._params = _quantized_params(self._params, self._WEIGHTS)
        self.grads = {}
        self.training = False

    def _param_shapes(self):
        shapes = super()._param_shapes()
        if "weight_ih_l0_scale" not in getattr(self, "_params", {}):
            return shapes  # LSTM.__init__ drawing the float parameters
        return {k: v.shape for k, v in self._params.items()}

    def _fused(self):
        return True  # streams take the one-call path, with the int8 streaming step

    _stream_step = staticmethod(_core.lstm_int8_stream_step)

    def _stream_packs(self):
        return [self._packed_int8((layer, 0)) for layer in range(self.num_layers)]

    def _layer_params(self, layer, d, grads=None):
        return (layer, d), None

    def _packed_int8(self, key):
        pk = self._packs.get(key)
        if pk is None or pk[1] != self._version:
            sfx = _cells.param_suffix(*key)
            p = self._params
            pk = self._packs[key] = (_core.PackedLstmInt8(
                p["weight_ih" + sfx], p["weight_ih" + sfx + "_scale"], p["weight_hh" + sfx],
                p["weight_hh" + sfx + "_scale"], p.get("bias_ih" + sfx), p.get("bias_hh" + sfx),
                p.get("weight_ch" + sfx)), self._version)
        return pk[0]

    def _kernel_forward(self, x, s0, key, *, reverse, training, y, batch_sizes=None):
        h0, c0 = (None, None) if s0 is None else s0
        _, h_n, c_n = _core.lstm_int8_forward(x, h0, c0, self._packed_int8(key), reverse=reverse, y=y,
                                              batch_sizes=batch_sizes)
        return [h_n, c_n], None

    def __repr__(self):
        return super().__repr__()[:-1] + ", dtype=int8)"


def quantize(module, dtype):
    """A new inference-only module of the same kind as ``module`` whose products run in ``dtype``.

    ``dtype="int8"``: see the module docstring for the math. Supported in this version: ``pylstm.LSTM`` (any number
    of layers, both directions, peepholes, lengths, batch_first, streaming). Other modules, ``proj_size`` and
    ``dtype="bfloat16"`` are refused with a message. ``module`` is left unchanged."""
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be 'int8' or 'bfloat16', got {type(dtype).__name__}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'int8' or 'bfloat16', got {dtype!r}")
    if dtype == "bfloat16":
        raise ValueError("dtype='bfloat16' is not available in this version of pylstm (its kernels are not built "
                         "yet); use 'int8'")
    if isinstance(module, _Quantized):
        raise ValueError(f"module is already quantized ({type(module).__name__})")
    if type(module) is not LSTM:
        raise ValueError(f"pylstm.quantize supports pylstm.LSTM in this version, got {type(module).__name__}")
    if module.dtype != np.float32:
        raise ValueError(f"module must be float32 to quantize, got {module.dtype.name}")
    if module.proj_size:
        raise ValueError("proj_size (a projection) is not supported by the int8 LSTM in this version")
    q = QuantizedLSTM(module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
                      batch_first=module.batch_first, bidirectional=module.bidirectional,
                      peepholes=module.peepholes)
    with module._lock:
        q._params = _quantized_params(module._params, QuantizedLSTM._WEIGHTS)
    q._changed()
    return q
