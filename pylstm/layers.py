"""The recurrent layers LSTM, GRU and RNN: PyTorch's conventions over NumPy arrays, with an explicit backward."""

from __future__ import annotations

from functools import partial

import numpy as np

from . import _cells, _core
from ._module import (
    _bernoulli,
    _check_mask_options,
    _empty,
    _GRUForm,
    _layer_norm_flag,
    _ln_shapes,
    _Module,
    _probability,
    _RNNForm,
    _size,
    _zeros,
    _ZoneoutOption,
)


def _check_lengths(lengths, N, T):
    if isinstance(lengths, (bool, float, str)) or lengths is None:
        raise TypeError(f"lengths must be a sequence of N ints, got {type(lengths).__name__}")
    lens = np.asarray(lengths)
    if lens.dtype == bool or not np.issubdtype(lens.dtype, np.integer):
        raise TypeError(f"lengths must hold integers, got dtype {lens.dtype}")
    if lens.shape != (N,):
        raise ValueError(f"lengths must have shape ({N},) (one per batch row), got {lens.shape}")
    if lens.min() < 1 or lens.max() > T:
        raise ValueError(f"lengths must be between 1 and T = {T}, got min {lens.min()} and max {lens.max()}")
    return lens.astype(np.int64)


def _ln(W):
    """The layer norm's four arrays of a layer direction's parameter list (or gradients), or None without it."""
    return None if W[6] is None else W[6:10]


def _rd_args(rd):
    """The kernels' recurrent-dropout keywords for rd = (mask, buffer) or None."""
    return {} if rd is None else {"rd_mask": rd[0], "rd_masked": rd[1]}


