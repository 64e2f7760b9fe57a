"""What every pylstm module shares: dtype, parameters by PyTorch's names, gradients, train/eval, input checks."""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np

from . import _core

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _size(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _probability(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__}")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def _zoneout_pair(kind, value):
    """(z_c, z_h) from zoneout=z (both states) or (z_c, z_h) for the LSTM, z for the GRU (z_c 0); the RNN has none.
    The NumPy API's layers and pylstm.torch's take it the same way."""
    if isinstance(value, (tuple, list)):
        if len(kind.states) == 1 or len(value) != 2:
            raise TypeError(f"zoneout must be a number{' or a pair (z_c, z_h)' if len(kind.states) == 2 else ''}, "
                            f"got {value!r}")
        pair = (_probability("zoneout", value[0]), _probability("zoneout", value[1]))
    else:
        z = _probability("zoneout", value)
        pair = (z if len(kind.states) == 2 else 0.0, z)
    if any(pair) and kind.name == "rnn":
        raise ValueError("zoneout is an option of the LSTM and the GRU (cells with a state to keep); the RNN has "
                         "recurrent_dropout and weight_drop")
    return pair


def _zoneout_shown(kind, pair):
    """zoneout as a module shows it: z, or an LSTM's (z_c, z_h) when the two differ."""
    z_c, z_h = pair
    return z_h if z_c == z_h or len(kind.states) == 1 else (z_c, z_h)


def _empty(shape, dtype):
    """An uninitialised array for the kernels to write: 64-byte aligned (the memory the bindings give their own
    outputs; NumPy promises 16 bytes, and a row boundary off a cache line makes two threads share it at every step)."""
    return _core.empty(tuple(shape), np.dtype(dtype))


def _zeros(shape, dtype):
    """_empty, filled with zeros."""
    out = _empty(shape, dtype)
    out.fill(0)
    return out


def _bernoulli(rng, shape, p, dtype, below=1.0, above=0.0):
    """A (shape) array in dtype of `below` with probability p and `above` otherwise: the core's counter-based
    generator (threaded, about 10x NumPy's draw at zoneout's T·N·H values) keyed by one draw from rng."""
    out = _empty(shape, dtype)
    _core.bernoulli(out, p, int(rng.integers(0, 2**63)), below=below, above=above)
    return out


# The layer-norm LSTM's parameters (haste's parameterisation; issue 27), one description for the layers, the cells
# and pylstm.torch: the name's stem (a layer adds _l{k} and _reverse), the width in units of H and the initial value.
LN_PARAMS = (("ln_weight_ih", 4, 1.0), ("ln_weight_hh", 4, 1.0), ("ln_weight_c", 1, 1.0), ("ln_bias_c", 1, 0.0))


def _layer_norm_flag(value, *, peepholes=False, proj_size=0):
    """The checked layer_norm option of an LSTM (or LSTMCell)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"layer_norm must be a bool, got {type(value).__name__}")
    if value and (peepholes or proj_size):
        raise ValueError("layer_norm is not combined with peepholes or proj_size (it normalises the cell's own "
                         "gate products and c)")
    return bool(value)


def _ln_shapes(suffix, H):
    """The layer norm's parameter shapes of one layer direction (suffix "_l0", "_l1_reverse", or "" for a cell)."""
    return {stem + suffix: (width * H,) for stem, width, _ in LN_PARAMS}


def _ln_constants(names):
    """The initial value of each layer-norm parameter among `names` (1 for the γ's, 0 for β_c)."""
    init = {stem: value for stem, _, value in LN_PARAMS}
    return {n: init[stem] for n in names for stem in init if n == stem or n.startswith(stem + "_l")}


class _ZoneoutOption:
    """zoneout=z or (z_c, z_h) (issue 27), shared by the layers, the cells and pylstm.torch's modules: the module
    keeps the pair in `_zone` and shows it as `zoneout`."""

    @property
    def zoneout(self):
        """Zoneout's probability z, or (z_c, z_h) for an LSTM whose two differ (0: off)."""
        return _zoneout_shown(self._kind, self._zone)

    @zoneout.setter
    def zoneout(self, value):
        pair = _zoneout_pair(self._kind, value)  # (z_c, z_h); z_c 0 for the GRU
        if any(pair):
            self._refuse_zoneout()
        changed = getattr(self, "_zone", pair) != pair
        self._zone = pair
        if changed and hasattr(self, "_version"):  # a NumPy-API module: what it keeps (a stream's path) goes stale
            self._changed()

    def _refuse_zoneout(self):
        """Raises where this module cannot run zoneout (peepholes, a projection, low-precision kernels)."""

    @property
    def _zoneout_on(self):
        return any(self._zone)

    def _zone_kwargs(self):
        """The kernels' zoneout keywords of an inference call: the expectation ({} when off)."""
        if not self._zoneout_on:
            return {}
        if len(self._kind.states) == 2:
            return dict(zone_c=self._zone[0], zone_h=self._zone[1])
        return dict(zone_h=self._zone[1])

    @staticmethod
    def _zone_mask_kwargs(zone):
        """The kernels' keywords for the masks [d_c or None, d_h] a training call drew (whatever the option is now,
        so that a backward runs as its forward did); {} for None."""
        if zone is None:
            return {}
        return dict(zone_keep_h=zone[1]) if zone[0] is None else dict(zone_keep_c=zone[0], zone_keep_h=zone[1])


def _check_mask_options(module, masks):
    """Refuses a masks= dict (masks[layer direction][option]) with an option this module draws no mask for: the
    layers' and pylstm.torch's one check."""
    if not hasattr(masks, "items"):
        raise TypeError(f"masks must be a dict like module.masks, got {type(masks).__name__}")
    zone, lstm = any(module._zone), len(module._kind.states) == 2
    on = {"weight_drop": bool(module.weight_drop), "recurrent_dropout": bool(module.recurrent_dropout),
          "zoneout_c": zone and lstm, "zoneout_h": zone}
    for key, options in masks.items():
        for option in (options if hasattr(options, "keys") else ()):
            if not on.get(option, False):
                name = "zoneout" if option.startswith("zoneout") else option
                why = "it has no cell state c" if option == "zoneout_c" and zone else f"{name} is off"
                raise ValueError(f"masks[{key!r}][{option!r}] is given, but this module draws no such mask ({why})")


def _dtype(value):
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {value!r}")
    return dt


class _Module:
    """Parameters in ``_params`` (name -> array, in PyTorch's order), gradients of the same names in ``grads``.

    A subclass sets its sizes, then calls ``super().__init__(dtype, seed)``, which draws every parameter from
    U(−1/√H, 1/√H) with ``numpy.random.default_rng(seed)`` in the order ``_param_shapes()`` gives, except the layer
    norm's (LN_PARAMS), which start at 1 (γ) and 0 (β).
    """

    def __init__(self, dtype, seed):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise TypeError(f"seed must be None or a non-negative int, got {seed!r}")
        self.dtype = _dtype(dtype)
        self.training = True
        # One call at a time per module: calls from several threads are serialised (the kernels release the GIL,
        # so separate modules do run in parallel). Which forward a backward consumes is then the last one to run.
        self._lock = threading.RLock()
        rng = np.random.default_rng(seed)
        k = self._init_bound()
        self._params = {}
        shapes = self._param_shapes()
        constants = _ln_constants(shapes)  # not drawn: the other parameters are those of the same module without
        for name, shape in shapes.items():
            if name in constants:
                self._params[name] = np.full(shape, constants[name], self.dtype)
            else:
                self._params[name] = rng.uniform(-k, k, size=shape).astype(self.dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self._params.items()}
        # Every change of the parameters goes through _changed(), which bumps _version: kept derived data (the
        # fused kernels' packed weights) records the version it was made from and is remade when it differs.
        self._version = 0
        self._editing = 0

    def _param_shapes(self):
        raise NotImplementedError

    # ---- copies: copy.deepcopy and pickle ----------------------------------------------------------------
    # What a module derives and keeps for speed is private to it and not copied: its lock (a copy gets its own) and
    # its packed weights (keyed by the id of its own arrays; a copy packs its own on its first call). Everything
    # else, parameters, gradients, mode, a training forward's cache and the dropout stream, is copied, so that a
    # copy computes what the original would and then changes independently of it.
    def __getstate__(self):
        with self._lock:  # not in the middle of another thread's call
            state = dict(self.__dict__)
        del state["_lock"]
        state["_editing"] = 0  # a copy made inside edit_parameters() is not itself being edited
        if "_packs" in state:
            state["_packs"] = {}
        if "_spare_caches" in state:  # scratch, refilled by the next training call
            state["_spare_caches"] = {}
        state.pop("_weights", None)  # (layers.py: tuples of the parameter arrays, rebuilt on the first call)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()
        if "_packs" in state:  # a layer pickled before it kept spare caches
            self.__dict__.setdefault("_spare_caches", {})

    def __copy__(self):
        raise TypeError(f"copy.copy of a {type(self).__name__} would share its parameters with the original while "
                        "each kept its own packed copy of them; use copy.deepcopy")

    def _init_bound(self):
        """Parameters start uniform in ±this bound: torch.nn's 1/√hidden_size for the recurrent modules."""
        return 1.0 / math.sqrt(self.hidden_size)

    def _forget(self):
        """Drops whatever a training forward kept for backward."""

    def state_dict(self):
        """The parameters by PyTorch's names, as read-only views of the module's own arrays: they follow every
        change of the model (copy them to keep a snapshot). Change the parameters with ``load_state_dict``, a
        ``pylstm.optim`` optimizer, or in place inside ``with module.edit_parameters() as params:``; a write into
        these views is refused (numpy's "assignment destination is read-only"), because the module could not see
        it and would keep computing with packed copies of the old weights."""
        # Views through a read-only buffer: unlike a view with the WRITEABLE flag cleared, they cannot be made
        # writable again (numpy refuses to set the flag when the memory comes from a read-only buffer).
        return {name: np.frombuffer(memoryview(p.reshape(-1)).toreadonly(), dtype=p.dtype).reshape(p.shape)
                for name, p in self._params.items()}

    @contextlib.contextmanager
    def edit_parameters(self):
        """``with module.edit_parameters() as params:`` yields the parameters as writable arrays by name; every
        change made in the block takes effect from the next call on (the module remakes what it derived from the
        old values when the block ends, even if it raises). Do not keep the arrays beyond the block."""
        with self._lock:
            self._editing += 1  # calls inside the block work from the arrays, never from a kept packed copy
            self._changed()
            try:
                yield dict(self._params)
            finally:
                self._editing -= 1
                self._changed()

    def _changed(self):
        """Marks the parameters changed (after an optimizer step, a load or an edit)."""
        self._version += 1

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
            raise ValueError(f"state_dict does not match this {type(self).__name__}: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
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
        with self._lock:
            for name, value in staged.items():
                np.copyto(self._params[name], value, casting="unsafe")
            self._changed()
        self._forget()

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def _as_input(self, name, value):
        if not isinstance(value, np.ndarray):
            value = np.asarray(value, dtype=self.dtype)
        if value.dtype != self.dtype:
            raise TypeError(f"{name} must have dtype {self.dtype.name} (the module's dtype), got {value.dtype}")
        return value

    def _state_input(self, name, value, want, shape):
        """Checks a state-like argument's dtype and its shape as the caller gives it (``want``), and returns a
        private C-ordered copy reshaped to ``shape``: a training cache must not change if the caller later writes
        into their array."""
        value = self._as_input(name, value)
        if value.shape != tuple(want):
            raise ValueError(f"{name} must have shape {tuple(want)}, got {value.shape}")
        return np.array(value, order="C", copy=True).reshape(shape)

    # ---- PyTorch interop (torch is imported only here, when asked for) ---------------------------------------
    @classmethod
    def _torch_name(cls):
        """The torch.nn class of the same kind ("LSTM", "GRUCell", ...), for subclasses too."""
        raise NotImplementedError

    def _torch_config(self):
        """The torch.nn class name and constructor keyword arguments that build the same module."""
        raise NotImplementedError

    @classmethod
    def _config_from_torch(cls, module):
        raise NotImplementedError

    @classmethod
    def from_torch(cls, module, *, seed=None):
        """A pylstm module with the configuration and weights of a torch.nn module of the same kind."""
        import torch

        name = cls._torch_name()
        if not isinstance(module, getattr(torch.nn, name)):
            raise TypeError(f"module must be a torch.nn.{name}, got {type(module).__name__}")
        dtypes = {p.dtype for p in module.parameters()}
        if not dtypes <= {torch.float32, torch.float64} or len(dtypes) != 1:
            raise ValueError(f"module's parameters must all be float32 or all float64, got {sorted(map(str, dtypes))}")
        dtype = "float64" if dtypes == {torch.float64} else "float32"
        m = cls(**cls._config_from_torch(module), dtype=dtype, seed=seed)
        m.load_state_dict({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()})
        return m

    def to_torch(self):
        """A torch.nn module with this module's configuration and a copy of its weights (needs torch)."""
        import torch

        name, kwargs = self._torch_config()
        module = getattr(torch.nn, name)(**kwargs, dtype=getattr(torch, self.dtype.name))
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self._params.items()})
        return module


