"""The `pylstm train | sample | task | gradflow | bench` subcommands: a character-level language model trained end to
end, text generated from its checkpoint, the long-range memory benchmarks, the vanishing-gradient picture of RNN, GRU
and LSTM, and a quick timing table."""

from __future__ import annotations

import argparse
import ast
import hashlib
import math
import os
import sys
import sysconfig
import time

import numpy as np

CELLS = ("lstm", "gru", "rnn")


def _cache_dir():
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pylstm")


def stdlib_docstrings(max_chars=2_000_000):
    """The docstrings of the Python standard library's own source files (parsed with ast, nothing imported), as
    ASCII text; cached in ~/.cache/pylstm after the first call."""
    path = os.path.join(_cache_dir(), f"stdlib-docstrings-{sys.version_info[0]}.{sys.version_info[1]}.txt")
    if os.path.exists(path):
        with open(path, encoding="ascii") as f:
            return f.read()
    root = sysconfig.get_paths()["stdlib"]
    parts, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("test", "tests", "idlelib", "site-packages", "lib2to3"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 40 and doc.isascii():
                        parts.append(doc.strip() + "\n\n")
                        total += len(parts[-1])
            if total >= max_chars:
                break
        if total >= max_chars:
            break
    text = "".join(parts)[:max_chars]
    from .checkpoint import save_text

    save_text(path, text, encoding="ascii")
    return text


def _model(cell, vocab_size, hidden, layers, seed):
    from pylstm import nn

    return nn.recurrent_model(cell, vocab_size, hidden, vocab_size, layers, seed=seed)


def _unigram_entropy(ids, V):
    p = np.bincount(ids, minlength=V) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _sample(rnn, head, vocab, prompt, length, temperature, rng):
    """Feeds the prompt, then draws `length` characters one at a time, carrying the state."""
    eye = np.eye(len(vocab), dtype=rnn.dtype)
    index = {c: i for i, c in enumerate(vocab)}
    was_training = rnn.training
    rnn.eval()
    unknown = sorted(set(prompt) - set(index))
    if unknown:
        print(f"note: the checkpoint's vocabulary has no {', '.join(map(repr, unknown))}; those prompt characters "
              "are skipped", file=sys.stderr)
    ids = [index[c] for c in prompt if c in index] or [0]
    out, state = rnn(eye[np.array(ids)][:, None, :])
    logits = head(out[-1, 0])
    chars = []
    for _ in range(length):
        z = logits.astype(np.float64) / temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        i = int(rng.choice(len(vocab), p=p))
        chars.append(vocab[i])
        out, state = rnn(eye[[i]][:, None, :], state)
        logits = head(out[-1, 0])
    rnn.train(was_training)
    return "".join(chars)


def _progress(total, desc, initial=0):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency; this only guards a broken install
        return None
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, mininterval=0.5, initial=initial)


