"""pylstm.LSTM: a multi-layer, optionally bidirectional LSTM with PyTorch's conventions and an explicit backward."""

from __future__ import annotations

import math

import numpy as np

from . import _core

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _size(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _dtype(value):
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {value!r}")
    return dt


class LSTM:
    """Multi-layer LSTM over NumPy arrays, with the call shapes, parameter names and gate order of torch.nn.LSTM.

    ``out, (h_n, c_n) = lstm(x, state=None)`` runs the layers; in training mode it keeps what
    ``dx, (dh0, dc0) = lstm.backward(dout, dstate=None)`` needs, and backward adds the parameter gradients
    into ``lstm.grads``. x is (T, N, I), (N, T, I) with ``batch_first``, or unbatched (T, I); out is
    (T, N, D*H) in the same layout; h_n and c_n are (D*num_layers, N, H), layer-major then direction.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 bidirectional=False, dtype="float32", seed=None):
        self.input_size = _size("input_size", input_size)
        self.hidden_size = _size("hidden_size", hidden_size)
        self.num_layers = _size("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.dtype = _dtype(dtype)
        self.training = True
        self._cache = None

        rng = np.random.default_rng(seed)
        k = 1.0 / math.sqrt(self.hidden_size)
        self._params = {}
        for name, shape in self._param_shapes().items():
            self._params[name] = rng.uniform(-k, k, size=shape).astype(self.dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self._params.items()}

    # ---- parameters -------------------------------------------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _param_shapes(self):
        H, G, D = self.hidden_size, 4, self.num_directions
        shapes = {}
        for layer in range(self.num_layers):
            fan_in = self.input_size if layer == 0 else D * H
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes["weight_ih" + sfx] = (G * H, fan_in)
                shapes["weight_hh" + sfx] = (G * H, H)
                if self.bias:
                    shapes["bias_ih" + sfx] = (G * H,)
                    shapes["bias_hh" + sfx] = (G * H,)
        return shapes

    def _layer_params(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        p, g = self._params, self.grads
        names = ("weight_ih" + sfx, "weight_hh" + sfx, "bias_ih" + sfx, "bias_hh" + sfx)
        return [p.get(n) for n in names], [g.get(n) for n in names]

    def state_dict(self):
        """The parameters by PyTorch's names. The arrays are the module's own (as torch's tensors share storage):
        writing into them changes the model; copy them to keep a snapshot."""
        return dict(self._params)

    def load_state_dict(self, state_dict, strict=True):
        """Copies parameters in from a mapping of names to array-likes (torch tensors included).

        Every entry is checked before any is copied, so a failed load changes nothing. With ``strict``, the keys
        must match exactly; otherwise missing keys keep their values and unknown keys are an error still.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
        keys = set(state_dict.keys())
        unexpected = sorted(keys - set(self._params))
        missing = sorted(set(self._params) - keys)
        if unexpected or (strict and missing):
            raise ValueError(f"state_dict does not match this LSTM: missing keys {missing}, unexpected keys {unexpected}")
        staged = {}
        for name in keys:
            try:
                value = np.asarray(state_dict[name])
            except Exception as e:  # e.g. a torch tensor that requires grad
                raise TypeError(f"state_dict[{name!r}] could not be converted to an array: {e}") from None
            if value.shape != self._params[name].shape:
                raise ValueError(f"state_dict[{name!r}] must have shape {self._params[name].shape}, got {value.shape}")
            if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
                raise TypeError(f"state_dict[{name!r}] must hold real numbers, got dtype {value.dtype}")
            staged[name] = value
        for name, value in staged.items():
            np.copyto(self._params[name], value, casting="unsafe")
        self._cache = None

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # ---- input checks -----------------------------------------------------------------------------------
    def _as_input(self, name, value):
        if not isinstance(value, np.ndarray):
            value = np.asarray(value, dtype=self.dtype)
        if value.dtype != self.dtype:
            raise TypeError(f"{name} must have dtype {self.dtype.name} (the module's dtype), got {value.dtype}")
        return value

    def _check_state(self, name, value, N, H, unbatched):
        value = self._as_input(name, value)
        want = (self.num_directions * self.num_layers,) + (() if unbatched else (N,)) + (H,)
        if value.shape != want:
            raise ValueError(f"{name} must have shape {want}, got {value.shape}")
        # A private copy: the training cache must not change if the caller later writes into their array.
        return np.array(value, order="C", copy=True).reshape(want[0], N, H)

    def _pair(self, name, value):
        if value is None:
            return None, None
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{name} must be a pair (h, c) of arrays or None, got {type(value).__name__}")
        return value

    # ---- forward / backward -----------------------------------------------------------------------------
    def __call__(self, x, state=None):
        return self.forward(x, state)

    def forward(self, x, state=None):
        """Runs all layers. Returns ``out, (h_n, c_n)``. In training mode keeps the cache for one backward."""
        x = self._as_input("x", x)
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be 3-D (T, N, I) or 2-D unbatched (T, I), got shape {x.shape}")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        T, N, I = x.shape
        if I != self.input_size:
            raise ValueError(f"x must have {self.input_size} features (input_size) in its last axis, got {I}")
        if T < 1 or N < 1:
            raise ValueError(f"x must have at least one time step and one batch row, got shape {x.shape}")
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        h0, c0 = self._pair("state", state)
        if h0 is not None:
            h0 = self._check_state("state[0] (h0)", h0, N, H, unbatched)
            c0 = self._check_state("state[1] (c0)", c0, N, H, unbatched)

        training = self.training
        self._cache = None  # a new forward ends the previous one's claim to a backward
        # Training keeps the layer inputs and outputs for backward, so it works on private copies: writing into x or
        # into the returned out between forward and backward must not change the gradients.
        inp = np.array(x, order="C", copy=True) if training else np.ascontiguousarray(x)
        h_n = np.empty((L * D, N, H), self.dtype)
        c_n = np.empty((L * D, N, H), self.dtype)
        inputs, outputs, caches = [], [], []
        for layer in range(L):
            out = np.empty((T, N, D * H), self.dtype)
            for d in range(D):
                k = layer * D + d
                (W_ih, W_hh, b_ih, b_hh), _ = self._layer_params(layer, d)
                _, h_n[k], c_n[k], cache = _core.lstm_forward(
                    inp, None if h0 is None else h0[k], None if c0 is None else c0[k], W_ih, W_hh, b_ih, b_hh,
                    reverse=bool(d), training=training, y=out[:, :, d * H:(d + 1) * H])
                caches.append(cache)
            inputs.append(inp)
            outputs.append(out)
            inp = out
        if training:
            self._cache = dict(inputs=inputs, outputs=outputs, caches=caches, h0=h0, c0=c0,
                               unbatched=unbatched, shape=(T, N))
        out = inp.copy() if training else inp
        return self._to_user(out, unbatched), (self._state_to_user(h_n, unbatched), self._state_to_user(c_n, unbatched))

    def backward(self, dout, dstate=None):
        """Backpropagates through the last training-mode forward, given ∂L/∂out and optionally (∂L/∂h_n, ∂L/∂c_n).

        Adds the parameter gradients into ``self.grads`` and returns ``dx, (dh0, dc0)`` shaped like x and the state.
        The forward's cache is consumed: a second backward needs a second forward.
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a forward in training mode first (call lstm.train() and run "
                               "forward; each forward supports one backward)")
        cache = self._cache
        T, N = cache["shape"]
        unbatched = cache["unbatched"]
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        dout = self._as_input("dout", dout)
        want = self._to_user(np.empty((T, N, D * H), self.dtype), unbatched).shape
        if dout.shape != want:
            raise ValueError(f"dout must have the shape of the forward's output {want}, got {dout.shape}")
        dh_n, dc_n = self._pair("dstate", dstate)
        if dh_n is not None:
            dh_n = self._check_state("dstate[0] (dh_n)", dh_n, N, H, unbatched)
            dc_n = self._check_state("dstate[1] (dc_n)", dc_n, N, H, unbatched)
        dy = np.ascontiguousarray(self._from_user(dout, unbatched))

        self._cache = None
        h0, c0 = cache["h0"], cache["c0"]
        dh0 = np.empty((L * D, N, H), self.dtype)
        dc0 = np.empty((L * D, N, H), self.dtype)
        for layer in reversed(range(L)):
            inp, out = cache["inputs"][layer], cache["outputs"][layer]
            dx = np.zeros_like(inp)
            for d in range(D):
                k = layer * D + d
                (W_ih, W_hh, _, _), (dW_ih, dW_hh, db_ih, db_hh) = self._layer_params(layer, d)
                cols = slice(d * H, (d + 1) * H)
                _, dh0[k], dc0[k] = _core.lstm_backward(
                    dy[:, :, cols], None if dh_n is None else dh_n[k], None if dc_n is None else dc_n[k], inp,
                    None if h0 is None else h0[k], None if c0 is None else c0[k], W_ih, W_hh, out[:, :, cols],
                    cache["caches"][k], dW_ih, dW_hh, db_ih, db_hh, reverse=bool(d), dx=dx)
            dy = dx
        return (self._to_user(dy, unbatched),
                (self._state_to_user(dh0, unbatched), self._state_to_user(dc0, unbatched)))

    # ---- layouts ----------------------------------------------------------------------------------------
    def _to_user(self, seq, unbatched):
        if unbatched:
            return seq[:, 0, :]
        return seq.transpose(1, 0, 2) if self.batch_first else seq

    def _from_user(self, seq, unbatched):
        if unbatched:
            return seq[:, None, :]
        return seq.transpose(1, 0, 2) if self.batch_first else seq

    @staticmethod
    def _state_to_user(state, unbatched):
        return state[:, 0, :] if unbatched else state

    def __repr__(self):
        extra = "".join([
            f", num_layers={self.num_layers}" if self.num_layers != 1 else "",
            ", bias=False" if not self.bias else "",
            ", batch_first=True" if self.batch_first else "",
            ", bidirectional=True" if self.bidirectional else "",
            f", dtype='{self.dtype.name}'" if self.dtype != np.float32 else "",
        ])
        return f"LSTM({self.input_size}, {self.hidden_size}{extra})"
