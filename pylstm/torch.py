"""pylstm inside PyTorch: torch.nn.LSTM, GRU, RNN and their cells, with forward and backward run by pylstm's kernels.

Each module subclasses its torch.nn counterpart, so that the constructor, the parameter names and shapes, the
initialisation (drawn from torch's generator, as torch draws it), ``state_dict`` and ``repr`` are torch's own; only
``forward`` differs. It runs one layer (every direction) at a time through ``_Layer``, a ``torch.autograd.Function``
whose forward and backward call the C++ kernels on NumPy views of the tensors' memory; dropout between layers,
batch_first, unbatched input and PackedSequence are ordinary torch operations around it, so autograd sees them.
"""

from __future__ import annotations

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError(
        "pylstm.torch needs PyTorch, which pylstm does not install by itself: pip install torch==2.13.0 "
        "(the CPU build: add --index-url https://download.pytorch.org/whl/cpu)") from exc

import threading

import numpy as np
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import _cells, _share_with_torch_unless_opted_out
from ._module import (
    LN_PARAMS,
    _check_mask_options,
    _empty,
    _layer_norm_flag,
    _probability,
    _zoneout_pair,
    _ZoneoutOption,
)

_share_with_torch_unless_opted_out()  # pylstm's parallel work on torch's OpenMP threads: see share_threads_with_torch

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "QuantizedLSTM", "QuantizedGRU", "QuantizedRNN",
           "QuantizedLSTMCell", "QuantizedGRUCell", "QuantizedRNNCell", "quantize_dynamic"]

_DTYPES = (torch.float32, torch.float64)  # what the kernels compute in
_HALF = (torch.bfloat16, torch.float16)  # 16-bit parameters and autocast: computed in float32, cast at the ends
_CACHE_LOCK = threading.Lock()


class _Spec:
    """What one layer's kernels need besides tensors: the cell kind (pylstm._cells), its variant keyword, sizes and
    the running rows per step."""

    __slots__ = ("kind", "variant", "D", "H", "P", "bias", "proj", "batch_sizes", "rd", "zone", "ln")

    def __init__(self, kind, variant, D, H, P, bias, proj, batch_sizes, rd=None, zone=None, ln=False):
        self.kind, self.variant, self.D, self.H, self.P = kind, variant, D, H, P
        self.bias, self.proj, self.batch_sizes = bias, proj, batch_sizes
        self.ln = ln  # layer norm: each direction's weights end with its four layer-norm parameters
        self.rd = rd  # recurrent dropout: this layer's masks (D, N, P) in the kernels' row order, or None
        # zoneout: per direction, the kernels' keywords (masks in a training call, the expectation otherwise), or None
        self.zone = zone

    def with_masks(self, rd, zone):
        """The same spec for a layer with recurrent-dropout masks rd and zoneout keywords zone (or None)."""
        return _Spec(self.kind, self.variant, self.D, self.H, self.P, self.bias, self.proj, self.batch_sizes, rd,
                     zone, self.ln)

    @property
    def trains(self):
        """Whether the kernels run a training call even without gradients: the masks apply in training mode."""
        return self.rd is not None or (self.zone is not None and "zone_keep_h" in self.zone[0])

    @property
    def per_direction(self):
        """Weights per direction, in torch's order: W_ih, W_hh[, b_ih, b_hh][, W_hr], then the layer norm's four."""
        return 2 + 2 * self.bias + self.proj + 4 * self.ln


def _np(t):
    """A NumPy view of a contiguous CPU tensor's memory (no copy), or None."""
    return None if t is None else t.detach().numpy()


def _zeros(like):
    return torch.from_numpy(np.zeros(tuple(like.shape), _np(like).dtype))


def _split(spec, weights):
    """[(W_ih, W_hh, b_ih, b_hh, W_hr, ln)] per direction, None where absent (ln: the layer norm's four)."""
    k, out = spec.per_direction, []
    for d in range(spec.D):
        w = list(weights[d * k:(d + 1) * k])
        ln, w = (w[-4:], w[:-4]) if spec.ln else (None, w)
        W_ih, W_hh = w[:2]
        b_ih, b_hh = w[2:4] if spec.bias else (None, None)
        out.append((W_ih, W_hh, b_ih, b_hh, w[-1] if spec.proj else None, ln))
    return out


def _np_list(ts):
    return None if ts is None else [_np(t) for t in ts]


def _layer_forward(spec, x, states, weights, training):
    """Runs the kernels of every direction of one layer. x (T, N, I) and the states (D, N, ·) contiguous CPU
    tensors (states None for zeros); returns (y (T, N, D·P), [final states (D, N, ·)], per-direction caches)."""
    T, N, _ = x.shape
    D, P = spec.D, spec.P
    y = torch.empty((T, N, D * P), dtype=x.dtype)
    yn, xn = y.numpy(), _np(x)
    finals = [[] for _ in spec.kind.states]
    caches = []
    for d, (W_ih, W_hh, b_ih, b_hh, W_hr, ln) in enumerate(_split(spec, weights)):
        s0 = [None if s is None else _np(s)[d] for s in states] if states else [None] * len(finals)
        kw = dict(reverse=bool(d), training=training, y=yn[:, :, d * P:(d + 1) * P], batch_sizes=spec.batch_sizes,
                  **spec.variant)
        if spec.proj:
            kw["W_hr"] = _np(W_hr)
        if spec.ln:
            kw["ln"] = _np_list(ln)
        rd = None
        if spec.rd is not None:  # recurrent dropout: the mask and the buffer of masked states backward reads
            rd = {"rd_mask": spec.rd[d], "rd_masked": _empty((T + 1, N, P), yn.dtype)}
            kw.update(rd)
        if spec.zone is not None:
            zk = spec.zone[d]
            if training and "zone_h" in zk:  # eval mode with gradients: the expectation as constant masks
                zk = {f"zone_keep_{k[-1]}": np.full((T, N, spec.H), v, yn.dtype) for k, v in zk.items()}
            kw.update(zk)
            rd = dict(rd or {}, **{k: v for k, v in zk.items() if k.startswith("zone_keep")})
        result = spec.kind.forward(xn, *s0, _np(W_ih), _np(W_hh), _np(b_ih), _np(b_hh), **kw)
        for f, s in zip(finals, result[1:-1]):
            f.append(s)
        caches.append((result[-1], rd))
    return y, [torch.from_numpy(np.stack(f)) for f in finals], caches


