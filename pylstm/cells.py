"""Single-step cells LSTMCell, GRUCell, RNNCell, as torch.nn's, running the layers' compiled kernels for one step.

Each training-mode call pushes what its backward needs onto the cell's tape, and each ``backward`` pops the most
recent entry, so a hand-written loop of T calls is differentiated by T backward calls in reverse order.
"""

from __future__ import annotations

import numpy as np

from . import _cells
from ._module import (
    LN_PARAMS,
    _bernoulli,
    _GRUForm,
    _layer_norm_flag,
    _ln_shapes,
    _Module,
    _RNNForm,
    _size,
    _ZoneoutOption,
)


class _Cell(_ZoneoutOption, _Module):
    _kind: _cells.CellKind  # the cell's description: gates, states, kernels

    # The layers' options that belong to a sequence: a cell takes them only as 0, and refuses anything else with a
    # pointer to the layer.
    _SEQUENCE_OPTIONS = {"weight_drop": "one mask of W_hh per call, the same at every step",
                         "recurrent_dropout": "one mask of h per call, the same at every step"}

    def __init__(self, input_size, hidden_size, bias=True, *, dtype="float32", seed=None, zoneout=0.0,
                 **sequence_options):
        self.zoneout = zoneout  # (checked first: the RNN cell refuses it)
        for option, value in sequence_options.items():
            if option not in self._SEQUENCE_OPTIONS:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument '{option}'")
            if value:
                name = type(self).__name__[:-4]
                raise ValueError(f"{option} belongs to a sequence ({self._SEQUENCE_OPTIONS[option]}); a cell's call "
                                 f"is one step: use pylstm.{name}(..., {option}={value})")
        self.input_size = _size("input_size", input_size)
        self.hidden_size = _size("hidden_size", hidden_size)
        self.bias = bool(bias)
        self._tape = []
        self.masks = {}  # zoneout's masks of the last training step: masks["zoneout_c"], masks["zoneout_h"], (N, H)
        super().__init__(dtype, seed)
        self._zoneout_rng = np.random.default_rng(None if seed is None else [seed, 4])  # as the layers'

    def _param_shapes(self):
        G, H = self._kind.G, self.hidden_size
        shapes = {"weight_ih": (G * H, self.input_size), "weight_hh": (G * H, H)}
        if self.bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        return shapes

    def _forget(self):
        self._tape.clear()

    def _forward_extra(self):
        return {}

    def _backward_extra(self):
        return {}

    @classmethod
    def _torch_name(cls):
        return cls._kind.module_name + "Cell"

    def _torch_config(self):
        if self._zoneout_on:
            raise ValueError(f"torch.nn.{self._torch_name()} has no zoneout (in eval each state keeps a share z of "
                             "its previous value), so its outputs would differ")
        return self._torch_name(), dict(input_size=self.input_size, hidden_size=self.hidden_size, bias=self.bias)

    @classmethod
    def _config_from_torch(cls, module):
        return dict(input_size=module.input_size, hidden_size=module.hidden_size, bias=module.bias)

    def _step(self, x, states, masks=None):
        """One step. states: None or a list of one array per state; masks: a training step's zoneout masks (as
        self.masks holds them) or None to draw them. Returns the new states in the caller's layout."""
        with self._lock:
            return self._step_locked(x, states, masks)

    def _zone_masks(self, N, masks):
        """Zoneout's masks (1, N, H) per state of a training step (drawn, or the caller's), recorded in self.masks."""
        if masks is not None and not hasattr(masks, "keys"):
            raise TypeError(f"masks must be a dict like cell.masks, got {type(masks).__name__}")
        lstm, H = len(self._kind.states) == 2, self.hidden_size
        names = ["zoneout_c", "zoneout_h"] if lstm else ["zoneout_h"]
        for key in masks or {}:
            if key not in names or not self._zoneout_on:
                raise ValueError(f"masks[{key!r}] is given, but this cell draws no such mask")
        if not self._zoneout_on:
            return None
        out = {}
        for name, z in zip(names, self._zone if lstm else self._zone[1:]):
            if masks is None:
                m = _bernoulli(self._zoneout_rng, (1, N, H), z, self.dtype)
            else:
                try:
                    m = np.array(masks[name], dtype=self.dtype)
                except KeyError:
                    raise ValueError(f"masks must hold masks[{name!r}] (the form cell.masks has)") from None
                if m.shape != (N, H):
                    raise ValueError(f"masks[{name!r}] must have shape ({N}, {H}), got {m.shape}")
                m = m[None]
            m.flags.writeable = False
            out[name] = m
        return [out.get("zoneout_c"), out["zoneout_h"]]

    def _step_locked(self, x, states, masks=None):
        x = self._as_input("x", x)
        if x.ndim not in (1, 2):
            raise ValueError(f"x must be 2-D (N, I) or 1-D unbatched (I,), got shape {x.shape}")
        unbatched = x.ndim == 1
        x2 = x[None, :] if unbatched else x
        N, I = x2.shape
        if I != self.input_size:
            raise ValueError(f"x must have {self.input_size} features (input_size) in its last axis, got {I}")
        if N < 1:
            raise ValueError("x must have at least one batch row")
        s0 = None
        if states is not None:
            s0 = [self._check(name, v, N, unbatched) for name, v in zip(("h", "c"), states)]
        if masks is not None and not self.training:
            raise ValueError("masks are for training steps: in eval mode no mask is drawn or applied")
        zone = self._zone_masks(N, masks) if self.training else None
        xs = np.array(x2[None], order="C", copy=True)  # (T=1, N, I), private: the tape must not see later writes
        y, finals, cache = self._kernel_step(xs, s0, self._zone_mask_kwargs(zone) if self.training
                                             else self._zone_kwargs())
        if self.training:
            self._tape.append((xs, s0, y, cache, unbatched, zone))
            if zone is not None:  # (only once the step has run: a failed call leaves them as they were)
                self.masks = {k: v[0] for k, v in zip(("zoneout_c", "zoneout_h"), zone) if v is not None}
        return [f[0] if unbatched else f for f in finals], unbatched

    def _kernel_step(self, xs, s0, zone=None):
        """The kernels on one step xs (1, N, I) from s0 (None or a list of (N, H) states), zone the kernels' zoneout
        keywords: (y, finals, cache)."""
        p = self._params
        W = (p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"))
        kind = self._kind
        out = kind.forward(xs, *(s0 if s0 is not None else [None] * len(kind.states)), *W, training=self.training,
                           **kind.variant(self), **self._forward_extra(), **(zone or {}))
        return out[0], list(out[1:-1]), out[-1]

    def _step_backward(self, dstates):
        with self._lock:
            return self._step_backward_locked(dstates)

    def _step_backward_locked(self, dstates):
        if not self._tape:
            raise RuntimeError("backward() needs a forward in training mode first (each forward supports one "
                               "backward; several forwards are undone last first)")
        xs, s0, y, cache, unbatched, zone = self._tape[-1]
        N = xs.shape[1]
        ds = [None if v is None else self._check(name, v, N, unbatched) for name, v in zip(("dh", "dc"), dstates)]
        g = self.grads
        # One kernel call, which checks every argument before it writes anything: it either adds the whole step's
        # gradients into grads or raises with grads untouched. The tape entry goes only once it has succeeded.
        kind = self._kind
        out = kind.backward(
            None, *ds, xs, *(s0 if s0 is not None else [None] * len(kind.states)), self._params["weight_ih"],
            self._params["weight_hh"], y, cache, g["weight_ih"], g["weight_hh"], g.get("bias_ih"), g.get("bias_hh"),
            **kind.variant(self), **self._backward_extra(), **self._zone_mask_kwargs(zone))
        self._tape.pop()
        dx, firsts = out[0][0], list(out[1:])
        if unbatched:
            return dx[0], [f[0] for f in firsts]
        return dx, firsts

    def _check(self, name, value, N, unbatched):
        H = self.hidden_size
        return self._state_input(name, value, (H,) if unbatched else (N, H), (N, H))

    def __repr__(self):
        extra = ", bias=False" if not self.bias else ""
        extra += ", layer_norm=True" if getattr(self, "layer_norm", False) else ""
        extra += f", zoneout={self.zoneout}" if self._zoneout_on else ""
        extra += f", dtype='{self.dtype.name}'" if self.dtype != np.float32 else ""
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"


class LSTMCell(_Cell):
    """``h, c = cell(x, (h, c))``; ``dx, (dh, dc) = cell.backward(dh_out, dc_out)``; x is (N, I) or (I,).
    ``peepholes=True`` adds ``weight_ch`` (3H,), as pylstm.LSTM's; ``layer_norm=True`` makes it the layer-norm
    cell, with ``ln_weight_ih``, ``ln_weight_hh`` (4H,), ``ln_weight_c`` and ``ln_bias_c`` (H,), as pylstm.LSTM's."""

    _kind = _cells.LSTM
    layer_norm = False  # (the default of a cell pickled before the option existed)

    def __init__(self, input_size, hidden_size, bias=True, *, peepholes=False, layer_norm=False, dtype="float32",
                 seed=None, **sequence_options):
        if not isinstance(peepholes, (bool, np.bool_)):
            raise TypeError(f"peepholes must be a bool, got {type(peepholes).__name__}")
        self.peepholes = bool(peepholes)
        self.layer_norm = _layer_norm_flag(layer_norm, peepholes=self.peepholes)
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed, **sequence_options)

    def _refuse_zoneout(self):
        if self.peepholes:
            raise ValueError("zoneout is not combined with peepholes (the kernels zone the cell's own h and c)")

    def _param_shapes(self):
        shapes = super()._param_shapes()
        if self.peepholes:
            shapes["weight_ch"] = (3 * self.hidden_size,)
        if self.layer_norm:
            shapes.update(_ln_shapes("", self.hidden_size))
        return shapes

    def _ln(self, arrays):
        return [arrays[stem] for stem, _, _ in LN_PARAMS] if self.layer_norm else None

    def _forward_extra(self):
        extra = {"peep": self._params["weight_ch"]} if self.peepholes else {}
        return dict(extra, ln=self._ln(self._params)) if self.layer_norm else extra

    def _backward_extra(self):
        extra = {"peep": self._params["weight_ch"], "dpeep": self.grads["weight_ch"]} if self.peepholes else {}
        return dict(extra, ln=self._ln(self._params), dln=self._ln(self.grads)) if self.layer_norm else extra

    def _torch_config(self):
        if self.peepholes:
            raise ValueError("torch.nn.LSTMCell has no peephole connections (peepholes=True)")
        if self.layer_norm:
            raise ValueError("torch.nn.LSTMCell has no layer norm (layer_norm=True)")
        return super()._torch_config()

    def __call__(self, x, state=None, *, masks=None):
        return self.forward(x, state, masks=masks)

    def forward(self, x, state=None, *, masks=None):
        """One step: returns (h, c). With ``zoneout``, a training step draws masks (``cell.masks``) or takes
        ``masks=`` in that form."""
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise TypeError(f"state must be a pair (h, c) of arrays or None, got {type(state).__name__}")
        (h, c), _ = self._step(x, state, masks)
        return h, c

    def backward(self, dh, dc=None):
        """Gradients of the last training-mode step's (h, c) in; returns ``dx, (dh_prev, dc_prev)``."""
        dx, (dh0, dc0) = self._step_backward([dh, dc])
        return dx, (dh0, dc0)


