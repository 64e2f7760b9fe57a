"""Sequence to sequence: an encoder that reads a string and a decoder that writes the answer, in pylstm's own pieces.

The encoder (an LSTM or GRU over one-hot characters) reads the question; its final state starts the decoder, a
recurrent layer of the same cell with a Linear and softmax head. Training uses teacher forcing: the decoder reads
"^" + answer and must write answer + "$". Generation is greedy, one character per step through the decoder's
stream (the streaming path of the layers), and stops at "$". The tasks are Keras's addition example ("535+61" ->
"596"), reversing and sorting a string; with ``reverse_input`` the question is read backwards (Sutskever et al.
2014), which shortens the path from the first digits of the question to the first digits of the answer.
"""

from __future__ import annotations

import numpy as np

from . import nn, optim
from .layers import GRU, LSTM

START, END, PAD = "^", "$", " "
TASKS = {
    # name: (question alphabet, description)
    "add": ("0123456789+", "the sum of two numbers of 1 to {digits} digits, as in Keras's addition example"),
    "reverse": ("abcdefghij", "a string of 1 to {digits} letters, reversed"),
    "sort": ("abcdefghij", "a string of 1 to {digits} letters, sorted"),
}


def make_pairs(task, rng, n, digits):
    """n (question, answer) string pairs of the task, drawn from rng."""
    if task == "add":
        top = 10 ** rng.integers(1, digits + 1, (n, 2))
        a = rng.integers(0, top[:, 0])
        b = rng.integers(0, top[:, 1])
        return [(f"{x}+{y}", str(x + y)) for x, y in zip(a, b)]
    letters = np.array(list(TASKS[task][0]))
    out = []
    for length in rng.integers(1, digits + 1, n):
        s = "".join(rng.choice(letters, length))
        out.append((s, s[::-1] if task == "reverse" else "".join(sorted(s))))
    return out


class Vocab:
    """The characters of questions and answers, with the padding, start and end symbols."""

    def __init__(self, task):
        chars = sorted(set(TASKS[task][0]) | set("0123456789"))
        self.chars = [PAD, START, END] + chars
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)


class Seq2Seq:
    """Encoder, decoder and head, with an explicit forward and backward (as the layers have) and greedy decoding."""

    def __init__(self, task, cell="lstm", hidden=128, digits=3, reverse_input=False, seed=0, lr=3e-3, clip=1.0):
        if task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        self.task, self.cell, self.digits, self.reverse_input, self.clip = task, cell, digits, reverse_input, clip
        self.vocab = Vocab(task)
        V = len(self.vocab)
        self.q_len = 2 * digits + 1 if task == "add" else digits  # the longest question
        self.a_len = digits + 1 if task == "add" else digits      # the longest answer
        s = nn.seeds(seed, 3)
        layer = LSTM if cell == "lstm" else GRU
        self.encoder = layer(V, hidden, seed=s[0])
        self.decoder = layer(V, hidden, seed=s[1])
        self.head = nn.Linear(hidden, V, seed=s[2])
        self.modules = {"encoder": self.encoder, "decoder": self.decoder, "head": self.head}
        self.opt = optim.Adam(list(self.modules.values()), lr=lr)
        self._eye = np.eye(V, dtype=np.float32)

    # ---- encoding -----------------------------------------------------------------------------------------------
    def encode_questions(self, questions):
        """(q_len, N) ids: each question padded with spaces on the right (before reversing, when asked)."""
        ids = np.array([[self.vocab.index[c] for c in q.ljust(self.q_len, PAD)] for q in questions]).T
        return ids[::-1] if self.reverse_input else ids

    def encode_answers(self, answers):
        """Decoder input "^" + answer and target answer + "$" (a_len + 1 steps, padded), and the loss mask."""
        T = self.a_len + 1
        dec_in = np.zeros((T, len(answers)), np.int64)
        target = np.zeros((T, len(answers)), np.int64)
        mask = np.zeros((T, len(answers)), np.float32)
        for n, a in enumerate(answers):
            seq_in, seq_out = START + a, a + END
            dec_in[:len(seq_in), n] = [self.vocab.index[c] for c in seq_in]
            target[:len(seq_out), n] = [self.vocab.index[c] for c in seq_out]
            mask[:len(seq_out), n] = 1
        return dec_in, target, mask

    # ---- training -----------------------------------------------------------------------------------------------
    def gradients(self, questions, answers):
        """Teacher-forced loss (mean cross-entropy per answer character, "$" included) and its gradients in the
        modules' grads; returns (loss, gradient norm before clipping)."""
        q = self.encode_questions(questions)
        dec_in, target, mask = self.encode_answers(answers)
        for m in self.modules.values():
            m.train()
        self.opt.zero_grad()
        enc_out, state = self.encoder(self._eye[q])
        out, _ = self.decoder(self._eye[dec_in], state)
        logits = self.head(out)
        loss, dlogits = masked_cross_entropy(logits, target, mask)
        dout = self.head.backward(dlogits)
        _, dstate = self.decoder.backward(dout, input_grad=False)
        self.encoder.backward(np.zeros_like(enc_out), dstate, input_grad=False)
        return loss, optim.clip_grad_norm(list(self.modules.values()), self.clip)

    # ---- generation ---------------------------------------------------------------------------------------------
    def answer(self, questions):
        """Greedy decoding: each question's answer, written one character at a time until "$" (or a_len + 1
        characters). The decoder runs as a stream from the encoder's final state."""
        for m in self.modules.values():
            m.eval()
        q = self.encode_questions(questions)
        _, state = self.encoder(self._eye[q])
        stream = self.decoder.stream(state)
        N = len(questions)
        prev = np.full(N, self.vocab.index[START])
        written = np.zeros((self.a_len + 1, N), np.int64)
        for t in range(self.a_len + 1):
            logits = self.head(stream.step(self._eye[prev]))
            prev = logits.argmax(axis=-1)
            written[t] = prev
        answers = []
        end = self.vocab.index[END]
        for n in range(N):
            ids = list(written[:, n])
            ids = ids[:ids.index(end)] if end in ids else ids
            answers.append("".join(self.vocab.chars[i] for i in ids))
        return answers