class _Layer(torch.autograd.Function):
    """One layer, all directions: (y, h_n[, c_n]) from (x, h0[, c0], weights...) through pylstm's kernels.

    The forward keeps the kernels' cache; the backward runs the kernels' backward, which consumes that cache (it
    holds the gate gradients afterwards). A second backward through the same graph recomputes it.
    """

    @staticmethod
    def forward(ctx, spec, x, n_states, *rest):
        states, weights = list(rest[:n_states]), rest[n_states:]
        y, finals, caches = _layer_forward(spec, x, states if any(s is not None for s in states) else None, weights,
                                           training=True)
        ctx.spec, ctx.caches, ctx.n_states = spec, caches, n_states
        ctx.save_for_backward(x, y, *states, *weights)
        ctx.set_materialize_grads(False)
        return (y, *finals)

    @staticmethod
    def backward(ctx, dy, *dfinals):
        if torch.is_grad_enabled():
            raise RuntimeError("pylstm.torch does not support double backward (backward with create_graph=True): "
                               "its kernels' backward is not itself differentiable")
        spec, n = ctx.spec, ctx.n_states
        with _CACHE_LOCK:  # two threads backpropagating one retained graph must not both consume the cache
            caches, ctx.caches = ctx.caches, None
        x, y, *rest = ctx.saved_tensors
        states, weights = rest[:n], rest[n:]
        if caches is None:
            # A second backward through this graph (retain_graph=True; gradcheck does it): the kernels' backward
            # consumed the cache, so the forward runs again on the same saved (version-checked) tensors.
            y, _, caches = _layer_forward(spec, x, list(states) or None, weights, training=True)
        need_x = ctx.needs_input_grad[1]
        T, N, I = x.shape
        P = spec.P
        # Zeroed buffers from NumPy (calloc'd pages), not torch.zeros: a parallel fill would wake torch's OpenMP
        # threads, which then spin on the cores that the kernels' own threads need (measured: the latency case's
        # training step went from 2.8 to 8.2 ms with torch on 2 threads).
        dx = _zeros(x) if need_x else None
        dweights = [_zeros(w) for w in weights]
        dyn = None if dy is None else _np(dy.contiguous())
        dfin = [None if g is None else _np(g.contiguous()) for g in dfinals]
        dstates = [[] for _ in range(n)]
        xn, yn = _np(x), _np(y)
        for d, (W, G) in enumerate(zip(_split(spec, weights), _split(spec, dweights))):
            W_ih, W_hh, _, _, W_hr, ln = W
            cols = slice(d * P, (d + 1) * P)
            s0 = [_np(s)[d] for s in states] if states else [None] * len(dfin)
            ds_n = [None if g is None else g[d] for g in dfin]
            kw = dict(reverse=bool(d), dx=_np(dx), input_grad=need_x, batch_sizes=spec.batch_sizes, **spec.variant)
            if spec.proj:
                kw.update(W_hr=_np(W_hr), dW_hr=_np(G[4]))
            if spec.ln:
                kw.update(ln=_np_list(ln), dln=_np_list(G[5]))
            cache, rd = caches[d]
            kw.update(rd or {})
            result = spec.kind.backward(None if dyn is None else dyn[:, :, cols], *ds_n, xn, *s0, _np(W_ih),
                                          _np(W_hh), yn[:, :, cols], cache, *(_np(g) for g in G[:4]), **kw)
            for acc, g in zip(dstates, result[1:]):
                acc.append(g)
        dstates = [torch.from_numpy(np.stack(g)) if ctx.needs_input_grad[3 + i] else None
                   for i, g in enumerate(dstates)]
        dweights = [g if ctx.needs_input_grad[3 + n + i] else None for i, g in enumerate(dweights)]
        return (None, dx, None, *dstates, *dweights)


def _run_layer(spec, x, states, weights):
    """(y, [finals]) of one layer: through the autograd function when a gradient is wanted, else the inference
    kernels (which keep no cache)."""
    tensors = [x, *states, *weights]
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        y, *finals = _Layer.apply(spec, x, len(states), *states, *weights)
        return y, finals
    with torch.no_grad():  # (recurrent dropout's masks apply in a training call without gradients too)
        y, finals, _ = _layer_forward(spec, x, states if any(s is not None for s in states) else None, weights,
                                      training=spec.trains)
    return y, finals


# ---- checks ---------------------------------------------------------------------------------------------------
def _check_factory(name, device, dtype):
    """Refuses, before torch builds anything, a device or dtype that the kernels cannot run."""
    if device is not None and torch.device(device).type not in ("cpu", "meta"):
        raise ValueError(f"pylstm.torch.{name} runs on the CPU only, got device={device!r} "
                         "(use torch.nn for other devices)")
    if dtype is not None and dtype not in _DTYPES + _HALF:
        raise TypeError(f"pylstm.torch.{name} supports dtype torch.float32, torch.float64, torch.bfloat16 and "
                        f"torch.float16, got {dtype}")