class _OneStateCell(_Cell):
    def __call__(self, x, h=None, *, masks=None):
        return self.forward(x, h, masks=masks)

    def forward(self, x, h=None, *, masks=None):
        """One step: returns the new h. ``masks`` as LSTMCell.forward's (the GRU cell's zoneout of h)."""
        (h1,), _ = self._step(x, None if h is None else [h], masks)
        return h1

    def backward(self, dh):
        """Gradient of the last training-mode step's h in; returns ``dx, dh_prev``."""
        dx, (dh0,) = self._step_backward([dh])
        return dx, dh0


class GRUCell(_GRUForm, _OneStateCell):
    """``h = cell(x, h)`` as torch.nn.GRUCell (gates r, z, n); ``linear_before_reset=False`` for the original form."""

    _kind = _cells.GRU

    def __init__(self, input_size, hidden_size, bias=True, *, linear_before_reset=True, dtype="float32", seed=None,
                 **sequence_options):
        self.linear_before_reset = bool(linear_before_reset)
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed, **sequence_options)



class RNNCell(_RNNForm, _OneStateCell):
    """``h = cell(x, h)`` as torch.nn.RNNCell, with ``nonlinearity='tanh'`` or ``'relu'`` (or pylstm's own
    ``'sigmoid'``, which has no torch form)."""

    _kind = _cells.RNN

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, dtype="float32", seed=None,
                 **sequence_options):
        self._set_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed, **sequence_options)

