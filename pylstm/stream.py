"""Streaming inference: one time step per call through a recurrent layer, the state carried between calls."""

from __future__ import annotations

import numpy as np

from ._module import _empty, _zeros


class Stream:
    """``s = layer.stream(state=None)``; then ``y_t = s.step(x_t)`` once per time step.

    x_t is (N, I), or (I,) for one unbatched sequence; y_t is the layer's output at that step, (N, D*H) or (D*H,)
    (D = 1: a stream runs forward only). ``s.state`` is the carried state in the form forward returns it
    (``(h, c)`` for an LSTM, ``h`` otherwise), ``s.reset(state=None)`` starts again. It is inference, as in eval
    mode: no dropout and nothing kept for backward, whatever the layer's mode.

    A float32 LSTM without projection runs one fused kernel call per step for all layers, from weights packed
    once and kept until the parameters change (an optimizer step, load_state_dict, edit_parameters: the next step
    repacks). Other layers run their ordinary forward on a one-step sequence.
    """

    def __init__(self, layer, state=None):
        if layer.bidirectional:
            raise ValueError("stream() needs a unidirectional layer: the reverse direction starts from the end of the "
                             "sequence, which a stream has not seen yet")
        self._layer = layer
        self.reset(state)

    def __getstate__(self):
        """copy.deepcopy and pickle copy the carried state and the layer; the packed weights are the layer's own,
        so a copy packs again on its first step."""
        state = dict(self.__dict__)
        state["_packs"] = state["_packs_version"] = None
        return state

    def reset(self, state=None):
        """Starts again from ``state`` (as forward takes it; None for zeros). Checks it before changing anything."""
        layer = self._layer
        self._packs, self._packs_version, self._x_shape, self._x2_shape = None, None, None, None
        if state is None:
            self._state, self._unbatched = None, None
            self._h = None
            return
        states = layer._pair("state", state) if len(layer._states) == 2 else (state,)
        first = np.asarray(states[0])
        if first.ndim not in (2, 3):
            raise ValueError(f"state arrays must be (num_layers, N, H) or unbatched (num_layers, H), got {first.shape}")
        unbatched = first.ndim == 2
        N = 1 if unbatched else first.shape[1]
        checked = [layer._check_state(f"{name}0", v, N, w, unbatched)
                   for name, v, w in zip(layer._states, states, layer._widths())]
        self._state = [np.array(c, dtype=layer.dtype, order="C") for c in checked]  # (L, N, w) each, own copies
        self._unbatched = unbatched
        self._h = None

    @property
    def state(self):
        """The carried state after the last step, as forward returns it (None before the first step without one)."""
        if self._h is not None:  # the fused path keeps h and c in its own buffers
            self._state = [self._h[0].copy(), self._c.copy()]
            states = self._state
        elif self._state is None:
            return None
        else:
            states = self._state
        out = [s[:, 0] if self._unbatched else s.copy() for s in states]
        return tuple(out) if len(out) == 2 else out[0]

    def step(self, x):
        """One time step: x (N, I) or (I,). Returns the layer's output at this step."""
        layer = self._layer
        h = self._h
        if h is not None and type(x) is np.ndarray and x.shape == self._x_shape and x.dtype == np.float32 \
                and x.flags.c_contiguous:
            with layer._lock:  # the version is read under the lock that edits and loads also hold
                if self._packs_version == layer._version and not layer._editing:
                    # The common case, checked in a few attribute reads: the packs are current.
                    layer._stream_step(x.reshape(self._x2_shape), h[0], h[1], self._c, self._packs)
                    h.reverse()
                    y = h[0][-1]
                    return y[0].copy() if self._unbatched else y.copy()
        layer = self._layer
        x = layer._as_input("x", x)
        if x.ndim not in (1, 2):
            raise ValueError(f"x must be (N, I) or unbatched (I,) for one time step, got shape {x.shape}")
        unbatched = x.ndim == 1
        if self._unbatched is not None and unbatched != self._unbatched:
            raise ValueError("x must stay batched or unbatched as the stream started"
                             f" ({'unbatched' if self._unbatched else 'batched'}), got shape {x.shape}")
        x2 = x[None] if unbatched else x
        N, I = x2.shape
        if I != layer.input_size:
            raise ValueError(f"x must have {layer.input_size} features (input_size), got {I}")
        with layer._lock:
            if layer._stream_one_call():
                return self._fused_step(np.ascontiguousarray(x2), N, unbatched)
            return self._general_step(x2, N, unbatched)

    def _fused_step(self, x, N, unbatched):
        layer = self._layer
        L, H = layer.num_layers, layer.hidden_size
        if self._h is None:
            if self._state is not None and self._state[0].shape[1] != N:
                raise ValueError(f"x has {N} rows, the stream's state {self._state[0].shape[1]}")
            self._h = [_zeros((L, N, H), np.float32), _empty((L, N, H), np.float32)]
            self._c = _zeros((L, N, H), np.float32)
            if self._state is not None:
                self._h[0][...] = self._state[0]
                self._c[...] = self._state[1]
            self._unbatched = unbatched
        elif self._h[0].shape[1] != N:
            raise ValueError(f"x has {N} rows, the stream has {self._h[0].shape[1]}")
        version = layer._version  # read before packing: a change during it makes the next step pack again
        self._packs = layer._stream_packs()
        self._packs_version = None if layer._editing else version
        self._x_shape, self._x2_shape = ((x.shape[1],) if unbatched else x.shape), x.shape
        layer._stream_step(x, self._h[0], self._h[1], self._c, self._packs)
        self._h.reverse()
        y = self._h[0][L - 1]
        return y[0].copy() if unbatched else y.copy()

    def _general_step(self, x, N, unbatched):
        layer = self._layer
        if self._h is not None:  # the one-call path ran until now (an option changed since): carry its state over
            self._state, self._h = [self._h[0].copy(), self._c.copy()], None
        if self._state is not None and self._state[0].shape[1] != N:
            raise ValueError(f"x has {N} rows, the stream's state {self._state[0].shape[1]}")
        # An inference forward of one step; the layer's mode and any cache a training forward left for backward
        # are put back afterwards.
        training, cache = layer.training, layer._cache
        layer.training = False
        try:
            out, states = layer._run_locked(x[:, None] if layer.batch_first else x[None], self._state, None)
        finally:
            layer.training, layer._cache = training, cache
        self._state = [np.ascontiguousarray(s) for s in states]
        self._unbatched = unbatched
        y = out[:, 0] if layer.batch_first else out[0]
        return y[0].copy() if unbatched else y.copy()