def _autocast(param_dtype):
    """The CPU autocast dtype when autocast applies to a module with parameters of `param_dtype` (not float64, which
    torch's autocast leaves alone), else None."""
    if torch.is_autocast_enabled("cpu") and param_dtype != torch.float64:
        return torch.get_autocast_dtype("cpu")
    return None


def _precision(module, input_dtype):
    """(compute, out): the dtype the kernels run a call in, and the dtype of its outputs, as torch.nn gives them.

    float32 and float64 parameters run in their own dtype. 16-bit parameters (`.to(torch.bfloat16)`, Lightning's
    "bf16-true") run in float32 from the rounded weights, and the outputs are rounded back: at least as accurate
    as torch.nn, which computes in 16 bits. Under CPU autocast (Lightning's "bf16-mixed") the call runs in float32,
    and the outputs take the autocast dtype where torch.nn's op is on autocast's lower-precision list (LSTM, RNN,
    RNNCell; `_autocast_lowers`), else the input's dtype (GRU, LSTMCell, GRUCell return float32 for float32 input).
    float64 parameters are outside autocast, as in torch."""
    pdtype = next(module.parameters()).dtype
    autocast = _autocast(pdtype)
    if autocast is not None:
        return torch.float32, autocast if module._autocast_lowers else input_dtype
    return (torch.float32 if pdtype in _HALF else pdtype), pdtype


def _as(t, dtype):
    return t if t is None or t.dtype == dtype else t.to(dtype)


def _check_run(module, tensors):
    """Every tensor of a call (parameters included) is a CPU tensor of one dtype that the kernels support (under
    CPU autocast: float32 or the autocast dtype, with float32 or 16-bit parameters)."""
    name = type(module).__name__
    params = list(module.parameters())
    dtype = params[0].dtype
    for p in params:
        if p.device.type != "cpu":
            raise ValueError(f"pylstm.torch.{name} runs on the CPU only: its parameters are on {p.device} "
                             + ("(a module on the meta device can be built, not run; use .to_empty(device='cpu'))"
                                if p.device.type == "meta" else "(move it with .cpu())"))
        if p.dtype not in _DTYPES + _HALF:
            raise TypeError(f"pylstm.torch.{name} supports float32, float64, bfloat16 and float16 parameters, got "
                            f"{p.dtype}")
        if p.dtype != dtype:
            raise TypeError(f"pylstm.torch.{name}: all parameters must have one dtype, got {dtype} and {p.dtype}")
    autocast = _autocast(dtype)
    allowed = {dtype} if autocast is None else {dtype, torch.float32, autocast}
    for what, t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cpu":
            raise ValueError(f"pylstm.torch.{name} runs on the CPU only: {what} is on {t.device}")
        if t.dtype not in allowed:
            # torch.nn's classes: ValueError for a sequence module's input, RuntimeError for its states and for the
            # cells' tensors (the errors of the GEMMs they would reach).
            cls = ValueError if what == "input" and isinstance(module, _Sequence) else RuntimeError
            raise cls(f"pylstm.torch.{name}: {what} has dtype {t.dtype}, but the parameters are {dtype} "
                      f"(convert the input with .to({dtype}) or the module with .to({t.dtype}))")


def _refuse_sigmoid(name, args, kwargs):
    """torch.nn has no sigmoid RNN, so pylstm.torch's RNN and RNNCell (torch.nn subclasses) cannot hold one: say so
    before torch does, and point to pylstm's own (its nonlinearity is the fourth argument of both)."""
    nl = kwargs.get("nonlinearity", args[3] if len(args) > 3 else "tanh")
    if nl == "sigmoid":
        raise ValueError(f"pylstm.torch.{name} has no sigmoid nonlinearity, because torch.nn.{name} has none; "
                         f"pylstm.{name}(..., nonlinearity='sigmoid') runs one with the NumPy API")


def _packed_index(batch_sizes):
    """For PackedSequence data: the row of each packed element in the (T·N) rows of the padded, sorted batch."""
    bs = batch_sizes.numpy()
    N = int(bs[0])
    return torch.from_numpy(np.concatenate([t * N + np.arange(b) for t, b in enumerate(bs)]).astype(np.int64))


class _Unscriptable:
    def __prepare_scriptable__(self):
        # Without this, torch.jit.script would compile torch's own recurrent code paths around our forward and give
        # a module that fails (or differs) when run: refuse at scripting time instead.
        raise RuntimeError(f"pylstm.torch.{type(self).__name__} cannot be compiled by torch.jit.script: its kernels "
                           "are C++ called through NumPy, which TorchScript cannot express. torch.compile works (the "
                           "kernels run as a graph break); for TorchScript use torch.nn with the same state_dict")


