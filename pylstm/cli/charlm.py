"""`pylstm train` and `pylstm sample`: a character-level language model trained end to end on a text (by default the
Python standard library's docstrings), and text generated from its checkpoint."""

from __future__ import annotations

import ast
import hashlib
import math
import os
import sys
import sysconfig
import time

import numpy as np

from .common import CELLS, _plot, quantize_label, quantize_refusal


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
    from pylstm.checkpoint import save_text

    save_text(path, text, encoding="ascii")
    return text


def _model(cell, vocab_size, hidden, layers, seed, layer_norm=False):
    from pylstm import nn

    options = {"layer_norm": True} if layer_norm else {}  # (the GRU and the RNN have no such option)
    return nn.recurrent_model(cell, vocab_size, hidden, vocab_size, layers, seed=seed, **options)


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
    from pylstm.training import Interrupts, Loop

    refusal = quantize_refusal(args, "train")
    if refusal:
        raise SystemExit(refusal)
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
    if args.layer_norm and args.cell != "lstm":
        raise SystemExit(f"pylstm train: --layer-norm is for --cell lstm, got --cell {args.cell}")
    rnn, head = _model(args.cell, V, args.hidden, args.layers, args.seed, args.layer_norm)
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
    if args.layer_norm:  # (only then, so that earlier checkpoints resume as they were written)
        config["layer_norm"] = True
    generators = {"main": rng, "dropout": rnn._dropout_rng}
    for option in rnn._REGULARIZERS:  # --weight-drop, --recurrent-dropout, --zoneout
        try:
            setattr(rnn, option, getattr(args, option))
        except ValueError as e:
            raise SystemExit(f"pylstm train: --{option.replace('_', '-')}: {e}") from None
        if getattr(args, option):  # (only then, so that earlier checkpoints resume as they were written)
            config[option] = getattr(args, option)
            generators[option] = getattr(rnn, f"_{option}_rng")
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

    def evaluate(model=None):
        model = rnn if model is None else model
        was = model.training
        model.eval()
        n = min(len(val_ids) - 1, 20000)
        cols = 16
        L = n // cols
        x_ids = val_ids[:L * cols].reshape(cols, L).T
        y_ids = val_ids[1:L * cols + 1].reshape(cols, L).T
        total, st = 0.0, None
        for s in range(0, L, 200):
            out, st = model(eye[x_ids[s:s + 200]], st)
            loss, _ = nn.softmax_cross_entropy(head(out), y_ids[s:s + 200])
            total += loss * len(x_ids[s:s + 200])
        model.train(was)
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

    t0 = time.perf_counter()
    with Interrupts() as stop:
        loop = Loop(stop, start=start, total=args.steps, desc=f"train {args.cell}", checkpoint=ck_path,
                    every=args.checkpoint_every, save=save, argv=args.argv, saved_step=saved_step)
        for step in loop:
            if pos + T + 1 > stream_len:
                pos, state = 0, None
            idx = offsets[None, :] + pos + np.arange(T)[:, None]
            x, y = eye[train_ids[idx]], train_ids[idx + 1]
            opt.zero_grad()
            out, new_state = rnn(x, state)
            loss, dlogits = nn.softmax_cross_entropy(head(out), y)
            rnn.backward(head.backward(dlogits), input_grad=False)  # the one-hot input needs no gradient
            norm = optim.clip_grad_norm([rnn, head], args.clip)
            if loop.diverged(step, loss, norm, lr=opt.lr, clip=args.clip):
                return 1
            opt.step()  # the step is applied whole: signals are only looked at between steps
            pos += T
            state = new_state
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            history["step"].append(step)
            history["train"].append(loss)
            speed = (step - start + 1) * T * N / (time.perf_counter() - t0)
            loop.update(loss=f"{ema:.3f}", chars_per_s=f"{speed:,.0f}")
            if step % args.eval_every == 0 or step == args.steps:
                val = evaluate()
                history["val_step"].append(step)
                history["val"].append(val)
                sample = _sample(rnn, head, vocab, "The ", 120, 0.8, rng).replace("\n", " ")
                loop.write(f"step {step}: train {ema:.3f}, validation {val:.3f} nats/char (unigram {H0:.3f})\n"
                           f"  The {sample}")
            code = loop.save_if_due(step)
            if code is not None:
                plot()
                return code
        loop.close()
    if history["val"]:
        final = history["val"][-1]
        print(f"validation loss {final:.3f} nats/char against the unigram entropy {H0:.3f} "
              f"({'below' if final < H0 else 'NOT below'} it by {H0 - final:.3f})")
        if args.quantize:
            from pylstm import quantize

            exact = evaluate()  # the float32 loss at full precision (history's is the same number)
            for dtype in dict.fromkeys(args.quantize):
                low = evaluate(quantize(rnn, dtype))
                print(f"{quantize_label(dtype)}: validation loss {low:.4f} nats/char against float32's {exact:.4f} "
                      f"({low - exact:+.4f})")
    print(f"saved {ck_path}")
    plot()
    return 0


def load_model(path, command):
    """(rnn, head, vocab) from a `pylstm train` checkpoint; a missing or wrong file exits with a message naming
    `command` and the file."""
    from pylstm.checkpoint import Checkpoint, CheckpointError, load_arrays

    if not os.path.isfile(path):
        raise SystemExit(f"pylstm {command}: --checkpoint {path!r} is not a file (run `pylstm train` first)")
    try:
        data = load_arrays(path)
        try:
            vocab = [chr(int(c)) for c in data["extra/vocab"]]
            hidden, layers = (int(v) for v in data["extra/config"])
            cell = str(data["extra/cell"])
        except (KeyError, ValueError, TypeError):
            raise CheckpointError(f"{path} is not a `pylstm train` checkpoint (no vocabulary and sizes in "
                                  "it)") from None
        if cell not in CELLS:
            raise CheckpointError(f"{path} names an unknown cell {cell!r}")
        layer_norm = any(k.endswith("ln_weight_ih_l0") for k in data)  # the layer-norm LSTM's parameters
        rnn, head = _model(cell, len(vocab), hidden, layers, 0, layer_norm)
        Checkpoint.from_arrays(data, path, {"rnn": rnn, "head": head}, resume=False)
    except CheckpointError as e:
        raise SystemExit(f"pylstm {command}: {e}") from None
    return rnn, head, vocab


def sample(args):
    if not args.temperature > 0:
        raise SystemExit("pylstm sample: --temperature must be > 0")
    rnn, head, vocab = load_model(args.checkpoint, "sample")
    text = _sample(rnn, head, vocab, args.prompt, args.length, args.temperature, np.random.default_rng(args.seed))
    print(args.prompt + text)
    return 0

