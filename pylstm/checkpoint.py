"""Every file pylstm writes, written atomically; the Checkpoint that resuming a training run needs; loading with
clear errors.

A write goes to a temporary file in the target's folder, is flushed and fsynced, and is renamed over the target
(atomic on POSIX and Windows), so that a crash, a kill, a full disk or a second Ctrl-C during the write leaves the
previous file as it was and no temporary behind. A checkpoint is one .npz of named arrays:

    model/NAME/KEY      each module's state_dict          optim/KEY        the optimizer's state_dict
    extra/KEY           what the writer adds (vocabulary, sizes: what `sample` reads)
    meta/kind           which command wrote it ("train", "task", or "nn.save")
    resume/...          step, random generators, carried states, loss history and the options that must match
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, corrupted, of another kind, or for another model."""


class WriteError(OSError):
    """A file could not be written; the previous file at that path is unchanged."""


def atomic_write(path, write):
    """Calls write(f) on a binary temporary file beside `path`, then fsyncs it and renames it over `path`.
    On any failure (or KeyboardInterrupt) the temporary file is removed and `path` keeps its previous contents."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.chmod(tmp, _mode(path))  # mkstemp's 0600 would make every rewrite private
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, Exception):
            raise WriteError(f"could not write {path} ({type(e).__name__}: {e}); the previous file, if any, is "
                             "unchanged") from e
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut once the folder is synced
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _mode(path):
    """The permissions of the file being replaced, or those a new file gets (0666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def save_arrays(path, arrays):
    """np.savez of a dict of arrays, atomically."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_text(path, text, encoding="utf-8"):
    atomic_write(path, lambda f: f.write(text.encode(encoding)))


def save_figure(path, fig, **kwargs):
    """A matplotlib figure as a picture file (its format from the suffix), atomically."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"

    def write(f):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, **kwargs)
        f.write(buf.getvalue())

    atomic_write(path, write)