# ---- the sequence modules ----------------------------------------------------------------------------------------
class _Sequence(_Unscriptable):
    """The forward shared by LSTM, GRU and RNN (mixed into their torch.nn classes)."""

    _kind: _cells.CellKind

    def _weights(self, layer, dtype):
        names = []
        for d in range(2 if self.bidirectional else 1):
            sfx = _cells.param_suffix(layer, d)
            names += ["weight_ih" + sfx, "weight_hh" + sfx]
            if self.bias:
                names += ["bias_ih" + sfx, "bias_hh" + sfx]
            if getattr(self, "proj_size", 0):
                names.append("weight_hr" + sfx)
            if getattr(self, "layer_norm", False):
                names += [stem + sfx for stem, _, _ in LN_PARAMS]
        # no copy unless a weight is a strided view or in another dtype than the kernels run (16-bit, autocast)
        return [_as(getattr(self, n), dtype).contiguous() for n in names]

    def _state_widths(self):
        P = getattr(self, "proj_size", 0) or self.hidden_size
        return [P, self.hidden_size][:len(self._kind.states)]  # h (P wide with a projection), then c

    @torch.compiler.disable  # torch.compile runs the kernels eagerly, as a graph break, not traced through NumPy
    def _forward(self, input, hx, masks=None):
        """input: a tensor or PackedSequence; hx: None or a list of state tensors; masks: a training call's masks
        (see _RegularizerOptions). Returns (output, [finals])."""
        if masks is not None and not self.training:
            raise ValueError("masks are for training calls: in eval mode no mask is drawn or applied")
        if masks is not None:
            _check_mask_options(self, masks)
        states = [] if hx is None else list(hx)
        packed = isinstance(input, PackedSequence)
        _check_run(self, [("input", input.data if packed else input)]
                   + [(f"hx[{i}]" if len(states) > 1 else "hx", s) for i, s in enumerate(states)])
        compute, out_dtype = _precision(self, (input.data if packed else input).dtype)
        D, L = 2 if self.bidirectional else 1, self.num_layers
        widths = self._state_widths()
        batch_sizes = sorted_indices = unsorted_indices = None
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            T, N = len(batch_sizes), int(batch_sizes[0])
            index = _packed_index(batch_sizes)
            data = _as(data, compute)
            x = data.new_zeros((T * N, data.shape[1])).index_copy(0, index, data).view(T, N, -1)
            unbatched = False
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{type(self).__name__}: input must be 3-D (batched) or 2-D (unbatched), "
                                 f"got {input.dim()}-D with shape {tuple(input.shape)}")
            unbatched = input.dim() == 2
            x = _as(input, compute)
            x = x.unsqueeze(1) if unbatched else x.transpose(0, 1) if self.batch_first else x
            T, N = x.shape[:2]
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"{type(self).__name__}: input.size(-1) must be input_size = {self.input_size}, "
                               f"got {x.shape[-1]}")  # torch.nn raises RuntimeError for every size mismatch
        if states:
            fixed = []
            for i, (s, w) in enumerate(zip(states, widths)):
                want = (L * D, w) if unbatched else (L * D, N, w)
                if tuple(s.shape) != want:
                    raise RuntimeError(f"{type(self).__name__}: expected hidden state {i} of shape {want}, "
                                       f"got {tuple(s.shape)}")
                s = s.unsqueeze(1) if unbatched else s
                if sorted_indices is not None:
                    s = s.index_select(1, sorted_indices)
                fixed.append(_as(s, compute).contiguous())
            states = fixed
        bs = None if batch_sizes is None else np.ascontiguousarray(batch_sizes.numpy(), dtype=np.int64)
        spec = _Spec(self._kind, self._kind.variant(self), D, self.hidden_size, widths[0], bool(self.bias),
                     bool(getattr(self, "proj_size", 0)), bs, ln=getattr(self, "layer_norm", False))
        x = x.contiguous()
        finals = [[] for _ in widths]
        drawn = {}
        for layer in range(L):
            layer_states = [s[layer * D:(layer + 1) * D] for s in states]
            weights = self._drop_weights(layer, self._weights(layer, compute), masks, drawn)
            rd = self._recurrent_masks(layer, N, widths[0], compute, masks, drawn, sorted_indices)
            zone = self._zoneout_kwargs(layer, T, N, compute, masks, drawn, sorted_indices)
            x, fin = _run_layer(spec.with_masks(rd, zone), x, layer_states, [w.contiguous() for w in weights])
            for acc, f in zip(finals, fin):
                acc.append(f)
            if self.dropout and self.training and layer < L - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        if self.training:
            self.masks = drawn
        finals = [_as(torch.cat(f) if len(f) > 1 else f[0], out_dtype) for f in finals]
        x = _as(x, out_dtype)
        if packed:
            out = PackedSequence(x.reshape(T * N, -1).index_select(0, index), batch_sizes, sorted_indices,
                                 unsorted_indices)
            if unsorted_indices is not None:
                finals = [f.index_select(1, unsorted_indices) for f in finals]
        else:
            out = x.squeeze(1) if unbatched else x.transpose(0, 1) if self.batch_first else x
            if unbatched:
                finals = [f.squeeze(1) for f in finals]
        return out, finals


