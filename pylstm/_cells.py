"""One description per cell kind: what the layers, the cells, pylstm.torch and pylstm.onnx know of LSTM, GRU and
RNN, in one table. Each kind names its gates and states, binds its kernels by attribute (a search for
``_core.gru_forward`` finds every caller through this file), and says which option selects its variant.

    kind = KINDS["gru"]
    y, h_n, cache = kind.forward(x, h0, W_ih, W_hh, b_ih, b_hh, training=False, **kind.variant(module))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _core


@dataclass(frozen=True)
class CellKind:
    name: str  # "lstm", "gru", "rnn": the CLI's and the checkpoints' name
    gates: tuple  # the gate blocks of W_ih / W_hh rows, in PyTorch's order
    states: tuple  # ("h", "c") or ("h",)
    forward: Callable  # _core.<name>_forward: one layer direction over a sequence
    backward: Callable  # _core.<name>_backward
    cache_size: Callable  # _core.<name>_cache_size(T, N, H)
    variant_option: str | None  # the module attribute handed to the kernels as a keyword (None: no variant)
    module_name: str  # the class name in pylstm, torch.nn and ONNX's op type: "LSTM", "GRU", "RNN"
    onnx_order: tuple  # ONNX's gate blocks as PyTorch's block indices: ONNX block k = PyTorch block onnx_order[k]

    @property
    def G(self):
        """The number of gate blocks: W_ih and W_hh have G·H rows."""
        return len(self.gates)

    def variant(self, module):
        """The kernels' variant keyword of `module` (a layer, a cell, a torch module or an ONNX node's spec)."""
        return {} if self.variant_option is None else {self.variant_option: getattr(module, self.variant_option)}


LSTM = CellKind("lstm", ("i", "f", "g", "o"), ("h", "c"), _core.lstm_forward, _core.lstm_backward,
                _core.lstm_cache_size, None, "LSTM", (0, 3, 1, 2))
GRU = CellKind("gru", ("r", "z", "n"), ("h",), _core.gru_forward, _core.gru_backward, _core.gru_cache_size,
               "linear_before_reset", "GRU", (1, 0, 2))
RNN = CellKind("rnn", ("h",), ("h",), _core.rnn_forward, _core.rnn_backward, _core.rnn_cache_size,
               "nonlinearity", "RNN", (0,))

KINDS = {k.name: k for k in (LSTM, GRU, RNN)}
BY_MODULE_NAME = {k.module_name: k for k in KINDS.values()}


def param_suffix(layer, reverse):
    """The suffix of one layer direction's parameter names, as torch.nn's: ``_l{layer}`` and ``_reverse``."""
    return f"_l{layer}" + ("_reverse" if reverse else "")


def param_name(kind, layer, reverse):
    """A layer's parameter name by torch.nn's convention: param_name("weight_hh", 1, True) = weight_hh_l1_reverse."""
    return kind + param_suffix(layer, reverse)


def batch_sizes(sorted_lengths, T):
    """PyTorch's packed form of lengths sorted longest first: the number of rows still running at each of T steps
    (int64, what the kernels' batch_sizes= takes)."""
    lens = np.asarray(sorted_lengths)
    return (lens[None, :] > np.arange(T)[:, None]).sum(axis=1).astype(np.int64)
