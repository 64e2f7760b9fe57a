"""The long-range memory benchmarks of the LSTM literature, as data generators and a small training loop: the
adding problem (in the form of Le et al. 2015 and Arjovsky et al. 2016, after Hochreiter & Schmidhuber 1997) and the
copy task (Arjovsky et al. 2016)."""

from __future__ import annotations

import numpy as np

from . import nn, optim

# What `pylstm task` uses unless told otherwise; `length` is the sequence length (adding) or the delay (copy).
DEFAULTS = {"length": {"adding": 100, "copy": 20}, "hidden": 64, "batch": 64, "lr": 3e-3, "clip": 1.0,
            "steps": 3000, "gate_bias": 1.0, "symbols": 8, "copies": 5, "eval_batch": 1000}

# A sequence of the adding problem counts as solved when the sum is off by less than 0.04. Hochreiter & Schmidhuber
# used 0.04 on their target 0.5 + (X1 + X2)/4, which makes this, on the raw sum, four times as strict.
ADDING_TOLERANCE = 0.04


def adding_problem(rng, length, batch, dtype=np.float32):
    """x (length, batch, 2): channel 0 holds U[0, 1) values, channel 1 marks exactly two steps, one in each half.
    y (batch,): the sum of the two marked values. The marks can be `length` - 1 steps apart at most."""
    if length < 2:
        raise ValueError(f"length must be >= 2 for the adding problem, got {length}")
    x = np.zeros((length, batch, 2), dtype)
    x[:, :, 0] = rng.random((length, batch), dtype=np.dtype(dtype).type)
    cols = np.arange(batch)
    first = rng.integers(0, length // 2, batch)
    second = rng.integers(length // 2, length, batch)
    x[first, cols, 1] = 1
    x[second, cols, 1] = 1
    y = (x[first, cols, 0] + x[second, cols, 0]).astype(dtype)
    return x, y


def copy_task(rng, length, batch, symbols=DEFAULTS["symbols"], copies=DEFAULTS["copies"], dtype=np.float32):
    """The copy task: `copies` random symbols (from `symbols` kinds), then `length` blanks of which the last is a
    delimiter, then `copies` blanks during which the model must repeat the symbols in order.
    x (length + 2·copies, batch, symbols + 2), one-hot: 0 ... symbols-1 are symbols, then blank, then delimiter.
    y (copies, batch): the symbols to recall, read from the model's last `copies` outputs."""
    if length < 1:
        raise ValueError(f"length must be >= 1 for the copy task, got {length}")
    T = length + 2 * copies
    ids = np.full((T, batch), symbols)  # blank
    y = rng.integers(0, symbols, (copies, batch))
    ids[:copies] = y
    ids[copies + length - 1] = symbols + 1  # the delimiter: "start repeating now"
    return np.eye(symbols + 2, dtype=dtype)[ids], y


def no_memory_score(name, symbols=DEFAULTS["symbols"]):
    """(loss, score) of the best model without memory. adding: always answering the mean sum 1 gives MSE 1/6, and
    |S - 1| < ε for a sum S of two U[0, 1) draws with probability 2ε - ε². copy: guessing gives ln(symbols) nats and
    an accuracy of 1/symbols."""
    if name == "adding":
        return 1.0 / 6.0, 2 * ADDING_TOLERANCE - ADDING_TOLERANCE ** 2
    if name == "copy":
        return float(np.log(symbols)), 1.0 / symbols
    raise ValueError(f"name must be 'adding' or 'copy', got {name!r}")


class Task:
    """One training run of a recurrent layer plus a Linear head on the adding problem or the copy task.
    `step()` trains on a fresh batch; `evaluate()` scores a fixed held-out batch. Every batch is new data, so
    there is no overfitting to speak of: the held-out score measures what the model has learned to do.
    The adding problem's loss is the MSE of the last step's output; the copy task's is the cross-entropy of the last
    `copies` outputs only (the blanks before them are not scored)."""

    def __init__(self, name, cell, length=None, *, hidden=DEFAULTS["hidden"], batch=DEFAULTS["batch"],
                 lr=DEFAULTS["lr"], clip=DEFAULTS["clip"], seed=0, eval_batch=DEFAULTS["eval_batch"],
                 symbols=DEFAULTS["symbols"], copies=DEFAULTS["copies"], gate_bias=DEFAULTS["gate_bias"],
                 dtype="float32"):
        no_memory_score(name)  # checks the name
        length = DEFAULTS["length"][name] if length is None else length
        self.name, self.cell, self.length, self.batch, self.clip = name, cell, length, batch, clip
        self.symbols, self.copies = symbols, copies
        self.rng = np.random.default_rng(seed)
        self._eval = self._data(np.random.default_rng([seed, 1]), eval_batch, dtype)  # checks the length
        inputs, outputs = (2, 1) if name == "adding" else (symbols + 2, symbols)
        self.rnn, self.head = nn.recurrent_model(cell, inputs, hidden, outputs, seed=seed, dtype=dtype)
        if cell in ("lstm", "gru"):
            # The LSTM's forget gate and the GRU's update gate are both the second block of H rows (PyTorch order):
            # a positive bias there starts the cell remembering (f or z near 1) instead of half-forgetting each step.
            with self.rnn.edit_parameters() as params:
                params["bias_hh_l0"][hidden:2 * hidden] += gate_bias
        self.opt = optim.Adam([self.rnn, self.head], lr=lr)

    def _data(self, rng, n, dtype):
        if self.name == "adding":
            return adding_problem(rng, self.length, n, dtype)
        return copy_task(rng, self.length, n, self.symbols, self.copies, dtype)

    def _loss(self, out, y, backward):
        """(loss, dL/d out or None, score) for the layer's output `out`; the score is the task's accuracy.
        With `backward`, the head's gradients are added into its grads."""
        dout = np.zeros_like(out) if backward else None
        if self.name == "adding":
            pred = self.head(out[-1])[:, 0]
            err = pred.astype(np.float64) - y
            if backward:
                dout[-1] = self.head.backward((2.0 * err / len(y))[:, None])
            return float(np.mean(err ** 2)), dout, float(np.mean(np.abs(err) < ADDING_TOLERANCE))
        logits = self.head(out[-self.copies:])
        loss, dlogits = nn.softmax_cross_entropy(logits, y)
        if backward:
            dout[-self.copies:] = self.head.backward(dlogits)
        return loss, dout, float(np.mean(logits.argmax(-1) == y))

    def batch_loss(self, x, y, backward=False):
        """(loss, score) on the batch (x, y); with `backward`, the loss's gradients overwrite the modules' grads."""
        if backward:
            self.opt.zero_grad()
        out, _ = self.rnn(x)
        loss, dout, score = self._loss(out, y, backward)
        if backward:
            self.rnn.backward(dout, input_grad=False)
        return loss, score

    def gradients(self):
        """The clipped gradients of a fresh batch, not yet applied; returns (loss, gradient norm before clipping),
        so that a caller can refuse a non-finite step before it changes the weights."""
        loss, _ = self.batch_loss(*self._data(self.rng, self.batch, self.rnn.dtype), backward=True)
        return loss, optim.clip_grad_norm([self.rnn, self.head], self.clip)

    def step(self):
        """One Adam step on a fresh batch with the gradient norm clipped; returns the batch's loss."""
        loss, _ = self.gradients()
        self.opt.step()
        return loss

    def evaluate(self):
        """(loss, score) on the held-out batch: MSE and the fraction within 0.04 for adding, cross-entropy and
        per-symbol accuracy for copy."""
        was_training = self.rnn.training
        self.rnn.eval()
        try:
            return self.batch_loss(*self._eval)
        finally:
            self.rnn.train(was_training)