def _plot(path, series, xlabel, ylabel, title, logy=False, baselines=()):
    """Saves a line plot, the series named in `baselines` dashed; returns False (and says how to get pictures) when
    matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: pip install "pylstm[plot]" to get the pictures')
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, **({"linestyle": "--", "color": "0.4"} if label in baselines else {}))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from .checkpoint import save_figure

    try:
        save_figure(path, fig, dpi=100)
    finally:
        plt.close(fig)
    print(f"saved {path}")
    return True


def _read_text(args):
    if args.data:
        if not os.path.isfile(args.data):
            raise SystemExit(f"pylstm train: --data {args.data!r} is not a readable file")
        with open(args.data, encoding="utf-8", errors="replace") as f:
            return f.read(), args.data
    return stdlib_docstrings(), "the Python standard library's docstrings"


def train(args):
    from pylstm import nn, optim
    from pylstm.checkpoint import Checkpoint, CheckpointError
    from pylstm.training import Interrupts, check_finite, report_interrupt

    rng = np.random.default_rng(args.seed)
    text, source = _read_text(args)
    vocab = sorted(set(text))
    V = len(vocab)
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], np.int32)
    split = int(len(ids) * 0.95)
    train_ids, val_ids = ids[:split], ids[split:]
    T, N = args.seq_len, args.batch
    # Each of the N streams must hold a chunk of T steps plus its next-character target, and the held-out 5 % must
    # fill the 16 columns evaluate() reads.
    if (len(train_ids) - 1) // N < T + 1 or len(val_ids) < 17:
        need = max(math.ceil((N * (T + 1) + 1) / 0.95) + 1, 340)
        raise SystemExit(f"pylstm train: the text has {len(text):,} characters; {N} streams (--batch) of {T}-step "
                         f"chunks (--seq-len) need about {need:,}: use a longer text or smaller --batch/--seq-len")
    H0 = _unigram_entropy(train_ids, V)
    print(f"corpus: {source}: {len(text):,} characters, vocabulary {V}; unigram entropy {H0:.3f} nats/char")
    rnn, head = _model(args.cell, V, args.hidden, args.layers, args.seed)
    opt = optim.Adam([rnn, head], lr=args.lr)
    eye = np.eye(V, dtype=np.float32)
    # N streams over the training text; truncated BPTT: each chunk starts from the state the previous one ended in.
    stream_len = (len(train_ids) - 1) // N
    offsets = np.arange(N) * stream_len
    pos, state = 0, None
    ck_path = os.path.join(args.out, f"{args.cell}.npz")
    modules = {"rnn": rnn, "head": head}
    # What a resumed run must share with the one that wrote the checkpoint (--lr, --clip and --steps may change).
    config = dict(cell=args.cell, hidden=args.hidden, layers=args.layers, seq_len=T, batch=N,
                  data=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16])
    generators = {"main": rng, "dropout": rnn._dropout_rng}
    history = {"step": [], "train": [], "val_step": [], "val": []}
    ema, start, saved_step = None, 1, 0
    if args.resume:
        try:
            ck = Checkpoint.load(ck_path, modules, opt, generators=generators, config=config, kind="pylstm train")
        except CheckpointError as e:
            raise SystemExit(f"pylstm train --resume: {e}") from None
        opt.lr = args.lr
        start, saved_step = ck.step + 1, ck.step
        pos = int(ck.extra["pos"])
        state = None if ck.carried["state"] is None else tuple(ck.carried["state"])
        history = {k: ck.history[k].tolist() for k in history}
        ema = float(ck.extra["ema"]) if "ema" in ck.extra else None
        print(f"resuming from {ck_path} at step {ck.step}")
        if ck.step >= args.steps:
            print(f"the run is already at step {ck.step}: raise --steps (now {args.steps}) to train on")
            return 0

    def evaluate():
        rnn.eval()
        n = min(len(val_ids) - 1, 20000)
        cols = 16
        L = n // cols
        x_ids = val_ids[:L * cols].reshape(cols, L).T
        y_ids = val_ids[1:L * cols + 1].reshape(cols, L).T
        total, st = 0.0, None
        for s in range(0, L, 200):
            out, st = rnn(eye[x_ids[s:s + 200]], st)
            loss, _ = nn.softmax_cross_entropy(head(out), y_ids[s:s + 200])
            total += loss * len(x_ids[s:s + 200])
        rnn.train()
        return total / L

    def save(step):
        Checkpoint(modules, opt, step=step, generators=generators, history=history, config=config,
                   carried={"state": None if state is None else list(state)}, kind="pylstm train",
                   extra=dict(vocab=np.array([ord(c) for c in vocab], np.int32),
                              config=np.array([args.hidden, args.layers], np.int64), cell=np.array(args.cell),
                              pos=np.array(pos), ema=np.array(np.nan if ema is None else ema),
                              unigram=np.array(H0),
                              val_loss=np.array(history["val"][-1] if history["val"] else np.nan))).save(ck_path)

    def plot():
        _plot(os.path.join(args.out, f"{args.cell}-loss.png"),
              {"train (per step)": (history["step"], history["train"]),
               "validation": (history["val_step"], history["val"]),
               "unigram entropy": ([1, max(args.steps, len(history["step"]))], [H0, H0])},
              "step", "loss (nats/char)", f"{args.cell.upper()} character model on {source}",
              baselines=("unigram entropy",))

    bar = _progress(args.steps, f"train {args.cell}", initial=start - 1)
    t0 = time.perf_counter()
    step = start - 1
    with Interrupts() as stop:
        for step in range(start, args.steps + 1):
            if pos + T + 1 > stream_len:
                pos, state = 0, None
            idx = offsets[None, :] + pos + np.arange(T)[:, None]
            x, y = eye[train_ids[idx]], train_ids[idx + 1]
            opt.zero_grad()
            out, new_state = rnn(x, state)
            loss, dlogits = nn.softmax_cross_entropy(head(out), y)
            rnn.backward(head.backward(dlogits), input_grad=False)  # the one-hot input needs no gradient
            norm = optim.clip_grad_norm([rnn, head], args.clip)
            problem = check_finite(step, loss, norm, lr=opt.lr, clip=args.clip, checkpoint=ck_path,
                                   checkpoint_step=saved_step)
            if problem:
                if bar is not None:
                    bar.close()
                print(problem)
                return 1
            opt.step()  # the step is applied whole: signals are only looked at between steps
            pos += T
            state = new_state
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            history["step"].append(step)
            history["train"].append(loss)
            if bar is not None:
                speed = (step - start + 1) * T * N / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{ema:.3f}", chars_per_s=f"{speed:,.0f}", refresh=False)
                bar.update(1)
            if step % args.eval_every == 0 or step == args.steps:
                val = evaluate()
                history["val_step"].append(step)
                history["val"].append(val)
                sample = _sample(rnn, head, vocab, "The ", 120, 0.8, rng).replace("\n", " ")
                msg = f"step {step}: train {ema:.3f}, validation {val:.3f} nats/char (unigram {H0:.3f})\n  The {sample}"
                (bar.write if bar is not None else print)(msg)
            if stop.requested or step % args.checkpoint_every == 0 or step == args.steps:
                save(step)
                saved_step = step
            if stop.requested:
                if bar is not None:
                    bar.close()
                report_interrupt(ck_path, f"step {step}", args.steps, args.argv)
                plot()
                return stop.exit_code
    if bar is not None:
        bar.close()
    if history["val"]:
        final = history["val"][-1]
        print(f"validation loss {final:.3f} nats/char against the unigram entropy {H0:.3f} "
              f"({'below' if final < H0 else 'NOT below'} it by {H0 - final:.3f})")
    print(f"saved {ck_path}")
    plot()
    return 0


def sample(args):
    from pylstm import nn

    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"pylstm sample: --checkpoint {args.checkpoint!r} is not a file (run `pylstm train` first)")
    if not args.temperature > 0:
        raise SystemExit("pylstm sample: --temperature must be > 0")
    from pylstm.checkpoint import Checkpoint, CheckpointError, load_arrays

    try:
        data = load_arrays(args.checkpoint)
        try:
            vocab = [chr(int(c)) for c in data["extra/vocab"]]
            hidden, layers = (int(v) for v in data["extra/config"])
            cell = str(data["extra/cell"])
        except (KeyError, ValueError, TypeError):
            raise CheckpointError(f"{args.checkpoint} is not a `pylstm train` checkpoint (no vocabulary and sizes "
                                  "in it)") from None
        if cell not in CELLS:
            raise CheckpointError(f"{args.checkpoint} names an unknown cell {cell!r}")
        rnn, head = _model(cell, len(vocab), hidden, layers, 0)
        Checkpoint.from_arrays(data, args.checkpoint, {"rnn": rnn, "head": head}, resume=False)
    except CheckpointError as e:
        raise SystemExit(f"pylstm sample: {e}") from None
    text = _sample(rnn, head, vocab, args.prompt, args.length, args.temperature, np.random.default_rng(args.seed))
    print(args.prompt + text)
    return 0


def gradflow(args):
    """‖∂L/∂x_t‖ against the distance from step t to the loss at the last step, for each cell type."""
    import pylstm

    rng = np.random.default_rng(args.seed)
    T, N, I, H = args.length, args.batch, args.hidden, args.hidden
    x = rng.standard_normal((T, N, I))  # float64, so that gradients far below float32's range still show
    # PyTorch's initialisation, and the usual remedy for the LSTM and GRU: a gate bias that opens the additive path
    # (forget gate f ≈ 0.95, or update gate z ≈ 0.95), so that ∂c_t/∂c_{t-1} = f stays near 1.
    runs = [("RNN", pylstm.RNN, None), ("GRU", pylstm.GRU, None), ("LSTM", pylstm.LSTM, None),
            ("GRU, update-gate bias +3", pylstm.GRU, slice(H, 2 * H)),
            ("LSTM, forget-gate bias +3", pylstm.LSTM, slice(H, 2 * H))]
    series, table = {}, {}
    for label, cls, gate in runs:
        m = cls(I, H, seed=args.seed, dtype="float64")
        if gate is not None:
            with m.edit_parameters() as params:
                params["bias_hh_l0"][gate] += 3.0
        out, _ = m(x)
        dy = np.zeros_like(out)
        dy[-1] = 1.0 / N  # the loss reads the last step only
        dx, _ = m.backward(dy)
        norms = np.linalg.norm(dx.reshape(T, -1), axis=1)[::-1]  # index = distance from the loss
        series[label] = (np.arange(T), np.maximum(norms, 1e-300))
        table[label] = norms
    print(f"|dL/dx_t| by distance from the loss (T={T}, N={N}, H={H}, random input and weights, seed {args.seed})")
    names = [r[0] for r in runs]
    print(f"{'distance':>8}  " + "  ".join(f"{n:>{max(10, len(n))}}" for n in names))
    for d in sorted({0, 1, 2, 5, 10, 20, 50, 100, 200, T - 1}):
        if d < T:
            print(f"{d:8d}  " + "  ".join(f"{table[n][d]:>{max(10, len(n))}.2e}" for n in names))
    os.makedirs(args.out, exist_ok=True)
    _plot(os.path.join(args.out, "gradflow.png"), series, "distance from the loss (steps)", "|dL/dx_t|",
          "Gradient reaching each input step", logy=True)
    return 0


def task(args):
    """Trains each chosen cell on the adding problem or the copy task and prints what it reached."""
    from pylstm import tasks

    cells = CELLS if args.cell == "all" else (args.cell,)
    length = args.length or tasks.DEFAULTS["length"][args.task]
    base_loss, base_score = tasks.no_memory_score(args.task)
    if args.task == "adding":
        print(f"the adding problem: {length} steps of (value, mark); the output at the last step must be the sum of "
              f"the two marked values, up to {length - 1} steps back. Solved: |error| < {tasks.ADDING_TOLERANCE}. "
              f"Always answering 1 (no memory) scores MSE {base_loss:.3f} and solves {100 * base_score:.1f} %")
    else:
        print(f"the copy task: {args.copies} symbols of {tasks.DEFAULTS['symbols']}, {length} blanks ending in a "
              f"delimiter, then the model repeats the symbols (only these outputs are scored). Guessing (no memory) "
              f"scores {100 * base_score:.1f} % at cross-entropy {base_loss:.3f}")
    print(f"{args.steps} Adam steps (lr {args.lr}, clip {args.clip}) on fresh batches of {args.batch}, hidden "
          f"{args.hidden}, gate bias {args.gate_bias:+g} on the LSTM's forget and the GRU's update gate; scored on "
          f"{tasks.DEFAULTS['eval_batch']} held-out sequences")
    from pylstm.checkpoint import Checkpoint, CheckpointError
    from pylstm.training import Interrupts, check_finite, report_interrupt

    ck_path = os.path.join(args.out, f"task-{args.task}.npz")
    # What a resumed run must share with the one that wrote the checkpoint (--lr, --clip and --steps may change).
    config = dict(task=args.task, cells=",".join(cells), length=length, hidden=args.hidden, batch=args.batch,
                  copies=args.copies, gate_bias=float(args.gate_bias), seed=args.seed)
    series, results = {}, {}
    # Per cell: the held-out curve so far, the time spent, the running loss; the cells before the current one are
    # finished.
    progress = {cell: {"steps": [], "loss": [], "score": [], "secs": 0.0} for cell in cells}
    first_cell, first_step, ema, resumed = 0, 1, None, None
    if args.resume:
        try:
            resumed = Checkpoint.load(ck_path, {}, None, config=config, kind="pylstm task", resume=True,
                                      allow_empty=True)
        except CheckpointError as e:
            raise SystemExit(f"pylstm task --resume: {e}") from None
        first_cell = int(resumed.extra["cell_index"])
        for cell in cells:
            for key in ("steps", "loss", "score"):
                progress[cell][key] = resumed.history[f"{cell}/{key}"].tolist()
            progress[cell]["secs"] = float(resumed.extra[f"{cell}/secs"])
        print(f"resuming from {ck_path}: {cells[first_cell]} at step {resumed.step}")
    saved_step = 0
    with Interrupts() as stop:
        for i, cell in enumerate(cells):
            p = progress[cell]
            if i < first_cell:  # finished before the interruption
                results[cell] = (p["loss"][-1], p["score"][-1], p["secs"])
                series[cell.upper()] = (p["steps"], p["loss"])
                continue
            try:
                run = tasks.Task(args.task, cell, length, hidden=args.hidden, batch=args.batch, lr=args.lr,
                                 clip=args.clip, seed=args.seed, copies=args.copies, gate_bias=args.gate_bias)
            except ValueError as e:
                raise SystemExit(f"pylstm task: --{e}") from None
            modules = {"rnn": run.rnn, "head": run.head}
            generators = {"data": run.rng, "dropout": run.rnn._dropout_rng}
            start = 1
            if resumed is not None and i == first_cell and resumed.step > 0:  # step 0: the cell had not begun
                try:
                    ck = Checkpoint.load(ck_path, modules, run.opt, generators=generators, config=config,
                                         kind="pylstm task")
                except CheckpointError as e:
                    raise SystemExit(f"pylstm task --resume: {e}") from None
                run.opt.lr = args.lr
                start, saved_step = ck.step + 1, ck.step
                ema = float(ck.extra["ema"]) if np.isfinite(ck.extra["ema"]) else None
            else:
                ema = None

            def save(step):
                Checkpoint(modules, run.opt, step=step, generators=generators, config=config, kind="pylstm task",
                           history={f"{c}/{k}": progress[c][k] for c in cells for k in ("steps", "loss", "score")},
                           extra={"cell_index": i, "ema": np.nan if ema is None else ema,
                                  **{f"{c}/secs": progress[c]["secs"] for c in cells}}).save(ck_path)

            bar = _progress(args.steps, f"{args.task} {cell}", initial=start - 1)
            t0 = time.perf_counter() - p["secs"]
            for step in range(start, args.steps + 1):
                loss, norm = run.gradients()
                problem = check_finite(step, loss, norm, lr=run.opt.lr, clip=args.clip, checkpoint=ck_path,
                                       checkpoint_step=saved_step)
                if problem:
                    if bar is not None:
                        bar.close()
                    print(f"{cell}: {problem}")
                    return 1
                run.opt.step()
                ema = loss if ema is None else 0.95 * ema + 0.05 * loss
                if bar is not None:
                    bar.set_postfix(loss=f"{ema:.4f}", refresh=False)
                    bar.update(1)
                if step % args.eval_every == 0 or step == args.steps:
                    p["steps"].append(step)
                    for key, value in zip(("loss", "score"), run.evaluate()):
                        p[key].append(value)
                p["secs"] = time.perf_counter() - t0
                if stop.requested or step % args.checkpoint_every == 0 or step == args.steps:
                    save(step)
                    saved_step = step
                if stop.requested:
                    if bar is not None:
                        bar.close()
                    report_interrupt(ck_path, f"{cell} step {step}", args.steps, args.argv)
                    return stop.exit_code
            if bar is not None:
                bar.close()
            results[cell] = (p["loss"][-1], p["score"][-1], p["secs"])
            series[cell.upper()] = (p["steps"], p["loss"])
            saved_step = 0
            if i + 1 < len(cells):  # the next cell starts from scratch: a resume from here begins it
                Checkpoint({}, None, step=0, config=config, kind="pylstm task",
                           history={f"{c}/{k}": progress[c][k] for c in cells for k in ("steps", "loss", "score")},
                           extra={"cell_index": i + 1, "ema": np.nan,
                                  **{f"{c}/secs": progress[c]["secs"] for c in cells}}).save(ck_path)
    if args.task == "adding":
        print(f"{'cell':5} {'MSE':>9} {'solved':>7} {'MSE vs no memory':>17} {'time':>7}")
        for cell, (mse, solved, secs) in results.items():
            print(f"{cell:5} {mse:9.4f} {100 * solved:6.1f}% {base_loss / mse:16.1f}x {secs:6.1f}s")
    else:
        print(f"{'cell':5} {'loss':>9} {'accuracy':>9} {'chance':>7} {'time':>7}")
        for cell, (ce, acc, secs) in results.items():
            print(f"{cell:5} {ce:9.4f} {100 * acc:8.1f}% {100 * base_score:6.1f}% {secs:6.1f}s")
    os.makedirs(args.out, exist_ok=True)
    series["no memory"] = ([1, args.steps], [base_loss, base_loss])
    _plot(os.path.join(args.out, f"task-{args.task}.png"), series, "training step",
          "held-out MSE" if args.task == "adding" else "held-out cross-entropy (nats)",
          f"adding problem, length {length}" if args.task == "adding" else f"copy task, delay {length}",
          logy=args.task == "adding", baselines=("no memory",))
    return 0


def bench(args):
    """A quick table on this machine: pylstm against the NumPy reference and, when installed, torch and ONNX
    Runtime (inference), for one layer of each cell type; medians of --rounds calls after one warm-up."""
    import pylstm
    from pylstm import nn, reference
    from pylstm.__main__ import _median_ms

    def ms(t):
        return f"{t:9.2f}" if t == t else f"{'-':>9}"

    def ratio(theirs, ours):
        return f"{theirs / ours:8.2f}x" if theirs == theirs else f"{'-':>9}"

    pylstm.show_config()
    print()
    rng = np.random.default_rng(args.seed)
    T, N, H = args.length, args.batch, args.hidden
    threads = pylstm.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    try:
        import onnx  # noqa: F401  (the model builder needs it)
        import onnxruntime  # noqa: F401

        from pylstm._onnx import onnx_model, ort_session
        has_ort = True
    except ImportError:
        has_ort = False
    missing = [name for name, ok in (("torch", torch is not None), ("onnxruntime and onnx", has_ort)) if not ok]
    print(f"one layer, T={T}, N={N}, I=H={H}, float32, {threads} threads; median ms of {args.rounds} calls; "
          f"ratios are the other's time over pylstm's (above 1: pylstm is faster)"
          + (f"; not installed: {', '.join(missing)}" if missing else ""))
    print(f"{'cell':5} {'pass':6} {'pylstm':>9} {'numpy':>9} {'torch':>9} {'ORT':>9} {'vs numpy':>9} {'vs torch':>9} "
          f"{'vs ORT':>9}")
    x = rng.standard_normal((T, N, H)).astype(np.float32)
    nan = float("nan")
    for cell in CELLS:
        m = nn.LAYERS[cell](H, H, seed=args.seed)
        p = m.state_dict()
        W = [p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]]
        fwd = getattr(reference, f"{cell}_forward")
        ref_state = (None, None) if cell == "lstm" else (None,)
        tm = getattr(torch.nn, cell.upper())(H, H) if torch else None
        sess = ort_session(onnx_model(cell, *W), threads) if has_ort else None
        for train in (False, True):
            m.train(train)

            def ours():
                out, _ = m(x)
                if train:
                    m.backward(np.ones_like(out))

            def numpy_ref():
                res = fwd(x, *ref_state, *W, training=train)
                if train:
                    bwd = getattr(reference, f"{cell}_backward")
                    g = [np.zeros_like(w) for w in W]
                    if cell == "lstm":
                        bwd(np.ones_like(res[0]), None, None, x, None, None, W[0], W[1], res[0], res[3], *g)
                    else:
                        bwd(np.ones_like(res[0]), None, x, None, W[0], W[1], res[0], res[2], *g)

            def theirs():
                xt = torch.from_numpy(x).requires_grad_(train)
                with torch.set_grad_enabled(train):
                    out, _ = tm(xt)
                    if train:
                        out.backward(torch.ones_like(out))

            a = _median_ms(ours, args.rounds)
            b = _median_ms(numpy_ref, max(1, args.rounds // 3))
            c = _median_ms(theirs, args.rounds) if torch else nan
            d = _median_ms(lambda: sess.run(None, {"X": x}), args.rounds) if sess and not train else nan

            print(f"{cell:5} {'train' if train else 'infer':6} {ms(a)} {ms(b)} {ms(c)} {ms(d)} {ratio(b, a)} "
                  f"{ratio(c, a)} {ratio(d, a)}")
    return 0


def _non_negative_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _positive(kind):
    def parse(s):
        v = kind(s)
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v
    return parse


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" after every option's help, except where there is no default value to show."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser():
    p = argparse.ArgumentParser(prog="pylstm", description="Recurrent networks on the CPU. Without a subcommand, "
                                "`pylstm` runs the self-check (see `pylstm selfcheck --help`).")
    sub = p.add_subparsers(dest="command")

    def command(name, summary, description):
        return sub.add_parser(name, help=summary, description=description, formatter_class=_HelpWithDefaults)

    def positive(parser, flag, kind, default, text):
        parser.add_argument(flag, type=_positive(kind), default=default, help=text)

    def seed_and_out(parser, out=True):
        if out:
            parser.add_argument("--out", default="pylstm-out", help="output folder")
        parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed of every random draw")

    t = command("train", "train a character-level language model",
                "Trains a character-level language model (one-hot input, a recurrent stack, a softmax output layer; "
                "Adam with gradient-norm clipping; truncated BPTT with the state carried between chunks; 5 % of "
                "the text held out). Without --data the text is the docstrings of the Python standard library's "
                "source files, gathered with ast (nothing is imported) and cached in ~/.cache/pylstm. Writes "
                "OUT/CELL.npz (every --checkpoint-every steps, atomically; it holds all that --resume needs) and "
                "OUT/CELL-loss.png. Ctrl-C or SIGTERM stops after the current step, saves, prints the command that "
                "resumes, and exits with 130 or 143. A NaN or infinite loss or gradient stops training and leaves "
                "the last good checkpoint as it was.")
    t.add_argument("--data", help="a UTF-8 text file to train on (default: the docstrings)")
    t.add_argument("--cell", choices=CELLS, default="lstm", help="recurrent cell")
    positive(t, "--hidden", int, 256, "hidden units per layer")
    positive(t, "--layers", int, 1, "recurrent layers")
    positive(t, "--seq-len", int, 64, "BPTT chunk length")
    positive(t, "--batch", int, 32, "parallel streams over the text")
    positive(t, "--steps", int, 2500, "training steps (one chunk of every stream each)")
    positive(t, "--lr", float, 3e-3, "Adam learning rate")
    positive(t, "--clip", float, 1.0, "max gradient norm")
    positive(t, "--eval-every", int, 500, "steps between validation losses and samples")
    positive(t, "--checkpoint-every", int, 250, "steps between checkpoints (OUT/CELL.npz, written atomically)")
    t.add_argument("--resume", action="store_true", help="continue the run saved in OUT/CELL.npz (after Ctrl-C, "
                   "say) to --steps, bit for bit as if it had not stopped")
    seed_and_out(t)
    s = command("sample", "generate text from a `pylstm train` checkpoint",
                "Feeds the prompt to a `pylstm train` checkpoint and draws characters one at a time. Prompt "
                "characters outside the checkpoint's vocabulary are skipped, with a note.")
    s.add_argument("--checkpoint", default=os.path.join("pylstm-out", "lstm.npz"), help="a `pylstm train` .npz")
    s.add_argument("--prompt", default="The ", help="text to start from")
    positive(s, "--length", int, 300, "characters to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (> 0; lower is safer)")
    seed_and_out(s, out=False)
    from pylstm.tasks import DEFAULTS as TD

    k = command("task", "the adding problem and the copy task: long-range memory, cell against cell",
                "Trains each cell (or --cell) on a classic long-range memory benchmark of the LSTM literature and "
                "prints the held-out score it reached, against what a model without memory gets. adding: the sum "
                "of two marked values in a sequence (the form of Le et al. 2015 and Arjovsky et al. 2016, after "
                "Hochreiter & Schmidhuber 1997); copy: repeat symbols seen before a delay of --length blanks "
                "(Arjovsky et al. 2016). Every batch is fresh random data. Writes OUT/task-TASK.png.")
    k.add_argument("task", choices=("adding", "copy"), help="which benchmark")
    k.add_argument("--cell", choices=(*CELLS, "all"), default="all", help="recurrent cell")
    k.add_argument("--length", type=_positive(int), help=f"sequence length (adding, default "
                   f"{TD['length']['adding']}) or delay (copy, default {TD['length']['copy']})")
    positive(k, "--steps", int, TD["steps"], "Adam steps per cell")
    positive(k, "--hidden", int, TD["hidden"], "hidden units")
    positive(k, "--batch", int, TD["batch"], "sequences per step")
    positive(k, "--lr", float, TD["lr"], "Adam learning rate")
    positive(k, "--clip", float, TD["clip"], "max gradient norm")
    k.add_argument("--gate-bias", type=float, default=TD["gate_bias"],
                   help="added to the LSTM's forget-gate and the GRU's update-gate bias at the start, so that they "
                   "begin by remembering (0 is PyTorch's initialisation)")
    positive(k, "--copies", int, TD["copies"], "symbols to copy (copy task)")
    positive(k, "--eval-every", int, 100, "steps between held-out scores (the curve in the PNG)")
    positive(k, "--checkpoint-every", int, 250, "steps between checkpoints (OUT/task-TASK.npz, written atomically)")
    k.add_argument("--resume", action="store_true", help="continue the run saved in OUT/task-TASK.npz to --steps")
    seed_and_out(k)
    q = command("seq2seq", "an encoder-decoder that learns addition (or reversing, sorting) from examples",
                "Trains a sequence-to-sequence model: an encoder LSTM (or GRU) reads the question one character at a "
                "time, its final state starts a decoder that writes the answer (teacher forcing in training, greedy "
                "decoding through the decoder's stream to the end symbol in evaluation). The default task is "
                "Keras's addition example, '535+61' -> '596'. Reports exact-match and per-character accuracy on "
                "held-out questions that training never sees, against a baseline that ignores the question. Writes "
                "OUT/seq2seq-TASK.npz (every --checkpoint-every steps; --resume continues) and OUT/seq2seq-TASK.png. "
                "Ctrl-C or SIGTERM saves and exits with 130 or 143.")
    q.add_argument("--task", choices=("add", "reverse", "sort"), default="add", help="what to learn")
    positive(q, "--digits", int, 3, "most digits of each number (add) or letters of the string")
    q.add_argument("--reverse-input", action="store_true", help="read the question backwards (Sutskever et al. 2014)")
    q.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="encoder and decoder cell")
    positive(q, "--hidden", int, 128, "hidden units of encoder and decoder")
    positive(q, "--batch", int, 128, "questions per step")
    positive(q, "--steps", int, 6000, "training steps")
    positive(q, "--lr", float, 3e-3, "Adam learning rate")
    positive(q, "--clip", float, 1.0, "max gradient norm")
    positive(q, "--held-out", int, 2000, "held-out questions")
    positive(q, "--eval-every", int, 500, "steps between held-out scores")
    positive(q, "--checkpoint-every", int, 500, "steps between checkpoints")
    q.add_argument("--resume", action="store_true", help="continue the run saved in OUT/seq2seq-TASK.npz")
    seed_and_out(q)
    g = command("gradflow", "the vanishing-gradient picture: |dL/dx_t| for RNN, GRU and LSTM",
                "For RNN, GRU and LSTM of the same size on random input (float64), prints and plots the norm of "
                "dL/dx_t against the distance between step t and a loss at the last step; also the LSTM and GRU "
                "with a +3 forget- or update-gate bias. Writes OUT/gradflow.png.")
    positive(g, "--length", int, 200, "sequence length")
    positive(g, "--hidden", int, 64, "input and hidden size")
    positive(g, "--batch", int, 16, "batch")
    seed_and_out(g)
    b = command("bench", "a quick timing table: pylstm against the NumPy reference, torch and ONNX Runtime",
                "Times one layer of each cell, inference and training (forward plus backward), with pylstm, the "
                "NumPy reference and, where installed, torch and ONNX Runtime (inference only). For the full "
                "benchmark suite see benchmarks/ in the source tree.")
    positive(b, "--length", int, 100, "sequence length")
    positive(b, "--batch", int, 32, "batch")
    positive(b, "--hidden", int, 256, "input and hidden size")
    positive(b, "--rounds", int, 5, "timed calls per case (the median is shown)")
    seed_and_out(b, out=False)
    return p


def main(argv):
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    from .seq2seq import command as seq2seq

    run = {"train": train, "sample": sample, "task": task, "gradflow": gradflow, "bench": bench,
           "seq2seq": seq2seq}[args.command]
    if args.command == "bench":  # times numpy as it comes
        return run(args)
    # numpy's own OpenBLAS threads keep spinning for about 0.1 s after each numpy product (the output layer, here),
    # and on a small machine they take the cores pylstm's pool needs: `pylstm train` ran 2.5x slower with them.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return run(args)