def masked_cross_entropy(logits, target, mask):
    """Mean softmax cross-entropy over the positions where mask is 1; (loss, dL/dlogits)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    count = mask.sum()
    loss = float(-(picked * mask).sum() / count)
    d = np.exp(logp)
    np.put_along_axis(d, target[..., None], np.take_along_axis(d, target[..., None], axis=-1) - 1, axis=-1)
    d *= (mask / count)[..., None]
    return loss, d.astype(logits.dtype)


def scores(predicted, answers):
    """(exact-match accuracy, per-character accuracy): characters compared position by position over the longer of
    the two strings, so that a missing or extra character counts as wrong."""
    exact = float(np.mean([p == a for p, a in zip(predicted, answers)]))
    right = total = 0
    for p, a in zip(predicted, answers):
        n = max(len(p), len(a))
        right += sum(1 for i in range(n) if i < len(p) and i < len(a) and p[i] == a[i])
        total += n
    return exact, right / max(total, 1)


def baseline(train_answers, held_out_answers):
    """The scores of an answer that ignores the question: the most common training answer length, each position
    its most common training character."""
    lengths = np.bincount([len(a) for a in train_answers])
    L = int(lengths.argmax())
    guess = ""
    for i in range(L):
        chars = [a[i] for a in train_answers if len(a) > i]
        values, counts = np.unique(chars, return_counts=True)
        guess += values[counts.argmax()]
    return scores([guess] * len(held_out_answers), held_out_answers)


# ---- the `pylstm seq2seq` command -----------------------------------------------------------------------------------
def training_pairs(task, rng, n, digits, held_out):
    """n training pairs, none of whose questions is in the held-out set."""
    out = []
    while len(out) < n:
        out += [p for p in make_pairs(task, rng, n, digits) if p[0] not in held_out]
    return out[:n]


def command(args):
    """`pylstm seq2seq`: trains, reports held-out accuracy against the baseline, writes the curve and checkpoint."""
    import os
    import time

    from .checkpoint import Checkpoint, CheckpointError
    from .cli import _plot, _progress
    from .training import Interrupts, check_finite, report_interrupt

    try:
        model = Seq2Seq(args.task, args.cell, args.hidden, args.digits, args.reverse_input, args.seed, args.lr,
                        args.clip)
    except ValueError as e:
        raise SystemExit(f"pylstm seq2seq: {e}") from None
    held = make_pairs(args.task, np.random.default_rng([args.seed, 1]), args.held_out, args.digits)
    held_q = {q for q, _ in held}
    held_answers = [a for _, a in held]
    rng = np.random.default_rng([args.seed, 2])
    base = baseline([a for _, a in training_pairs(args.task, np.random.default_rng([args.seed, 3]), 5000,
                                                  args.digits, held_q)], held_answers)
    print(f"task {args.task}: {TASKS[args.task][1].format(digits=args.digits)}"
          f"{'; the question is read reversed' if args.reverse_input else ''}. {args.cell.upper()} encoder and "
          f"decoder, {args.hidden} units; {args.held_out} held-out questions, never trained on")
    print(f"baseline (one answer for every question, from the training answers' commonest characters): exact "
          f"{100 * base[0]:.1f} %, per character {100 * base[1]:.1f} %")
    ck_path = os.path.join(args.out, f"seq2seq-{args.task}.npz")
    config = dict(task=args.task, cell=args.cell, hidden=args.hidden, digits=args.digits, batch=args.batch,
                  reverse_input=bool(args.reverse_input), held_out=args.held_out, seed=args.seed)
    history = {"step": [], "loss": [], "eval_step": [], "exact": [], "char": []}
    start, saved_step = 1, 0
    if args.resume:
        try:
            ck = Checkpoint.load(ck_path, model.modules, model.opt, generators={"data": rng}, config=config,
                                 kind="pylstm seq2seq")
        except CheckpointError as e:
            raise SystemExit(f"pylstm seq2seq --resume: {e}") from None
        model.opt.lr = args.lr
        start, saved_step = ck.step + 1, ck.step
        history = {k: ck.history[k].tolist() for k in history}
        print(f"resuming from {ck_path} at step {ck.step}")

    def save(step):
        Checkpoint(model.modules, model.opt, step=step, generators={"data": rng}, history=history, config=config,
                   kind="pylstm seq2seq").save(ck_path)

    def evaluate(step):
        predicted = model.answer([q for q, _ in held])
        exact, char = scores(predicted, held_answers)
        history["eval_step"].append(step)
        history["exact"].append(exact)
        history["char"].append(char)
        shown = "; ".join(f"{q} -> {p}" + ("" if p == a else f" (not {a})")
                          for (q, a), p in list(zip(held, predicted))[:3])
        return (f"step {step}: held-out exact {100 * exact:.1f} %, per character {100 * char:.1f} % (baseline "
                f"{100 * base[0]:.1f} / {100 * base[1]:.1f} %); {shown}")

    def plot():
        steps = max(args.steps, history["step"][-1] if history["step"] else 1)
        _plot(os.path.join(args.out, f"seq2seq-{args.task}.png"),
              {"held-out exact match": (history["eval_step"], history["exact"]),
               "held-out per character": (history["eval_step"], history["char"]),
               "baseline exact": ([1, steps], [base[0], base[0]]),
               "baseline per character": ([1, steps], [base[1], base[1]])},
              "training step", "accuracy", f"seq2seq {args.task} ({args.cell.upper()}, {args.hidden} units)",
              baselines=("baseline exact", "baseline per character"))

    bar = _progress(args.steps, f"seq2seq {args.task}", initial=start - 1)
    t0, ema = time.perf_counter(), None
    with Interrupts() as stop:
        for step in range(start, args.steps + 1):
            questions, answers = zip(*training_pairs(args.task, rng, args.batch, args.digits, held_q))
            loss, norm = model.gradients(questions, answers)
            problem = check_finite(step, loss, norm, lr=model.opt.lr, clip=args.clip, checkpoint=ck_path,
                                   checkpoint_step=saved_step)
            if problem:
                if bar is not None:
                    bar.close()
                print(problem)
                return 1
            model.opt.step()
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            history["step"].append(step)
            history["loss"].append(loss)
            if bar is not None:
                bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
                bar.update(1)
            if step % args.eval_every == 0 or step == args.steps:
                (bar.write if bar is not None else print)(evaluate(step))
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
    if history["exact"]:
        print(f"held-out exact match {100 * history['exact'][-1]:.1f} %, per character {100 * history['char'][-1]:.1f} "
              f"% (baseline {100 * base[0]:.1f} / {100 * base[1]:.1f} %), {time.perf_counter() - t0:.0f} s")
    print(f"saved {ck_path}")
    plot()
    return 0