class _RegularizerOptions(_ZoneoutOption):
    """The regularizers torch.nn lacks (issue 27), as keywords; each draws its masks from torch's generator, so that
    ``torch.manual_seed`` reproduces them, and none adds a parameter, so the state_dict is torch.nn's.

    ``weight_drop=p`` (Merity et al. 2017's weight-drop, DropConnect on W_hh): in training, each call draws per layer
    and direction a mask M of W_hh's shape (0 or 1/(1 − p)) and runs on M ⊙ W_hh; autograd gives W_hh the gradient
    M ⊙ (that of the masked weights). ``recurrent_dropout=p`` (Gal & Ghahramani 2016's variational dropout): each
    call draws per layer and direction a mask m (N, P) of 0 or 1/(1 − p), the same at every step, and every
    recurrent product reads m ⊙ h_{t−1} (the GRU's carry reads h itself); the kernels apply it. ``module.masks``
    holds the last training call's masks (``masks["l0"]["weight_drop"]``, ``masks["l0"]["recurrent_dropout"]``), in
    the caller's row order, and ``forward(..., masks=...)`` takes them in that form. Eval mode draws and applies
    nothing. ``zoneout=z`` or ``(z_c, z_h)`` (LSTM and GRU; Krueger et al. 2016): each unit keeps its previous state
    with probability z per step (masks ``masks["l0"]["zoneout_c"]``, ``["zoneout_h"]``, (T, N, H)); eval uses the
    expectation."""

    def __init__(self, *args, weight_drop=0.0, recurrent_dropout=0.0, zoneout=0.0, **kwargs):
        p = _probability("weight_drop", weight_drop)
        q = _probability("recurrent_dropout", recurrent_dropout)
        _zoneout_pair(self._kind, zoneout)  # checked before torch builds anything
        super().__init__(*args, **kwargs)
        self.weight_drop = p
        self.recurrent_dropout = q
        self.zoneout = zoneout
        self.masks = {}

    def _refuse_zoneout(self):
        if getattr(self, "proj_size", 0):
            raise ValueError("zoneout is not combined with proj_size (the kernels zone the cell's own h and c)")

    def extra_repr(self):
        return super().extra_repr() + (f", weight_drop={self.weight_drop}" if self.weight_drop else "") + (
            f", recurrent_dropout={self.recurrent_dropout}" if self.recurrent_dropout else "") + (
            f", zoneout={self.zoneout}" if any(self._zone) else "")

    def _zoneout_kwargs(self, layer, T, N, dtype, masks, drawn, sorted_indices):
        """Zoneout's kernel keywords of one layer, per direction: in a training call the masks (T, N, H) of 1 with
        probability z, from torch's generator, recorded in the caller's rows and handed to the kernels in theirs;
        in eval the expectation; None when off."""
        if not any(self._zone):
            return None
        lstm = len(self._kind.states) == 2
        if not self.training:
            return [self._zone_kwargs()] * (2 if self.bidirectional else 1)
        out = []
        for d in range(2 if self.bidirectional else 1):
            key = _cells.param_suffix(layer, d)[1:]
            kw = {}
            for state, z in zip(("c", "h"), self._zone):
                if state == "c" and not lstm:
                    continue
                option = f"zoneout_{state}"
                if masks is None:
                    m = torch.empty((T, N, self.hidden_size), dtype=dtype).bernoulli_(z)
                else:
                    m = self._given_mask(masks, key, option, (T, N, self.hidden_size), dtype)
                drawn.setdefault(key, {})[option] = m
                m = m if sorted_indices is None else m.index_select(1, sorted_indices)
                kw[f"zone_keep_{state}"] = np.ascontiguousarray(m.detach().numpy())
            out.append(kw)
        return out

    def _given_mask(self, masks, key, option, shape, dtype):
        try:
            M = masks[key][option]
        except (KeyError, TypeError):
            raise ValueError(f"masks must hold masks[{key!r}][{option!r}] (the form module.masks has)") from None
        if not isinstance(M, torch.Tensor) or tuple(M.shape) != tuple(shape):
            raise ValueError(f"masks[{key!r}][{option!r}] must be a tensor of shape {tuple(shape)}")
        return M.to(dtype)

    def _recurrent_masks(self, layer, N, P, dtype, masks, drawn, sorted_indices):
        """Recurrent dropout's masks of one layer in a training call: a NumPy array (D, N, P) in the kernels' row
        order (sorted by length for a PackedSequence), recorded in the caller's; None when off."""
        if not (self.training and self.recurrent_dropout):
            return None
        p, out = self.recurrent_dropout, []
        for d in range(2 if self.bidirectional else 1):
            key = _cells.param_suffix(layer, d)[1:]
            if masks is None:
                m = torch.empty((N, P), dtype=dtype).bernoulli_(1 - p).div_(1 - p)
            else:
                m = self._given_mask(masks, key, "recurrent_dropout", (N, P), dtype)
            drawn.setdefault(key, {})["recurrent_dropout"] = m
            out.append(m if sorted_indices is None else m.index_select(0, sorted_indices))
        return np.ascontiguousarray(torch.stack(out).detach().numpy())

    def _drop_weights(self, layer, weights, masks, drawn):
        """The layer's weights (per direction, torch's order) with W_hh masked in a training call."""
        if not (self.training and self.weight_drop):
            return weights
        per = len(weights) // (2 if self.bidirectional else 1)
        weights = list(weights)
        for d in range(2 if self.bidirectional else 1):
            key = _cells.param_suffix(layer, d)[1:]
            w = weights[d * per + 1]
            if masks is None:
                M = torch.empty_like(w).bernoulli_(1 - self.weight_drop).div_(1 - self.weight_drop)
            else:
                M = self._given_mask(masks, key, "weight_drop", w.shape, w.dtype)
            drawn.setdefault(key, {})["weight_drop"] = M
            weights[d * per + 1] = w * M
        return weights


class _LinearBeforeResetOption:
    """What pylstm.torch's GRU and GRUCell add to torch's: the ``linear_before_reset`` keyword, checked before torch
    builds the module, handed to the kernels (the cell kind's variant) and shown in repr."""

    def __init__(self, *args, linear_before_reset=True, device=None, dtype=None, **kwargs):
        _check_factory(type(self).__name__, device, dtype)
        if not isinstance(linear_before_reset, bool):
            raise TypeError(f"linear_before_reset must be a bool, got {type(linear_before_reset).__name__}")
        self.linear_before_reset = linear_before_reset
        super().__init__(*args, device=device, dtype=dtype, **kwargs)

    def extra_repr(self):
        return super().extra_repr() + ("" if self.linear_before_reset else ", linear_before_reset=False")


