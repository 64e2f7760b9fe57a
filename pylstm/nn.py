"""The pieces a recurrent model needs around its layers: a Linear output layer, softmax cross-entropy, a
layer-plus-head builder with independent seeds, and saving / loading models and optimizers to .npz. Linear and
softmax_cross_entropy run in the core, on pylstm's pool and BLAS (their NumPy twins are in pylstm.reference, and the
tests compare the two)."""

from __future__ import annotations

import numpy as np

from . import _core
from ._module import _Module, _size
from .checkpoint import Checkpoint, CheckpointError, WriteError  # noqa: F401  (re-exported: pylstm.nn.Checkpoint)
from .layers import GRU, LSTM, RNN

LAYERS = {cls._kind.name: cls for cls in (LSTM, GRU, RNN)}  # "lstm", "gru", "rnn"


def seeds(seed, n):
    """`n` independent seeds drawn from one. Two modules built with the same seed would start from the same uniform
    draws (scaled by their bounds): an output layer's weight would repeat the start of the recurrent weight_ih."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def recurrent_model(cell, input_size, hidden_size, output_size, num_layers=1, *, seed=None, dtype="float32",
                    **options):
    """(layer, head): a recurrent stack of `cell` ('lstm', 'gru' or 'rnn') and a Linear output layer, drawn from
    independent seeds derived from `seed` (fresh entropy when None). `options` go to the layer (layer_norm=True,
    say)."""
    if cell not in LAYERS:
        raise ValueError(f"cell must be 'lstm', 'gru' or 'rnn', got {cell!r}")
    layer_seed, head_seed = seeds(seed, 2)
    return (LAYERS[cell](input_size, hidden_size, num_layers, seed=layer_seed, dtype=dtype, **options),
            Linear(hidden_size, output_size, seed=head_seed, dtype=dtype))


class Linear(_Module):
    """y = x Wᵀ + b over the last axis, with an explicit backward that adds into `grads` (as the layers do).
    Parameters `weight` (out, in) and `bias` (out,) start as torch.nn.Linear's, uniform in ±1/√in_features."""

    def __init__(self, in_features, out_features, *, dtype="float32", seed=None):
        self.in_features = _size("in_features", in_features)
        self.out_features = _size("out_features", out_features)
        self._x = None
        super().__init__(dtype, seed)

    def _param_shapes(self):
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def _init_bound(self):
        return 1.0 / np.sqrt(self.in_features)

    def _forget(self):
        self._x = None

    def __call__(self, x):
        x = self._as_input("x", x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}), got {x.shape}")
        self._x = x
        x2 = np.ascontiguousarray(x.reshape(-1, self.in_features))
        y = _core.linear_forward(x2, self._params["weight"], self._params["bias"])
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dy):
        """Adds dL/dW and dL/db into grads; returns dL/dx. Uses the input of the latest call."""
        if self._x is None:
            raise RuntimeError("backward needs a forward first")
        dy = np.asarray(dy, self.dtype)
        if dy.shape != self._x.shape[:-1] + (self.out_features,):
            raise ValueError(f"dy must have shape {self._x.shape[:-1] + (self.out_features,)}, got {dy.shape}")
        x = np.ascontiguousarray(self._x.reshape(-1, self.in_features))
        dy = np.ascontiguousarray(dy.reshape(-1, self.out_features))
        dx = _core.linear_backward(dy, x, self._params["weight"], self.grads["weight"], self.grads["bias"])
        return dx.reshape(self._x.shape)


def softmax_cross_entropy(logits, targets):
    """Mean cross-entropy of integer targets under softmax(logits) over the last axis.
    Returns (loss, dL/dlogits); the loss is in float64, the gradient in the logits' dtype."""
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"targets must have shape {logits.shape[:-1]}, got {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets must hold integers, got {targets.dtype}")
    if logits.dtype not in (np.float32, np.float64):
        raise TypeError(f"logits must have dtype float32 or float64, got {logits.dtype}")
    C = logits.shape[-1] if logits.ndim else 0
    if C < 1 or targets.size == 0:
        raise ValueError(f"logits must have shape (..., C) with C >= 1 and at least one row, got {logits.shape}")
    if targets.min() < 0 or targets.max() >= C:
        raise ValueError(f"targets must be in [0, {C}), got values in [{targets.min()}, {targets.max()}]")
    loss, d = _core.softmax_cross_entropy(np.ascontiguousarray(logits.reshape(-1, C)),
                                          np.ascontiguousarray(targets.ravel(), dtype=np.int64))
    return loss, d.reshape(logits.shape)


def save(path, modules, optimizer=None, **extra):
    """Saves named modules (a dict name -> module), an optimizer's state and extra arrays to one .npz file,
    atomically (a failed write leaves the previous file intact), refusing weights that hold NaN or infinity.
    For everything a resumed training loop needs, see :class:`Checkpoint`."""
    Checkpoint(modules, optimizer, step=None, extra=extra, kind="nn.save").save(path)


def load(path, modules, optimizer=None):
    """Loads what save() (or a `pylstm train` checkpoint) holds into the given modules (and optimizer); returns the
    extra arrays as a dict. The whole file is read and checked before anything is loaded: a truncated, corrupted,
    wrong-kind or wrong-shape file raises CheckpointError (a ValueError) naming the file and the problem, and
    changes nothing."""
    return Checkpoint.load(path, modules, optimizer, resume=False).extra