def load_arrays(path):
    """Every array of a .npz file, read whole (so that a truncated or corrupted file fails here, not later), or a
    CheckpointError that names the file and what is wrong with it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} is not a file")
    try:
        with open(path, "rb") as fh:  # our own handle: np.load leaks its own when a zip fails to parse
            f = np.load(fh, allow_pickle=False)
            if not hasattr(f, "files"):
                raise CheckpointError(f"{path} holds a single array, not a checkpoint (.npz of named arrays)")
            with f:
                return {k: f[k] for k in f.files}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise CheckpointError(f"{path} is truncated or corrupted ({e})") from None
    except (ValueError, OSError, KeyError) as e:
        raise CheckpointError(f"{path} is not a readable .npz checkpoint ({type(e).__name__}: {e})") from None


def _generator_state(g):
    return np.array(json.dumps(g.bit_generator.state))


def _set_generator_state(g, value, path, name):
    try:
        state = json.loads(str(value))
        if state.get("bit_generator") != type(g.bit_generator).__name__:
            raise ValueError(f"a {state.get('bit_generator')} state for a {type(g.bit_generator).__name__}")
        g.bit_generator.state = state
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{path}: the random generator state {name!r} is unusable ({e})") from None


class Checkpoint:
    """Everything a training loop needs to continue bit for bit, for people writing their own loops.

    ``modules`` (name -> module) and ``optimizer`` are saved through their state_dicts. ``step`` counts the steps
    taken (None: a weights-only file, which cannot be resumed); ``generators`` (name -> numpy.random.Generator)
    are saved with their exact states; ``carried`` (name ->
    list of arrays, or None) holds states carried between steps (truncated BPTT); ``history`` (name -> 1-D array)
    the loss curves; ``config`` (name -> number or string) the options that must match on resume; ``extra``
    (name -> array) anything else. :meth:`save` writes atomically and refuses non-finite weights; :meth:`load`
    checks the whole file before it changes any module, optimizer or generator.

        ck = Checkpoint({"rnn": rnn, "head": head}, opt, step=step, generators={"data": rng}, config={"hidden": 256})
        ck.save("run.npz")
        ck = Checkpoint.load("run.npz", {"rnn": rnn, "head": head}, opt, generators={"data": rng},
                             config={"hidden": 256})
        step = ck.step
    """

    def __init__(self, modules, optimizer=None, *, step=0, generators=None, carried=None, history=None,
                 config=None, extra=None, kind="checkpoint"):
        self.modules, self.optimizer = dict(modules), optimizer
        self.step, self.kind = None if step is None else int(step), str(kind)
        self.generators = dict(generators or {})
        self.carried = dict(carried or {})
        self.history = {k: np.asarray(v) for k, v in (history or {}).items()}
        self.config = dict(config or {})
        self.extra = dict(extra or {})

    # ---- writing ----------------------------------------------------------------------------------------------
    def arrays(self):
        """The checkpoint as the dict of named arrays that save() writes."""
        out = {"meta/kind": np.array(self.kind)}
        if self.step is not None:  # None: weights only (nn.save), nothing to resume
            out["resume/step"] = np.array(self.step, np.int64)
        for name, m in self.modules.items():
            for k, v in m.state_dict().items():
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"refusing to save {name}/{k}: it holds NaN or infinite values")
                out[f"model/{name}/{k}"] = v
        if self.optimizer is not None:
            for k, v in self.optimizer.state_dict().items():
                out[f"optim/{k}"] = v
        for name, g in self.generators.items():
            out[f"resume/rng/{name}"] = _generator_state(g)
        for name, states in self.carried.items():
            out[f"resume/carried/{name}/n"] = np.array(-1 if states is None else len(states))
            for i, s in enumerate(states or ()):
                out[f"resume/carried/{name}/{i}"] = np.asarray(s)
        for name, v in self.history.items():
            out[f"resume/history/{name}"] = np.asarray(v)
        for name, v in self.config.items():
            out[f"resume/config/{name}"] = np.array(v)
        for name, v in self.extra.items():
            out[f"extra/{name}"] = np.asarray(v)
        return out

    def save(self, path):
        save_arrays(path, self.arrays())

    # ---- reading ----------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path, modules, optimizer=None, *, generators=None, config=None, kind=None, resume=True,
             allow_empty=False):
        """Reads `path`, checks it (kind, config, every module's and the optimizer's entries, generator states)
        and only then loads it into `modules`, `optimizer` and `generators`. Returns the Checkpoint, whose
        step, carried, history, config and extra come from the file. With resume=False, only the weights are
        needed (a checkpoint from nn.save, say). allow_empty accepts a file without weights (to read its
        progress: a run between two models, say)."""
        data = load_arrays(path)
        return cls.from_arrays(data, path, modules, optimizer, generators=generators, config=config, kind=kind,
                               resume=resume, allow_empty=allow_empty)

    @classmethod
    def from_arrays(cls, data, path, modules, optimizer=None, *, generators=None, config=None, kind=None,
                    resume=True, allow_empty=False):
        path = os.fspath(path)
        found_kind = str(data["meta/kind"]) if "meta/kind" in data else None
        if kind is not None and found_kind is not None and found_kind != kind:
            raise CheckpointError(f"{path} was written by `{found_kind}`, not `{kind}`")
        if not allow_empty and not any(k.startswith("model/") for k in data):
            raise CheckpointError(f"{path} holds no model weights: it is not a pylstm checkpoint")
        if resume and "resume/step" not in data:
            raise CheckpointError(f"{path} has no training state to resume from (it holds weights only)")
        saved_config = {k[len("resume/config/"):]: v.item() if v.ndim == 0 else v.tolist()
                        for k, v in data.items() if k.startswith("resume/config/")}
        if config:
            diffs = [f"{k}: checkpoint {saved_config.get(k, 'absent')!r}, now {v!r}" for k, v in config.items()
                     if k in saved_config and saved_config[k] != v or k not in saved_config and resume]
            if diffs:
                raise CheckpointError(f"{path} was written for other options, which resuming cannot change: "
                                      + "; ".join(diffs))
        _check_modules(data, path, modules)
        optim_state = {k[len("optim/"):]: v for k, v in data.items() if k.startswith("optim/")}
        if optimizer is not None:
            if not optim_state:
                raise CheckpointError(f"{path} holds no optimizer state")
            _check_optimizer(optimizer, optim_state, path)
        gens = dict(generators or {})
        for name in gens:
            if f"resume/rng/{name}" not in data:
                raise CheckpointError(f"{path} has no state for the random generator {name!r}")
        # Everything checked: now load.
        for name, m in modules.items():
            prefix = f"model/{name}/"
            m.load_state_dict({k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)})
        if optimizer is not None:
            optimizer.load_state_dict(optim_state)
        for name, g in gens.items():
            _set_generator_state(g, data[f"resume/rng/{name}"], path, name)
        carried = {}
        for k, v in data.items():
            if k.startswith("resume/carried/") and k.endswith("/n"):
                name = k[len("resume/carried/"):-2]
                n = int(v)
                carried[name] = None if n < 0 else [data[f"resume/carried/{name}/{i}"] for i in range(n)]
        return cls(modules, optimizer, step=int(data.get("resume/step", 0)), generators=gens, carried=carried,
                   history={k[len("resume/history/"):]: v for k, v in data.items()
                            if k.startswith("resume/history/")},
                   config=saved_config, extra={k[len("extra/"):]: v for k, v in data.items()
                                               if k.startswith("extra/")},
                   kind=found_kind or "checkpoint")


def _check_modules(data, path, modules):
    for name, m in modules.items():
        prefix = f"model/{name}/"
        part = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
        if not part:
            raise CheckpointError(f"{path} has no weights for {name!r}")
        want = m.state_dict()
        for k, p in want.items():
            if k not in part:
                raise CheckpointError(f"{path} is missing {name}/{k}: it was written for another model")
            if part[k].shape != p.shape:
                raise CheckpointError(f"{path}: {name}/{k} has shape {part[k].shape}, this model's is {p.shape} "
                                      "(written for other sizes?)")
            if not np.issubdtype(part[k].dtype, np.floating):
                raise CheckpointError(f"{path}: {name}/{k} has dtype {part[k].dtype}, not a float")
        extra = sorted(set(part) - set(want))
        if extra:
            raise CheckpointError(f"{path} has {name}/{extra[0]}, which this model lacks: it was written for "
                                  "another model")


def _check_optimizer(optimizer, state, path):
    want = optimizer.state_dict()
    for k, v in want.items():
        if k not in state:
            raise CheckpointError(f"{path}: the optimizer state lacks {k!r} (another optimizer or model?)")
        if np.shape(state[k]) != np.shape(v):
            raise CheckpointError(f"{path}: optimizer state {k!r} has shape {np.shape(state[k])}, expected "
                                  f"{np.shape(v)}")
