"""Optimizers over a module's live parameters (`state_dict()`) and their gradients (`grads`), and gradient clipping.

Each runs as one pass over all of a model's tensors in the core, on pylstm's pool (their NumPy twins are
pylstm.reference's adam_step, sgd_step, grad_norm and scale_grads; the tests compare the two)."""

from __future__ import annotations

import math

import numpy as np

from . import _core


def _pairs(modules):
    """(name, parameter, gradient) for every parameter of the given modules, names prefixed by module index."""
    if not isinstance(modules, (list, tuple)):
        modules = [modules]
    out = []
    for i, m in enumerate(modules):
        params, grads = getattr(m, "_params", None), getattr(m, "grads", None)
        if params is None or grads is None:
            raise TypeError(f"modules[{i}] has no parameters and grads: pass pylstm modules or pylstm.Linear")
        for k, p in params.items():
            out.append((f"{i}.{k}", p, grads[k]))
    return out


def _modules(modules):
    return list(modules) if isinstance(modules, (list, tuple)) else [modules]


def _by_dtype(pairs, *states):
    """Lists of parameters, gradients and states, one group per dtype (the core takes one dtype per call)."""
    groups = {}
    for k, (_, p, g) in enumerate(pairs):
        group = groups.setdefault(p.dtype, [[], []] + [[] for _ in states])
        group[0].append(p)
        group[1].append(g)
        for j, state in enumerate(states):
            group[2 + j].append(state[k])
    return list(groups.values())


def clip_grad_norm(modules, max_norm):
    """Scales all gradients of `modules` in place so that their joint L2 norm is at most max_norm; returns the norm
    before clipping (as torch.nn.utils.clip_grad_norm_). A non-finite norm leaves the gradients unchanged."""
    if not (isinstance(max_norm, (int, float)) and max_norm > 0):
        raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
    groups = _by_dtype(_pairs(modules))
    total = math.sqrt(sum(_core.grad_norm(grads) ** 2 for _, grads in groups))
    if math.isfinite(total) and total > max_norm:
        for _, grads in groups:
            _core.scale_grads(grads, max_norm / (total + 1e-6))
    return total


class _Optimizer:
    def __init__(self, modules, lr):
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        self._pairs = _pairs(modules)  # the modules' own writable arrays
        self._modules = _modules(modules)
        self.lr = float(lr)
        self.state = {}
        self.steps = 0

    def zero_grad(self):
        for _, _, g in self._pairs:
            g.fill(0)

    def step(self):
        """Updates every parameter in place from its gradient."""
        try:
            self._update()
        finally:  # the modules remake what they derived from the old weights (packed copies) on their next call
            for m in self._modules:
                m._changed()

    def state_dict(self):
        """Arrays and numbers to save with a checkpoint (see pylstm.save)."""
        d = {"steps": np.array(self.steps), "lr": np.array(self.lr)}
        for key, arr in self.state.items():
            d[key] = arr
        return d

    def load_state_dict(self, d):
        state = {k: np.asarray(v) for k, v in d.items() if k not in ("steps", "lr")}
        for k, v in state.items():
            if k not in self.state or self.state[k].shape != v.shape:
                raise ValueError(f"optimizer state {k!r} does not match this optimizer's parameters")
        for k, v in state.items():
            np.copyto(self.state[k], v)
        self.steps = int(d["steps"])
        self.lr = float(d["lr"])


class SGD(_Optimizer):
    """p -= lr · v, with v = momentum · v + g (torch.optim.SGD without dampening or Nesterov)."""

    def __init__(self, modules, lr=0.1, momentum=0.0):
        super().__init__(modules, lr)
        if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        if self.momentum:
            self.state = {f"v.{name}": np.zeros_like(p) for name, p, _ in self._pairs}

    def _update(self):
        bufs = [self.state[f"v.{name}"] for name, _, _ in self._pairs] if self.momentum else None
        for group in _by_dtype(self._pairs, *([bufs] if bufs else [])):
            _core.sgd_step(group[0], group[1], group[2] if bufs else None, lr=self.lr, momentum=self.momentum)
        self.steps += 1


class Adam(_Optimizer):
    """Adam (Kingma & Ba), bias-corrected, as torch.optim.Adam with weight_decay=0."""

    def __init__(self, modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(modules, lr)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.betas, self.eps = (float(b1), float(b2)), float(eps)
        self.state = {}
        for name, p, _ in self._pairs:
            self.state[f"m.{name}"] = np.zeros_like(p)
            self.state[f"v.{name}"] = np.zeros_like(p)

    def _update(self):
        self.steps += 1
        b1, b2 = self.betas
        ms = [self.state[f"m.{name}"] for name, _, _ in self._pairs]
        vs = [self.state[f"v.{name}"] for name, _, _ in self._pairs]
        for params, grads, m, v in _by_dtype(self._pairs, ms, vs):
            _core.adam_step(params, grads, m, v, lr=self.lr, b1=b1, b2=b2, eps=self.eps, step=self.steps)
