"""What the training commands share: stopping cleanly on Ctrl-C or SIGTERM, and stopping on divergence.

A signal does not interrupt a step: the handler only records it, and the loop asks `stop.requested` between steps,
so that a step is either fully applied or not at all. The loop then saves a checkpoint (a second Ctrl-C during the
save is recorded, not raised, so the write completes) and exits with 128 + the signal's number, as a shell expects:
130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import math
import shlex
import signal
import sys
import threading


class Interrupts:
    """Context manager: while active (in the main thread), SIGINT and SIGTERM set `.signal` instead of raising."""

    def __init__(self, out=None):
        self.signal = None
        self._old = {}
        self._out = out or sys.stderr

    def _handle(self, signum, frame):
        if self.signal is None:
            self.signal = signum
            print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                  "(press Ctrl-C again: the save still completes)", file=self._out, flush=True)
        else:
            print(f"\n{signal.Signals(signum).name} again: still saving, please wait", file=self._out, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}
        return False

    @property
    def requested(self):
        return self.signal is not None

    @property
    def exit_code(self):
        return 128 + int(self.signal)


def report_interrupt(path, where, total, argv):
    """Tells the user where the interrupted run was saved and the command that continues it."""
    print(f"interrupted: saved {path} at {where} of {total}; continue with:\n  {resume_command(argv)}")


def resume_command(argv):
    """The command line that continues this run: the same arguments plus --resume."""
    args = [a for a in argv if a != "--resume"]
    return "pylstm " + " ".join(shlex.quote(a) for a in args) + " --resume"


def check_finite(step, loss, grad_norm, *, lr, clip, checkpoint=None, checkpoint_step=None):
    """None when the loss and the gradient norm are finite, else the message that stops training."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return None
    what = "loss" if not math.isfinite(loss) else "gradient norm"
    value = loss if not math.isfinite(loss) else grad_norm
    kept = (f"The last good checkpoint, {checkpoint} (step {checkpoint_step}), is left as it was."
            if checkpoint_step else "No checkpoint was written yet, and none is written now.")
    return (f"training diverged at step {step}: the {what} is {value}. This step was not applied. {kept} "
            f"Exploding gradients: try a lower --lr (now {lr:g}) or a smaller --clip (now {clip:g}).")