class _Recurrent(_ZoneoutOption, _Module):
    """What the three layer types share: parameters, gradients, layouts, checks and the layer/direction loop.

    A subclass sets ``_kind``, its cell's description (pylstm._cells), and implements ``_kernel_forward`` and
    ``_kernel_backward`` for one layer direction.
    """

    _kind: _cells.CellKind

    @property
    def _states(self):
        """The names of the states: ("h", "c") or ("h",)."""
        return self._kind.states

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, weight_drop=0.0, recurrent_dropout=0.0, zoneout=0.0, dtype="float32",
                 seed=None):
        self.input_size = _size("input_size", input_size)
        self.hidden_size = _size("hidden_size", hidden_size)
        self.num_layers = _size("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating, np.integer)):
            raise TypeError(f"dropout must be a number in [0, 1), got {type(dropout).__name__}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        self.weight_drop = _probability("weight_drop", weight_drop)
        self.recurrent_dropout = _probability("recurrent_dropout", recurrent_dropout)
        self.zoneout = zoneout
        self.masks = {}  # the masks of the last training call: masks["l0"]["weight_drop"], ... (see forward)
        self._cache = None
        # Each layer direction's training cache once a backward has consumed it, for the next training call to fill
        # again: a fresh one (T·N·6H values for the LSTM, T·N·(16H + 3) with layer norm) costs its pages' clearing on
        # first touch, measured at up to a quarter of a medium layer-norm training call.
        self._spare_caches = {}
        self._packs = {}  # id(W_hh) -> [PackedLstm, the parameter version it holds or None] (fused LSTM only)
        super().__init__(dtype, seed)
        # Dropout masks come from their own stream, seeded from the module's seed, so that they are reproducible
        # and do not depend on how many parameters were drawn.
        self._dropout_rng = np.random.default_rng(None if seed is None else [seed, 1])
        # Each regularizer's masks come from a stream of their own, so that one option does not change another's.
        self._weight_drop_rng = np.random.default_rng(None if seed is None else [seed, 2])
        self._recurrent_dropout_rng = np.random.default_rng(None if seed is None else [seed, 3])
        self._zoneout_rng = np.random.default_rng(None if seed is None else [seed, 4])

    def _forget(self):
        self._cache = None
        self._spare_caches = {}

    def train(self, mode=True):
        if not mode:  # an eval-mode module keeps no training memory
            self._spare_caches = {}
        return super().train(mode)

    def _cache_size(self, T, N):
        """Elements of one layer direction's training cache."""
        return self._kind.cache_size(T, N, self.hidden_size)

    def _spare_cache(self, k, T, N):
        """Layer direction k's consumed cache if it has this call's size, else None (the kernels make a new one)."""
        spare = self._spare_caches.pop(k, None)
        return spare if spare is not None and spare.size == self._cache_size(T, N) else None

    # ---- parameters -------------------------------------------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _param_shapes(self):
        H, G, D, P = self.hidden_size, self._kind.G, self.num_directions, self._out
        shapes = {}
        for layer in range(self.num_layers):
            fan_in = self.input_size if layer == 0 else D * P
            for d in range(D):
                sfx = _cells.param_suffix(layer, d)
                shapes["weight_ih" + sfx] = (G * H, fan_in)
                shapes["weight_hh" + sfx] = (G * H, P)
                if self.bias:
                    shapes["bias_ih" + sfx] = (G * H,)
                    shapes["bias_hh" + sfx] = (G * H,)
                if P != H:
                    shapes["weight_hr" + sfx] = (P, H)
        return shapes

    @property
    def _out(self):
        """The width of h and of each direction's output: hidden_size, or the LSTM's proj_size."""
        return self.hidden_size

    def _widths(self):
        """The width of each state, in the order of ``_states``."""
        return [self._out if name == "h" else self.hidden_size for name in self._states]

    _PARAM_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ch", "ln_weight_ih",
                    "ln_weight_hh", "ln_weight_c", "ln_bias_c")

    def _layer_names(self, layer, d):
        names = self.__dict__.get("_param_names")  # built once: the call is on every layer call's path
        if names is None:
            names = self._param_names = {
                (k, r): tuple(_cells.param_name(kind, k, r) for kind in self._PARAM_KINDS)
                for k in range(self.num_layers) for r in range(self.num_directions)}
        return names[layer, d]

    def _layer_weights(self, layer, d):
        """The parameters of layer direction (layer, d) in _PARAM_KINDS order (None where absent), a tuple. Kept per
        parameter dict: its arrays are changed in place, never replaced (a quantized module replaces the dict)."""
        kept = self.__dict__.get("_weights")
        if kept is None or kept[0] is not self._params:
            kept = self._weights = (self._params, {})
        W = kept[1].get((layer, d))
        if W is None:
            p = self._params
            W = kept[1][layer, d] = tuple(p.get(n) for n in self._layer_names(layer, d))
        return W

    def _layer_params(self, layer, d, grads=None):
        """_layer_weights and the matching gradient arrays (of self.grads, or of `grads`)."""
        g = self.grads if grads is None else grads
        return self._layer_weights(layer, d), [g.get(n) for n in self._layer_names(layer, d)]

    # ---- streaming --------------------------------------------------------------------------------------
    def stream(self, state=None):
        """A :class:`~pylstm.stream.Stream` over this layer: ``s = layer.stream(); y_t = s.step(x_t)`` runs one
        time step per call with the state carried, for inference (as in eval mode). ``state`` is what forward
        takes as its initial state (None for zeros)."""
        from .stream import Stream

        return Stream(self, state)

    def _fused(self):
        return False

    def _stream_one_call(self):
        """Whether stream() runs the one-call-per-step path (the fused float32 LSTM without zoneout, whose
        streaming kernel has no zoned state), else a one-step forward."""
        return self._fused() and not self._zoneout_on

    # ---- input checks -----------------------------------------------------------------------------------
    def _check_state(self, name, value, N, H, unbatched):  # H: this state's width
        want = (self.num_directions * self.num_layers,) + (() if unbatched else (N,)) + (H,)
        return self._state_input(name, value, want, (want[0], N, H))

    # ---- forward / backward -----------------------------------------------------------------------------
    def _run(self, x, states, lengths=None, masks=None):
        """The layers over x; ``states`` is None or one (D*L, N, H)-shaped array-like per state; ``lengths`` None or
        N sequence lengths; ``masks`` None or a training call's masks (see forward). Returns the output and the
        final states in the caller's layout."""
        with self._lock:
            return self._run_locked(x, states, lengths, masks)

    def _mask(self, masks, key, option, shape, draw):
        """The `option` mask of layer direction `key` ("l0", "l0_reverse"): the caller's (checked) or drawn."""
        if masks is None:
            return draw(shape).astype(self.dtype, copy=False)
        try:
            value = np.array(masks[key][option], dtype=self.dtype)  # a private copy: the cache must not change
        except (KeyError, TypeError):
            raise ValueError(f"masks must hold masks[{key!r}][{option!r}] (the form module.masks has)") from None
        if value.shape != shape:
            raise ValueError(f"masks[{key!r}][{option!r}] must have shape {shape}, got {value.shape}")
        return value

    _REGULARIZERS = ("weight_drop", "recurrent_dropout", "zoneout")  # the options that draw masks
    # module.masks' keys per layer direction, and the option each belongs to
    _MASKS = {"weight_drop": "weight_drop", "recurrent_dropout": "recurrent_dropout", "zoneout_c": "zoneout",
              "zoneout_h": "zoneout"}

    def _draw_masks(self, layer, d, W, N, masks, record):
        """The regularizers' masks of one layer direction for a training call of N rows, and its weights with them
        applied: (W, drop, rd) where drop is (M, masked W_hh) with weight-drop and rd the recurrent-dropout mask
        (N, P) in the caller's row order, each None when its option is off. Each option draws from its own stream,
        weight-drop first."""
        key = _cells.param_suffix(layer, d)[1:]
        drop = rd = None

        def draw(p, rng):
            keep = self.dtype.type(1 / (1 - p))
            return lambda shape: (rng.random(shape, dtype=self.dtype) >= p) * keep

        if self.weight_drop:
            M = self._mask(masks, key, "weight_drop", W[1].shape, draw(self.weight_drop, self._weight_drop_rng))
            record.setdefault(key, {})["weight_drop"] = M.copy()  # module.masks: the caller's copy, not backward's
            W = list(W)
            W[1] = W[1] * M
            drop = (M, W[1])
        if self.recurrent_dropout:
            rd = self._mask(masks, key, "recurrent_dropout", (N, self._out),
                            draw(self.recurrent_dropout, self._recurrent_dropout_rng))
            record.setdefault(key, {})["recurrent_dropout"] = rd.copy()
        return W, drop, rd

    def _draw_zoneout(self, layer, d, T, N, masks, record):
        """Zoneout's masks (d_c, d_h) of one layer direction for a training call, (T, N, H) each (1: keep the
        previous state, with probability z), time order and the caller's rows; d_c None for the GRU; None when
        off."""
        if not self._zoneout_on:
            return None
        key = _cells.param_suffix(layer, d)[1:]
        rng, out = self._zoneout_rng, []
        for state, z in zip(("c", "h"), self._zone):
            if state == "c" and len(self._kind.states) == 1:
                out.append(None)
                continue
            m = self._mask(masks, key, f"zoneout_{state}", (T, N, self.hidden_size),
                           lambda shape, z=z: _bernoulli(rng, shape, z, self.dtype))
            # (T·N·H values each: module.masks shares them read-only rather than copy them per call)
            m.flags.writeable = False
            record.setdefault(key, {})[f"zoneout_{state}"] = m
            out.append(m)
        return out

    def _run_locked(self, x, states, lengths, masks=None):
        x = self._as_input("x", x)
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be 3-D (T, N, I) or 2-D unbatched (T, I), got shape {x.shape}")
        unbatched = x.ndim == 2
        seq = x[:, None, :] if unbatched else x.transpose(1, 0, 2) if self.batch_first else x
        T, N, I = seq.shape
        if I != self.input_size:
            raise ValueError(f"x must have {self.input_size} features (input_size) in its last axis, got {I}")
        if T < 1 or N < 1:
            raise ValueError(f"x must have at least one time step and one batch row, got shape {x.shape}")
        H, D, L = self._out, self.num_directions, self.num_layers  # H: the width of each direction's output
        s0 = None
        if states is not None:
            s0 = [self._check_state(f"{name}0", v, N, w, unbatched)
                  for name, v, w in zip(self._states, states, self._widths())]
        perm = batch_sizes = None
        if lengths is not None:
            # Variable lengths: sort the batch longest first, so the rows still running at any step are a prefix,
            # and hand the kernels PyTorch's batch_sizes form, the rows running at each step. (Only the fused loops
            # take lengths; the BLAS-per-step loops, their reference shape, refuse them.)
            lens = _check_lengths(lengths, N, T)
            perm = np.argsort(-lens, kind="stable")
            seq = seq[:, perm]
            s0 = None if s0 is None else [np.ascontiguousarray(s[:, perm]) for s in s0]
            batch_sizes = _cells.batch_sizes(lens[perm], T)

        training = self.training
        if masks is not None and not training:
            raise ValueError("masks are for training calls: in eval mode no mask is drawn or applied")
        if masks is not None:
            _check_mask_options(self, masks)
        self._cache = None  # a new forward ends the previous one's claim to a backward
        # Training keeps the layer inputs and outputs for backward, so it works on private copies: writing into x or
        # into the returned out between forward and backward must not change the gradients.
        inp = np.ascontiguousarray(seq)
        if training and np.may_share_memory(inp, seq):  # (a non-contiguous seq was copied already)
            inp = _core.copy(inp)
        if training and lengths is not None:
            # Padding may hold anything (NaN from np.empty, say): the weight gradients multiply every row of the
            # input by its gradient, zero there, and 0 · NaN would be NaN.
            inp[np.arange(T)[:, None] >= lens[perm][None, :]] = 0
        finals_all, inputs, outputs, dropout_masks = [], [], [], []
        # A training call keeps, per layer direction, what backward reads (see _train_direction).
        kept = dict(caches=[], drops=[], rds=[], zones=[]) if training else None
        drawn = {}
        zone_kw = None if training else self._zone_kwargs()  # inference: the expectation, alike for every direction
        for layer in range(L):
            out = (_zeros if lengths is not None else _empty)((T, N, D * H), self.dtype)  # padding outputs zeros
            for d in range(D):
                k = layer * D + d
                W = self._layer_weights(layer, d)
                y = out if D == 1 else out[:, :, d * H:(d + 1) * H]
                s0k = None if s0 is None else [s[k] for s in s0]
                if training:
                    finals = self._train_direction(layer, d, inp, s0k, W, y, perm, batch_sizes, masks, kept, drawn)
                else:
                    finals, _ = self._kernel_forward(inp, s0k, W, reverse=bool(d), batch_sizes=batch_sizes,
                                                     training=False, y=y, zone=zone_kw)
                finals_all.append(finals)
            if training:
                inputs.append(inp)
                outputs.append(out)
            inp = out
            if training and self.dropout and layer < L - 1:
                # Inverted dropout on the output of every layer but the last; backward reuses the mask.
                mask = (self._dropout_rng.random(out.shape) >= self.dropout) / (1 - self.dropout)
                dropout_masks.append(mask.astype(self.dtype))
                inp = out * dropout_masks[-1]
        # The final states, (L*D, N, w) each: the kernels' own fresh arrays when there is one layer direction.
        s_n = [f[None] for f in finals_all[0]] if L * D == 1 else [np.stack(f) for f in zip(*finals_all)]
        if training:
            self._cache = dict(kept, inputs=inputs, outputs=outputs, masks=dropout_masks, s0=s0, unbatched=unbatched,
                               shape=(T, N), perm=perm, batch_sizes=batch_sizes)
            self.masks = drawn
        out = _core.copy(inp) if training else inp
        if perm is not None:
            inv = np.argsort(perm)
            out, s_n = out[:, inv], [s[:, inv] for s in s_n]
        return self._to_user(out, unbatched), [self._state_to_user(s, unbatched) for s in s_n]

    def _train_direction(self, layer, d, inp, s0, W, y, perm, batch_sizes, masks, kept, drawn):
        """One layer direction of a training forward: draws its regularizers' masks (recording them in `drawn`),
        runs the kernel into y, appends to `kept` (caches, drops, rds, zones) what backward reads and returns the
        final states."""
        (T, N, _), H = inp.shape, self._out
        W, drop, rd = self._draw_masks(layer, d, W, N, masks, drawn)
        zone = self._draw_zoneout(layer, d, T, N, masks, drawn)
        if rd is not None:  # the kernels' rows (sorted by length) and the buffer of masked states
            rd = (np.ascontiguousarray(rd if perm is None else rd[perm]), _empty((T + 1, N, H), self.dtype))
        if zone is not None:  # the kernels' rows
            zone = [None if z is None else np.ascontiguousarray(z if perm is None else z[:, perm]) for z in zone]
        finals, cache = self._kernel_forward(
            inp, s0, W, reverse=bool(d), batch_sizes=batch_sizes, training=True, y=y, rd=rd,
            zone=self._zone_mask_kwargs(zone), cache=self._spare_cache(layer * self.num_directions + d, T, N),
            transient=drop is not None)  # no kept packed copy of masked weights
        for name, value in zip(("caches", "drops", "rds", "zones"), (cache, drop, rd, zone)):
            kept[name].append(value)
        return finals

    def _run_backward(self, dout, dstates, input_grad=True):
        with self._lock:
            return self._run_backward_locked(dout, dstates, bool(input_grad))

    def _run_backward_locked(self, dout, dstates, input_grad=True):
        if self._cache is None:
            raise RuntimeError("backward() needs a forward in training mode first (call .train() and run forward; "
                               "each forward supports one backward)")
        cache = self._cache
        T, N = cache["shape"]
        unbatched = cache["unbatched"]
        H, D, L = self._out, self.num_directions, self.num_layers
        dout = self._as_input("dout", dout)
        want = (T, D * H) if unbatched else (N, T, D * H) if self.batch_first else (T, N, D * H)
        if dout.shape != want:
            raise ValueError(f"dout must have the shape of the forward's output {want}, got {dout.shape}")
        ds_n = None
        if dstates is not None:
            ds_n = [self._check_state(f"d{name}_n", v, N, w, unbatched)
                    for name, v, w in zip(self._states, dstates, self._widths())]
        dy = np.ascontiguousarray(self._from_user(dout, unbatched))
        perm = cache["perm"]
        if perm is not None:
            dy = np.ascontiguousarray(dy[:, perm])
            ds_n = None if ds_n is None else [np.ascontiguousarray(s[:, perm]) for s in ds_n]

        self._cache = None  # consumed, whatever happens below
        # Gradients go to fresh buffers first and into self.grads only once the whole backward has succeeded. A
        # single layer direction is one kernel call, which checks everything before it writes a gradient: it adds
        # into self.grads directly.
        direct = L * D == 1
        fresh = self.grads if direct else {k: _zeros(v.shape, v.dtype) for k, v in self.grads.items()}
        backward = partial(self._kernel_backward, batch_sizes=cache["batch_sizes"])
        s0 = cache["s0"]
        ds0 = [_empty((L * D, N, w), self.dtype) for w in self._widths()]
        for layer in reversed(range(L)):
            inp, out = cache["inputs"][layer], cache["outputs"][layer]
            # The first layer's ∂L/∂x only when asked for (the layers above always need theirs).
            dx = _zeros(inp.shape, inp.dtype) if input_grad or layer > 0 else None
            for d in range(D):
                k = layer * D + d
                W, G = self._layer_params(layer, d, fresh)
                drop = cache["drops"][k]
                if drop is not None:  # weight-drop: the masked W_hh, and ∂L/∂W_hh = M ⊙ ∂L/∂(M ⊙ W_hh)
                    W, G, dW = list(W), list(G), _zeros(drop[1].shape, drop[1].dtype)
                    W[1], G[1] = drop[1], dW
                cols = slice(d * H, (d + 1) * H)
                firsts = backward(dy[:, :, cols], None if ds_n is None else [s[k] for s in ds_n], inp,
                                  None if s0 is None else [s[k] for s in s0], W, G, out[:, :, cols],
                                  cache["caches"][k], reverse=bool(d), dx=dx, rd=cache["rds"][k],
                                  zone=self._zone_mask_kwargs(cache["zones"][k]))
                if drop is not None:
                    self._layer_params(layer, d, fresh)[1][1][...] += drop[0] * dW
                for dst, src in zip(ds0, firsts):
                    dst[k] = src
            dy = dx * cache["masks"][layer - 1] if cache["masks"] and layer > 0 else dx
        if perm is not None:
            inv = np.argsort(perm)
            dy, ds0 = None if dy is None else dy[:, inv], [s[:, inv] for s in ds0]
        if not direct:
            for k, g in fresh.items():
                self.grads[k] += g
        self._spare_caches = dict(enumerate(cache["caches"]))  # consumed: the next training call fills them again
        return (None if dy is None else self._to_user(dy, unbatched)), [self._state_to_user(s, unbatched) for s in ds0]

    def _kernel_forward(self, x, s0, W, *, reverse, training, y, batch_sizes=None, rd=None, zone=None, cache=None,
                        transient=False):
        """One layer direction, W = [W_ih, W_hh, b_ih, b_hh, W_hr, peepholes, the layer norm's four] (None where
        absent): returns ([final state arrays], cache). batch_sizes: the rows running at each step (lengths), or
        None. rd: recurrent dropout's (mask (N, P), buffer (T + 1, N, P)), or None. zone: the kernels' zoneout
        keywords. cache: an array for the training cache to fill (a consumed one), or None. transient: W is not the
        parameters (masked by weight-drop), so no kept packed copy of it is used or made."""
        raise NotImplementedError

    def _kernel_backward(self, dy, ds_n, x, s0, W, G, y, cache, *, reverse, dx, batch_sizes=None, rd=None,
                         zone=None):
        """One layer direction, G the gradients of W: accumulates into dx (None: not computed) and G; returns
        [state gradients]. rd and zone as the forward had them."""
        raise NotImplementedError

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

    @classmethod
    def _torch_name(cls):
        return cls._kind.module_name

    def _torch_config(self):
        if self._zoneout_on:
            raise ValueError(f"torch.nn.{self._torch_name()} has no zoneout (in eval each state keeps a share z of "
                             "its previous value), so its outputs would differ")
        return self._torch_name(), dict(
            input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers, bias=self.bias,
            batch_first=self.batch_first, dropout=self.dropout, bidirectional=self.bidirectional)

    @classmethod
    def _config_from_torch(cls, module):
        return dict(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
                    bias=module.bias, batch_first=module.batch_first, dropout=float(module.dropout),
                    bidirectional=module.bidirectional)

    def _extra_repr(self):
        return ""

    def __repr__(self):
        extra = "".join([
            f", num_layers={self.num_layers}" if self.num_layers != 1 else "",
            ", bias=False" if not self.bias else "",
            ", batch_first=True" if self.batch_first else "",
            f", dropout={self.dropout}" if self.dropout else "",
            f", weight_drop={self.weight_drop}" if self.weight_drop else "",
            f", recurrent_dropout={self.recurrent_dropout}" if self.recurrent_dropout else "",
            f", zoneout={self.zoneout}" if self._zoneout_on else "",
            ", bidirectional=True" if self.bidirectional else "",
            self._extra_repr(),
            f", dtype='{self.dtype.name}'" if self.dtype != np.float32 else "",
        ])
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"


class LSTM(_Recurrent):
    """Multi-layer LSTM with the call shapes, parameter names and gate order (i, f, g, o) of torch.nn.LSTM.

    ``out, (h_n, c_n) = lstm(x, state=None)`` runs the layers; in training mode it keeps what
    ``dx, (dh0, dc0) = lstm.backward(dout, dstate=None)`` needs, and backward adds the parameter gradients
    into ``lstm.grads``. x is (T, N, I), (N, T, I) with ``batch_first``, or unbatched (T, I); out is
    (T, N, D*H) in the same layout; h_n and c_n are (D*num_layers, N, H), layer-major then direction.
    With ``proj_size`` P > 0 (LSTMP), h_t = (o ⊙ tanh c_t) W_hrᵀ: out is (T, N, D*P), h_n (D*num_layers, N, P),
    and each layer has a ``weight_hr_l{k}`` (P, H).
    With ``peepholes=True`` (ONNX's P; not in torch) the gates also see the cell state: i and f add p_i ⊙ c_{t-1}
    and p_f ⊙ c_{t-1}, o adds p_o ⊙ c_t; each layer and direction has a ``weight_ch_l{k}`` (3H,) = (p_i, p_f, p_o),
    drawn like the other weights. Not with proj_size.
    With ``layer_norm=True`` (Ba et al. 2016, haste's parameterisation) the gates read LN(x W_ihᵀ; γ_ih) +
    LN(h W_hhᵀ; γ_hh) + b and h_t = o ⊙ tanh(LN(c_t; γ_c) + β_c), each LN over one row; each layer and direction
    has ``ln_weight_ih_l{k}``, ``ln_weight_hh_l{k}`` (4H,), ``ln_weight_c_l{k}`` (H,), starting at 1, and
    ``ln_bias_c_l{k}`` (H,), starting at 0 (see docs/regularizers.md). Not with proj_size or peepholes.
    """

    _kind = _cells.LSTM
    layer_norm = False  # (the default of a module pickled before the option existed)

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, peepholes=False, weight_drop=0.0, recurrent_dropout=0.0,
                 zoneout=0.0, layer_norm=False, dtype="float32", seed=None):
        self.proj_size = _size("proj_size", proj_size, minimum=0)
        hidden = _size("hidden_size", hidden_size)
        if self.proj_size >= hidden:
            raise ValueError(f"proj_size must be smaller than hidden_size ({hidden}), got {self.proj_size}")
        if not isinstance(peepholes, (bool, np.bool_)):
            raise TypeError(f"peepholes must be a bool, got {type(peepholes).__name__}")
        self.peepholes = bool(peepholes)
        if self.peepholes and self.proj_size:
            raise ValueError("peepholes and proj_size cannot be combined (the peepholes read c, the projection "
                             "replaces h)")
        self.layer_norm = _layer_norm_flag(layer_norm, peepholes=self.peepholes, proj_size=self.proj_size)
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, weight_drop=weight_drop,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout, dtype=dtype, seed=seed)

    @property
    def _out(self):
        return self.proj_size or self.hidden_size

    def _refuse_zoneout(self):
        if self.peepholes or self.proj_size:
            raise ValueError("zoneout is not combined with peepholes or proj_size (the kernels zone the cell's own "
                             "h and c)")

    def _param_shapes(self):
        shapes = super()._param_shapes()
        if not self.peepholes and not self.layer_norm:
            return shapes
        out = {}  # each layer direction's weight_ch or layer-norm parameters after its other parameters
        last = "bias_hh" if self.bias else "weight_hh"
        for k, v in shapes.items():
            out[k] = v
            if k.startswith(last):
                sfx = k[len(last):]
                if self.peepholes:
                    out["weight_ch" + sfx] = (3 * self.hidden_size,)
                if self.layer_norm:
                    out.update(_ln_shapes(sfx, self.hidden_size))
        return out

    def _torch_config(self):
        if self.peepholes:
            raise ValueError("torch.nn.LSTM has no peephole connections (peepholes=True)")
        if self.layer_norm:
            raise ValueError("torch.nn.LSTM has no layer norm (layer_norm=True): use pylstm.torch.LSTM(..., "
                             "layer_norm=True), which has")
        name, kwargs = super()._torch_config()
        return name, dict(kwargs, proj_size=self.proj_size)

    @classmethod
    def _config_from_torch(cls, module):  # (pylstm.torch.LSTM(layer_norm=True) carries its layer norm over)
        return dict(super()._config_from_torch(module), proj_size=module.proj_size,
                    layer_norm=bool(getattr(module, "layer_norm", False)))

    def _extra_repr(self):
        return (f", proj_size={self.proj_size}" if self.proj_size else "") + \
            (", peepholes=True" if self.peepholes else "") + (", layer_norm=True" if self.layer_norm else "")

    def __call__(self, x, state=None, *, lengths=None, masks=None):
        return self.forward(x, state, lengths=lengths, masks=masks)

    def forward(self, x, state=None, *, lengths=None, masks=None):
        """Runs all layers. Returns ``out, (h_n, c_n)``. In training mode keeps the cache for one backward.

        ``lengths`` (N ints in [1, T]) gives each sequence's length, with the semantics of PyTorch's packed
        sequences padded back to T: out is zero past a sequence's end, h_n and c_n are taken at its own last step,
        the reverse direction starts there, and backward ignores dout past it.

        With ``weight_drop=p`` a training call draws, per layer and direction, a mask M of W_hh's shape (0 or
        1/(1 − p)) and runs on M ⊙ W_hh (DropConnect, Merity et al. 2017); ``module.masks`` holds the last training
        call's masks (``masks["l0"]["weight_drop"]``, ``masks["l1_reverse"]...``), and ``masks=`` in that form
        gives a training call its masks instead of drawing them. Eval mode uses W_hh itself. ``recurrent_dropout``
        and ``zoneout`` record theirs the same way (``masks["l0"]["recurrent_dropout"]`` (N, P),
        ``["zoneout_c"]``, ``["zoneout_h"]`` (T, N, H)); see docs/regularizers.md."""
        out, (h_n, c_n) = self._run(x, self._pair("state", state), lengths, masks)
        return out, (h_n, c_n)

    def backward(self, dout, dstate=None, *, input_grad=True):
        """Backpropagates through the last training-mode forward, given ∂L/∂out and optionally (∂L/∂h_n, ∂L/∂c_n).

        Adds the parameter gradients into ``self.grads`` and returns ``dx, (dh0, dc0)`` shaped like x and the state.
        With ``input_grad=False`` dx is None and not computed (as torch skips it for an input that does not require
        a gradient, such as data). The forward's cache is consumed: a second backward needs a second forward.
        """
        dx, (dh0, dc0) = self._run_backward(dout, self._pair("dstate", dstate), input_grad)
        return dx, (dh0, dc0)

    @staticmethod
    def _pair(name, value):
        if value is None:
            return None
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{name} must be a pair (h, c) of arrays or None, got {type(value).__name__}")
        return value

    def _cache_size(self, T, N):
        return _core.lstm_cache_size(T, N, self.hidden_size, layer_norm=self.layer_norm)

    def _fused(self):
        """Whether the layers run the fused float32 loop, which packs the weights and can keep them packed (and
        streams take the one-call-per-step path, which has no peepholes)."""
        return self.dtype == np.float32 and not self.proj_size and not self.peepholes and not self.layer_norm

    def _packed(self, W):
        """The kept PackedLstm of the layer direction with weights W (keyed by its W_hh array, which lives as long
        as the module), and whether it holds the current parameters. Calls inside edit_parameters() never count
        as current, and what they pack is not kept as current either (see _kept)."""
        packs = self._packs
        entry = packs.get(id(W[1]))
        if entry is None:
            entry = packs[id(W[1])] = [_core.PackedLstm(W[0].shape[1], self.hidden_size), None]
        current = entry[1] == self._version and not self._editing and entry[0].ready
        return entry, current

    def _kept(self, entry, version):
        """Records that entry now holds the parameters of `version`, the version read before packing: a change
        made while the kernel ran (another thread's optimizer step) then makes the next call pack again."""
        entry[1] = None if self._editing else version

    def _kernel_forward(self, x, s0, W, *, reverse, training, y, batch_sizes=None, rd=None, zone=None, cache=None,
                        transient=False):
        h0, c0 = (None, None) if s0 is None else s0
        entry, version = None, self._version
        if not transient and self._fused():
            entry, current = self._packed(W)
            if not current:
                entry[0].invalidate()
                entry[1] = None
        # (only the keywords that are set: the binding looks each one up by name)
        kw = dict(zone) if zone else {}
        if W[4] is not None:
            kw["W_hr"] = W[4]
        if W[5] is not None:
            kw["peep"] = W[5]
        if W[6] is not None:
            kw["ln"] = W[6:10]
        if rd is not None:
            kw["rd_mask"], kw["rd_masked"] = rd
        _, h_n, c_n, cache = self._kind.forward(x, h0, c0, *W[:4], reverse=reverse, training=training, y=y,
                                                packed=None if entry is None else entry[0],
                                                batch_sizes=batch_sizes, cache=cache, **kw)
        if entry is not None:
            self._kept(entry, version)
        return [h_n, c_n], cache

    # One streaming step of the stack from the packs of _stream_packs (Stream's one-call path).
    _stream_step = staticmethod(_core.lstm_stream_step)

    def _stream_packs(self):
        """The packed weights of every layer (forward direction) for the current parameters, packing where needed."""
        packs = []
        for layer in range(self.num_layers):
            W = self._layer_weights(layer, 0)
            entry, current = self._packed(W)
            if not current:
                entry[1], version = None, self._version
                _core.lstm_pack(entry[0], *W[:4])
                self._kept(entry, version)
            packs.append(entry[0])
        return packs

    def _kernel_backward(self, dy, ds_n, x, s0, W, G, y, cache, *, reverse, dx, batch_sizes=None, rd=None,
                         zone=None):
        dh_n, dc_n = (None, None) if ds_n is None else ds_n
        h0, c0 = (None, None) if s0 is None else s0
        _, dh0, dc0 = self._kind.backward(dy, dh_n, dc_n, x, h0, c0, W[0], W[1], y, cache, *G[:4], W_hr=W[4],
                                          dW_hr=G[4], reverse=reverse, dx=dx, input_grad=dx is not None,
                                          batch_sizes=batch_sizes, peep=W[5], dpeep=G[5], ln=_ln(W), dln=_ln(G),
                                          **_rd_args(rd), **(zone or {}))
        return [dh0, dc0]