class LSTM(_RegularizerOptions, _Sequence, nn.LSTM):
    """torch.nn.LSTM, run by pylstm's kernels: same arguments, parameters, initialisation and call.

    ``layer_norm=True`` (not in torch; Ba et al. 2016 in haste's parameterisation, as pylstm.LSTM's) adds per layer
    and direction ``ln_weight_ih_l{k}``, ``ln_weight_hh_l{k}`` (4H, starting at 1), ``ln_weight_c_l{k}`` (H, 1) and
    ``ln_bias_c_l{k}`` (H, 0), ``_reverse`` for the reverse direction: its state_dict then has no torch.nn form."""

    _kind = _cells.LSTM
    _autocast_lowers = True  # torch.nn's op under CPU autocast: see _precision

    def __init__(self, *args, device=None, dtype=None, layer_norm=False, **kwargs):
        _check_factory("LSTM", device, dtype)
        ln = _layer_norm_flag(layer_norm, proj_size=kwargs.get("proj_size", args[7] if len(args) > 7 else 0))
        super().__init__(*args, device=device, dtype=dtype, **kwargs)
        self.layer_norm = ln
        if ln:
            like = self.weight_hh_l0
            for layer in range(self.num_layers):
                for d in range(2 if self.bidirectional else 1):
                    sfx = _cells.param_suffix(layer, d)
                    for stem, width, value in LN_PARAMS:
                        self.register_parameter(stem + sfx, nn.Parameter(
                            torch.full((width * self.hidden_size,), value, dtype=like.dtype, device=like.device)))

    def reset_parameters(self):
        super().reset_parameters()  # torch's uniform draw for every parameter, then the layer norm's 1 and 0 again
        if getattr(self, "layer_norm", False):
            init = {stem: value for stem, _, value in LN_PARAMS}
            with torch.no_grad():
                for name, p in self.named_parameters():
                    stem = name.split("_l")[0]
                    if stem in init:
                        p.fill_(init[stem])

    def extra_repr(self):
        return super().extra_repr() + (", layer_norm=True" if getattr(self, "layer_norm", False) else "")

    def forward(self, input, hx=None, *, masks=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError("LSTM: hx must be a tuple (h_0, c_0) of tensors or None")
        out, (h_n, c_n) = self._forward(input, hx, masks)
        return out, (h_n, c_n)


class GRU(_LinearBeforeResetOption, _RegularizerOptions, _Sequence, nn.GRU):
    """torch.nn.GRU, run by pylstm's kernels. ``linear_before_reset=False`` (not in torch) is the original GRU,
    with the reset gate applied to h before the recurrent product (the ONNX and Keras ``reset_after=False`` form)."""

    _kind = _cells.GRU
    _autocast_lowers = False  # torch.nn's op under CPU autocast: see _precision

    def forward(self, input, hx=None, *, masks=None):
        out, (h_n,) = self._forward(input, None if hx is None else [hx], masks)
        return out, h_n


class RNN(_RegularizerOptions, _Sequence, nn.RNN):
    """torch.nn.RNN (tanh or relu), run by pylstm's kernels."""

    _kind = _cells.RNN
    _autocast_lowers = True  # torch.nn's op under CPU autocast: see _precision

    def __init__(self, *args, device=None, dtype=None, **kwargs):
        _check_factory("RNN", device, dtype)
        _refuse_sigmoid("RNN", args, kwargs)
        super().__init__(*args, device=device, dtype=dtype, **kwargs)

    def forward(self, input, hx=None, *, masks=None):
        out, (h_n,) = self._forward(input, None if hx is None else [hx], masks)
        return out, h_n


# ---- the cells ---------------------------------------------------------------------------------------------------
class _Cell(_Unscriptable):
    """The forward shared by the cells: one step of the one-layer kernels (T = 1)."""

    _kind: _cells.CellKind

    @torch.compiler.disable
    def _step(self, input, states):
        name = type(self).__name__
        # The numbers of dimensions first, then dtypes and sizes: torch.nn's cells check in this order.
        for what, t in [("input", input)] + [(f"hx[{i}]", s) for i, s in enumerate(states)]:
            if isinstance(t, torch.Tensor) and t.dim() not in (1, 2):
                raise ValueError(f"{name}: {what} must be 2-D (batch, size) or 1-D unbatched, got "
                                 f"{t.dim()}-D with shape {tuple(t.shape)}")
        _check_run(self, [("input", input)] + [(f"hx[{i}]" if len(states) > 1 else "hx", s)
                                               for i, s in enumerate(states)])
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be input_size = {self.input_size}, "
                               f"got {input.shape[-1]}")  # torch.nn's class for a size mismatch
        compute, out_dtype = _precision(self, input.dtype)
        unbatched = input.dim() == 1
        x = _as(input, compute)
        x = x.reshape(1, 1, -1) if unbatched else x.unsqueeze(0)
        N = x.shape[1]
        fixed = []
        for i, s in enumerate(states):
            want = (self.hidden_size,) if unbatched else (N, self.hidden_size)
            if tuple(s.shape) != want:
                raise RuntimeError(f"{name}: expected hidden state {i} of shape {want}, got {tuple(s.shape)}")
            fixed.append(_as(s, compute).reshape(1, N, -1).contiguous())
        spec = _Spec(self._kind, self._kind.variant(self), 1, self.hidden_size, self.hidden_size, bool(self.bias),
                     False, None)
        weights = [_as(w, compute).contiguous() for w in [self.weight_ih, self.weight_hh]
                   + ([self.bias_ih, self.bias_hh] if self.bias else [])]
        _, finals = _run_layer(spec, x.contiguous(), fixed, weights)
        return [_as(f.reshape(-1) if unbatched else f[0], out_dtype) for f in finals]


