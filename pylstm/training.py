"""What the training commands share: stopping cleanly on Ctrl-C or SIGTERM, stopping on divergence, and the loop
around each command's own step (`Loop`: progress bar, periodic checkpoints, both stops).

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


def resume_from(path, modules, optimizer, *, generators, config, kind, lr, history, command):
    """What --resume does in a training command: loads `path` into the modules, optimizer and generators (the whole
    file checked first), sets the learning rate to `lr` (which a resumed run may change), says so, and returns
    (the first step to run, the step saved, the saved history as lists by `history`'s keys). A file that cannot be
    resumed exits with one line naming the command."""
    from .checkpoint import Checkpoint, CheckpointError

    try:
        ck = Checkpoint.load(path, modules, optimizer, generators=generators, config=config, kind=kind)
    except CheckpointError as e:
        raise SystemExit(f"pylstm {command} --resume: {e}") from None
    optimizer.lr = lr
    print(f"resuming from {path} at step {ck.step}")
    return ck.step + 1, ck.step, {k: ck.history[k].tolist() for k in history}


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


def progress(total, desc, initial=0):
    """A tqdm bar, or None in a broken install without tqdm (a dependency)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, mininterval=0.5, initial=initial)


class Loop:
    """The scaffolding around a training command's own step, written once:

        for step in loop:                      # start .. total, with a progress bar
            loss, norm = ...                   # the command's gradients
            if loop.diverged(step, loss, norm, lr=lr, clip=clip):
                return 1                       # nothing applied; the last checkpoint is kept
            opt.step()
            loop.update(loss=...)              # the bar's figures
            code = loop.save_if_due(step)      # every `every` steps, at the end, and on a signal
            if code is not None:
                return code                    # interrupted: saved, told how to resume

    `save(step)` writes the checkpoint; `stop` is the active `Interrupts`; `where(step)` names the step in the
    messages (for `pylstm task`, the cell too)."""

    def __init__(self, stop, *, start, total, desc, checkpoint, every, save, argv, saved_step=0, where=None):
        self.stop, self.start, self.total = stop, start, total
        self.checkpoint, self.every, self._save, self.argv = checkpoint, every, save, argv
        self.saved_step = saved_step
        self.where = where or (lambda step: f"step {step}")
        self.bar = progress(total, desc, initial=start - 1)

    def __iter__(self):
        return iter(range(self.start, self.total + 1))

    def diverged(self, step, loss, grad_norm, *, lr, clip, prefix=""):
        problem = check_finite(step, loss, grad_norm, lr=lr, clip=clip, checkpoint=self.checkpoint,
                               checkpoint_step=self.saved_step)
        if problem:
            self.close()
            print(prefix + problem)
        return problem is not None

    def update(self, **postfix):
        if self.bar is not None:
            self.bar.set_postfix(**postfix, refresh=False)
            self.bar.update(1)

    def write(self, message):
        """Prints a line above the bar."""
        (self.bar.write if self.bar is not None else print)(message)

    def save_if_due(self, step):
        """Saves every `every` steps, at the last step and when a signal came; after a signal, reports it and
        returns the exit code (else None)."""
        if self.stop.requested or step % self.every == 0 or step == self.total:
            self._save(step)
            self.saved_step = step
        if self.stop.requested:
            self.close()
            report_interrupt(self.checkpoint, self.where(step), self.total, self.argv)
            return self.stop.exit_code
        return None

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