class _OneState(_Recurrent):
    """GRU and RNN: one state h. ``out, h_n = layer(x, h0=None)``; ``dx, dh0 = layer.backward(dout, dh_n=None)``."""

    def __call__(self, x, h0=None, *, lengths=None, masks=None):
        return self.forward(x, h0, lengths=lengths, masks=masks)

    def forward(self, x, h0=None, *, lengths=None, masks=None):
        """Runs all layers. Returns ``out, h_n``. In training mode keeps the cache for one backward.
        ``lengths``, ``weight_drop`` and ``masks`` as for ``LSTM.forward``."""
        out, (h_n,) = self._run(x, None if h0 is None else [h0], lengths, masks)
        return out, h_n

    def backward(self, dout, dh_n=None, *, input_grad=True):
        """Backpropagates through the last training-mode forward, given ∂L/∂out and optionally ∂L/∂h_n.

        Adds the parameter gradients into ``self.grads`` and returns ``dx, dh0`` (dx None and not computed with
        ``input_grad=False``). The forward's cache is consumed.
        """
        dx, (dh0,) = self._run_backward(dout, None if dh_n is None else [dh_n], input_grad)
        return dx, dh0

    def _kernel_forward(self, x, s0, W, *, reverse, training, y, batch_sizes=None, rd=None, zone=None, cache=None,
                        transient=False):
        kind = self._kind
        _, h_n, cache = kind.forward(x, None if s0 is None else s0[0], *W[:4], reverse=reverse, training=training,
                                     y=y, batch_sizes=batch_sizes, **kind.variant(self), **_rd_args(rd),
                                     **(zone or {}), cache=cache)
        return [h_n], cache

    def _kernel_backward(self, dy, ds_n, x, s0, W, G, y, cache, *, reverse, dx, batch_sizes=None, rd=None,
                         zone=None):
        kind = self._kind
        _, dh0 = kind.backward(dy, None if ds_n is None else ds_n[0], x, None if s0 is None else s0[0], W[0], W[1],
                               y, cache, *G[:4], reverse=reverse, dx=dx, input_grad=dx is not None,
                               batch_sizes=batch_sizes, **kind.variant(self), **_rd_args(rd), **(zone or {}))
        return [dh0]