class _GRUForm:
    """What GRU and GRUCell share: the ``linear_before_reset`` choice (the kernels read it through the cell kind's
    variant), refused by torch, which has only the True form."""

    def _torch_config(self):
        if not self.linear_before_reset:
            raise ValueError(f"torch.nn.{self._torch_name()} has no linear_before_reset=False form")
        return super()._torch_config()


class _RNNForm:
    """What RNN and RNNCell share: the nonlinearity, checked, handed to the kernels and to and from torch. sigmoid is
    pylstm's own (torch has no such RNN): it shows why the hidden state uses tanh (`pylstm activations`)."""

    def _set_nonlinearity(self, nonlinearity):
        if nonlinearity not in ("tanh", "relu", "sigmoid"):
            raise ValueError(f"nonlinearity must be 'tanh', 'relu' or 'sigmoid', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity

    def _torch_config(self):
        if self.nonlinearity == "sigmoid":
            raise ValueError(f"torch.nn.{self._torch_name()} has no sigmoid nonlinearity (only 'tanh' and 'relu'): "
                             "this module has no torch form")
        name, kwargs = super()._torch_config()
        return name, dict(kwargs, nonlinearity=self.nonlinearity)

    @classmethod
    def _config_from_torch(cls, module):
        return dict(super()._config_from_torch(module), nonlinearity=module.nonlinearity)