class LSTMCell(_Cell, nn.LSTMCell):
    """torch.nn.LSTMCell, run by pylstm's kernels."""

    _kind = _cells.LSTM
    _autocast_lowers = False  # torch.nn's op under CPU autocast: see _precision

    def __init__(self, *args, device=None, dtype=None, **kwargs):
        _check_factory("LSTMCell", device, dtype)
        super().__init__(*args, device=device, dtype=dtype, **kwargs)

    def forward(self, input, hx=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError("LSTMCell: hx must be a tuple (h, c) of tensors or None")
        h, c = self._step(input, [] if hx is None else list(hx))
        return h, c


class GRUCell(_LinearBeforeResetOption, _Cell, nn.GRUCell):
    """torch.nn.GRUCell, run by pylstm's kernels; ``linear_before_reset=False`` as for :class:`GRU`."""

    _kind = _cells.GRU
    _autocast_lowers = False  # torch.nn's op under CPU autocast: see _precision

    def forward(self, input, hx=None):
        (h,) = self._step(input, [] if hx is None else [hx])
        return h


class RNNCell(_Cell, nn.RNNCell):
    """torch.nn.RNNCell (tanh or relu), run by pylstm's kernels."""

    _kind = _cells.RNN
    _autocast_lowers = True  # torch.nn's op under CPU autocast: see _precision

    def __init__(self, *args, device=None, dtype=None, **kwargs):
        _check_factory("RNNCell", device, dtype)
        _refuse_sigmoid("RNNCell", args, kwargs)
        super().__init__(*args, device=device, dtype=dtype, **kwargs)

    def forward(self, input, hx=None):
        (h,) = self._step(input, [] if hx is None else [hx])
        return h


# ---- low-precision inference: the successor of torch.ao.quantization.quantize_dynamic for recurrent modules ------
class _Quantized(_Unscriptable, nn.Module):
    """What the quantized torch modules share: a pylstm quantized module (pylstm.quantize) made from a torch.nn
    recurrent module, its weights as buffers, and torch.nn's call forms around it, without gradients."""

    _torch_cls: type  # the torch.nn class it stands in for
    _states = 1

    def __init__(self, module, dtype="int8"):
        from . import cells, layers
        from .quantized import quantize

        super().__init__()
        if not isinstance(module, self._torch_cls):
            raise TypeError(f"module must be a torch.nn.{self._torch_cls.__name__}, got {type(module).__name__}")
        if next(module.parameters()).device.type != "cpu":
            raise ValueError("pylstm's low-precision modules run on the CPU only: move the model with .cpu() first")
        name = self._torch_cls.__name__
        cls = getattr(cells, name, None) or getattr(layers, name)
        config = cls._config_from_torch(module)
        if hasattr(module, "linear_before_reset"):  # pylstm.torch's GRU and GRUCell
            config["linear_before_reset"] = module.linear_before_reset
        float_module = cls(**config)
        float_module.load_state_dict({k: v.detach().to(torch.float32).cpu().numpy()
                                      for k, v in module.state_dict().items()})
        self._q = quantize(float_module, dtype)
        for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional", "proj_size",
                     "nonlinearity"):
            if hasattr(module, attr):
                setattr(self, attr, getattr(module, attr))
        self.dtype_name = dtype
        for k, v in self._q.state_dict().items():
            self.register_buffer(k, torch.from_numpy(v.copy()))
        self.register_load_state_dict_post_hook(_sync_after_load)

    def _sync(self):
        """The pylstm module takes the buffers' values (after load_state_dict)."""
        self._q.load_state_dict({k: v.numpy() for k, v in self.named_buffers()})

    def extra_repr(self):
        extra = "".join(f", {a}={getattr(self, a)}" for a in ("num_layers", "batch_first", "bidirectional",
                                                            "proj_size", "nonlinearity")
                        if getattr(self, a, None) not in (None, False, 0, 1, "tanh"))
        return f"{self.input_size}, {self.hidden_size}{extra}, dtype={self.dtype_name}"

    def _hx(self, hx):
        if hx is None:
            return None
        states = list(hx) if self._states == 2 else [hx]
        if self._states == 2 and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"{type(self).__name__}: hx must be a tuple (h_0, c_0) of tensors or None")
        return [s.detach().to(torch.float32).cpu().numpy() for s in states]

    @staticmethod
    def _out_dtype(data):
        if not isinstance(data, torch.Tensor) or data.device.type != "cpu":
            raise TypeError("input must be a CPU tensor or PackedSequence")
        if data.dtype not in _HALF + (torch.float32,):
            raise TypeError(f"input has dtype {data.dtype}; it takes float32, bfloat16 or float16")
        return data.dtype

    def _finals(self, finals, out_dtype):
        t = [torch.from_numpy(np.ascontiguousarray(f)).to(out_dtype) for f in finals]
        return tuple(t) if self._states == 2 else t[0]