class GRU(_GRUForm, _OneState):
    """Multi-layer GRU with the call shapes, parameter names and gate order (r, z, n) of torch.nn.GRU.

    ``linear_before_reset=True`` (the default) is PyTorch's form, n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn));
    ``False`` is the original form with the reset applied to h before the product (Keras ``reset_after=False``,
    the ONNX default).
    """

    _kind = _cells.GRU

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, linear_before_reset=True, weight_drop=0.0, recurrent_dropout=0.0,
                 zoneout=0.0, dtype="float32", seed=None):
        self.linear_before_reset = bool(linear_before_reset)
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, weight_drop=weight_drop,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout, dtype=dtype, seed=seed)


    def _extra_repr(self):
        return "" if self.linear_before_reset else ", linear_before_reset=False"


class RNN(_RNNForm, _OneState):
    """Multi-layer Elman RNN, h' = φ(W_ih x + b_ih + W_hh h + b_hh) with φ = tanh or relu, as torch.nn.RNN, or
    sigmoid (pylstm's own: it shows why the hidden state uses tanh; no torch form)."""

    _kind = _cells.RNN

    def __init__(self, input_size, hidden_size, num_layers=1, *, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, weight_drop=0.0, recurrent_dropout=0.0, zoneout=0.0,
                 dtype="float32", seed=None):
        self._set_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                         bidirectional=bidirectional, weight_drop=weight_drop,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout, dtype=dtype, seed=seed)


    def _extra_repr(self):
        return f", nonlinearity='{self.nonlinearity}'" if self.nonlinearity != "tanh" else ""