class _QuantizedSequence(_Quantized):
    @torch.compiler.disable
    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        data = input.data if packed else input
        out_dtype = self._out_dtype(data)
        states = self._hx(hx)
        q = self._q
        with torch.no_grad():
            if packed:
                batch_sizes, sorted_indices, unsorted_indices = input.batch_sizes, input.sorted_indices, \
                    input.unsorted_indices
                T, N = len(batch_sizes), int(batch_sizes[0])
                index = _packed_index(batch_sizes)
                x = data.to(torch.float32).new_zeros((T * N, data.shape[1])).index_copy(
                    0, index, data.to(torch.float32)).view(T, N, -1).numpy()
                lengths = (batch_sizes.numpy()[None, :] > np.arange(N)[:, None]).sum(axis=1)
                if states is not None and sorted_indices is not None:
                    states = [s[:, sorted_indices.numpy()] for s in states]
                batch_first, q.batch_first = q.batch_first, False  # PackedSequence data is time-major
                try:
                    y, finals = q._run(x, states, lengths)
                finally:
                    q.batch_first = batch_first
                y = torch.from_numpy(np.ascontiguousarray(y)).reshape(T * N, -1).index_select(0, index)
                finals = [torch.from_numpy(np.ascontiguousarray(f)) for f in finals]
                if unsorted_indices is not None:
                    finals = [f.index_select(1, unsorted_indices) for f in finals]
                out = PackedSequence(y.to(out_dtype), batch_sizes, sorted_indices, unsorted_indices)
                finals = [f.numpy() for f in finals]
            else:
                if data.dim() not in (2, 3):
                    raise ValueError(f"{type(self).__name__}: input must be 3-D (batched) or 2-D (unbatched), got "
                                     f"{data.dim()}-D")
                y, finals = q._run(data.to(torch.float32).numpy(), states)
                out = torch.from_numpy(np.ascontiguousarray(y)).to(out_dtype)
        return out, self._finals(finals, out_dtype)


class QuantizedLSTM(_QuantizedSequence):
    """An inference-only LSTM with int8 or bfloat16 products (pylstm.quantize) inside a torch model, made by
    :func:`quantize_dynamic`. It takes what torch.nn.LSTM takes (a tensor, unbatched or batch_first, or a
    PackedSequence; hx = (h_0, c_0)) and returns what it returns, without gradients. Its weights are buffers
    (``state_dict`` holds the int8 weights with their ``_scale`` rows, or the bfloat16-rounded weights as float32)."""

    _torch_cls = nn.LSTM
    _states = 2


class QuantizedGRU(_QuantizedSequence):
    """torch.nn.GRU's int8 or bfloat16 form for inference: see :class:`QuantizedLSTM`."""

    _torch_cls = nn.GRU


class QuantizedRNN(_QuantizedSequence):
    """torch.nn.RNN's int8 or bfloat16 form for inference: see :class:`QuantizedLSTM`."""

    _torch_cls = nn.RNN


class _QuantizedCell(_Quantized):
    @torch.compiler.disable
    def forward(self, input, hx=None):
        out_dtype = self._out_dtype(input)
        states = self._hx(hx)
        with torch.no_grad():
            finals, _ = self._q._step(input.to(torch.float32).numpy(), states)
        return self._finals(finals, out_dtype)


class QuantizedLSTMCell(_QuantizedCell):
    """torch.nn.LSTMCell's int8 or bfloat16 form for inference: returns (h, c)."""

    _torch_cls = nn.LSTMCell
    _states = 2


class QuantizedGRUCell(_QuantizedCell):
    """torch.nn.GRUCell's int8 or bfloat16 form for inference."""

    _torch_cls = nn.GRUCell


class QuantizedRNNCell(_QuantizedCell):
    """torch.nn.RNNCell's int8 or bfloat16 form for inference."""

    _torch_cls = nn.RNNCell


def _sync_after_load(module, incompatible_keys):
    module._sync()


_QUANTIZED = (QuantizedLSTM, QuantizedGRU, QuantizedRNN, QuantizedLSTMCell, QuantizedGRUCell, QuantizedRNNCell)


def _quantized_form(module):
    """The quantized class that stands in for a torch.nn recurrent module (its own class, pylstm.torch's included),
    or None."""
    for cls in _QUANTIZED:
        if isinstance(module, cls._torch_cls):
            return cls
    return None


def quantize_dynamic(model, dtype="int8", *, inplace=False):
    """The drop-in successor of ``torch.ao.quantization.quantize_dynamic`` for recurrent modules: every
    ``torch.nn.LSTM``, ``GRU``, ``RNN`` and their cells inside ``model`` (pylstm.torch's included) is replaced by
    its quantized form (:class:`QuantizedLSTM`, ...), whose products run in ``dtype``: ``"int8"`` (or
    ``torch.qint8``) or ``"bfloat16"`` (or ``torch.bfloat16``), with pylstm.quantize's maths. ``nn.Linear`` and every
    other module are left to torch, in float. Returns the new model (a deep copy unless ``inplace``), in eval mode."""
    import copy

    names = {torch.qint8: "int8", torch.bfloat16: "bfloat16", "int8": "int8", "bfloat16": "bfloat16"}
    if dtype not in names:
        raise ValueError(f"dtype must be 'int8', 'bfloat16', torch.qint8 or torch.bfloat16, got {dtype!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    target = model if inplace else copy.deepcopy(model)
    form = _quantized_form(target)
    if form is not None:
        return form(target, names[dtype]).eval()
    for parent in list(target.modules()):
        for child_name, child in list(parent.named_children()):
            form = _quantized_form(child)
            if form is not None:
                setattr(parent, child_name, form(child, names[dtype]))
    return target.eval()
