"""Sequence to sequence: an encoder that reads a string and a decoder that writes the answer, in pylstm's own pieces.

The encoder (an LSTM or GRU over one-hot characters) reads the question; its final state starts the decoder, a
recurrent layer of the same cell with a Linear and softmax head. Training uses teacher forcing: the decoder reads
"^" + answer and must write answer + "$". Generation is greedy, one character per step through the decoder's
stream (the streaming path of the layers), and stops at "$". The tasks are Keras's addition example ("535+61" ->
"596"), reversing and sorting a string; with ``reverse_input`` the question is read backwards (Sutskever et al.
2014), which shortens the path from the first digits of the question to the first digits of the answer.

With ``attention``, the decoder also looks back at every encoder output at each step: Luong et al. (2015)'s global
attention with dot scores, a_s = h_t · e_s, weights softmax(a), context c_t = Σ_s α_s e_s, and the attentional
state tanh(W_c [c_t; h_t] + b_c) feeding the head (without their input feeding, so that the decoder alone is still
a stream).
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


class LuongAttention:
    """Global dot-product attention (Luong et al. 2015) over encoder outputs, with an explicit backward. Its one
    parameterised piece is `combine`, a Linear (2H -> H) of [context; decoder state]."""

    def __init__(self, hidden, *, seed=None, dtype="float32"):
        self.combine = nn.Linear(2 * hidden, hidden, seed=seed, dtype=dtype)
        self._cache = None

    # Batched over the batch axis n with matmul (several times faster than the equivalent einsum here):
    @staticmethod
    def _dots(a, b):  # a (T, N, H), b (S, N, H) -> Σ_h a[t,n,h] b[s,n,h], (T, N, S)
        return np.matmul(a.transpose(1, 0, 2), b.transpose(1, 2, 0)).transpose(1, 0, 2)

    @staticmethod
    def _mix(w, b):  # w (T, N, S), b (S, N, H) -> Σ_s w[t,n,s] b[s,n,h], (T, N, H)
        return np.matmul(w.transpose(1, 0, 2), b.transpose(1, 0, 2)).transpose(1, 0, 2)

    @staticmethod
    def _mix_back(w, a):  # w (T, N, S), a (T, N, H) -> Σ_t w[t,n,s] a[t,n,h], (S, N, H)
        return np.matmul(w.transpose(1, 2, 0), a.transpose(1, 0, 2)).transpose(1, 0, 2)

    def __call__(self, dec, enc):
        """dec (T, N, H) decoder states, enc (S, N, H) encoder outputs -> (T, N, H) attentional states; keeps what
        backward needs."""
        scores = self._dots(dec, enc)
        alpha = np.exp(scores - scores.max(axis=-1, keepdims=True))
        alpha /= alpha.sum(axis=-1, keepdims=True)              # (T, N, S)
        context = self._mix(alpha, enc)
        out = np.tanh(self.combine(np.concatenate([context, dec], axis=-1)))
        self._cache = (dec, enc, alpha, out)
        return out

    def backward(self, dout):
        """Adds the gradients of `combine`; returns (d dec, d enc)."""
        dec, enc, alpha, out = self._cache
        H = dec.shape[-1]
        dcat = self.combine.backward(dout * (1 - out * out))
        dcontext, ddec = dcat[..., :H], dcat[..., H:].copy()
        dalpha = self._dots(dcontext, enc)
        denc = self._mix_back(alpha, dcontext)
        dscores = alpha * (dalpha - (alpha * dalpha).sum(axis=-1, keepdims=True))  # through the softmax
        ddec += self._mix(dscores, enc)
        denc += self._mix_back(dscores, dec)
        return ddec, denc


class Seq2Seq:
    """Encoder, decoder and head, with an explicit forward and backward (as the layers have) and greedy decoding."""

    def __init__(self, task, cell="lstm", hidden=128, digits=3, reverse_input=False, seed=0, lr=3e-3, clip=1.0,
                 attention=False, dtype="float32"):
        if task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        self.task, self.cell, self.digits, self.reverse_input, self.clip = task, cell, digits, reverse_input, clip
        self.vocab = Vocab(task)
        V = len(self.vocab)
        self.q_len = 2 * digits + 1 if task == "add" else digits  # the longest question
        self.a_len = digits + 1 if task == "add" else digits      # the longest answer
        s = nn.seeds(seed, 4)
        layer = LSTM if cell == "lstm" else GRU
        self.encoder = layer(V, hidden, seed=s[0], dtype=dtype)
        self.decoder = layer(V, hidden, seed=s[1], dtype=dtype)
        self.head = nn.Linear(hidden, V, seed=s[2], dtype=dtype)
        self.modules = {"encoder": self.encoder, "decoder": self.decoder, "head": self.head}
        self.attention = LuongAttention(hidden, seed=s[3], dtype=dtype) if attention else None
        if attention:
            self.modules["attention"] = self.attention.combine
        self.opt = optim.Adam(list(self.modules.values()), lr=lr)
        self._eye = np.eye(V, dtype=dtype)

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
        loss = self._loss(q, dec_in, target, mask, backward=True)
        return loss, optim.clip_grad_norm(list(self.modules.values()), self.clip)

    def _loss(self, q, dec_in, target, mask, backward):
        enc_out, state = self.encoder(self._eye[q])
        out, _ = self.decoder(self._eye[dec_in], state)
        logits = self.head(out if self.attention is None else self.attention(out, enc_out))
        loss, dlogits = masked_cross_entropy(logits, target, mask)
        if not backward:
            return loss
        dout = self.head.backward(dlogits)
        denc = np.zeros_like(enc_out)
        if self.attention is not None:
            dout, denc = self.attention.backward(dout)
        _, dstate = self.decoder.backward(dout, input_grad=False)
        self.encoder.backward(denc, dstate, input_grad=False)
        return loss

    # ---- generation ---------------------------------------------------------------------------------------------
    def answer(self, questions):
        """Greedy decoding: each question's answer, written one character at a time until "$" (or a_len + 1
        characters). The decoder runs as a stream from the encoder's final state."""
        for m in self.modules.values():
            m.eval()
        q = self.encode_questions(questions)
        enc_out, state = self.encoder(self._eye[q])
        stream = self.decoder.stream(state)
        N = len(questions)
        prev = np.full(N, self.vocab.index[START])
        written = np.zeros((self.a_len + 1, N), np.int64)
        for t in range(self.a_len + 1):
            h = stream.step(self._eye[prev])
            logits = self.head(h if self.attention is None else self.attention(h[None], enc_out)[0])
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


def _kind(task, question):
    """What kind of question it is: for add the digit counts of the two numbers, for reverse and sort the length."""
    return tuple(len(part) for part in question.split("+")) if task == "add" else len(question)


def _kind_size(task, kind):
    """How many distinct questions a kind has: 10 one-digit numbers and 9·10^(k-1) of k digits; 10^k strings."""
    if task == "add":
        return int(np.prod([10 if k == 1 else 9 * 10 ** (k - 1) for k in kind]))
    return 10 ** kind


def held_out_room(task, digits, share=0.1):
    """How many distinct questions can be held out when at most `share` of each kind is."""
    kinds = ([(a, b) for a in range(1, digits + 1) for b in range(1, digits + 1)] if task == "add"
             else range(1, digits + 1))
    return sum(int(share * _kind_size(task, kind)) for kind in kinds)


def held_out_pairs(task, rng, n, digits, share=0.1):
    """n distinct held-out pairs drawn from the task's distribution, taking at most `share` of the questions of any
    kind, so that training still sees the rest of every kind. Without the cap, a small kind (the 100 sums of two
    one-digit numbers, the 10 one-letter strings) would be held out whole and never trained on."""
    room = held_out_room(task, digits, share)
    if n > room:
        raise ValueError(f"--held-out {n} is too many for {task} with --digits {digits}: at most {room} distinct "
                         f"questions can be held out while training keeps {1 - share:.0%} of every kind")
    taken, count, out = set(), {}, []
    while len(out) < n:
        for q, a in make_pairs(task, rng, n, digits):
            kind = _kind(task, q)
            if q not in taken and count.get(kind, 0) < int(share * _kind_size(task, kind)) and len(out) < n:
                taken.add(q)
                count[kind] = count.get(kind, 0) + 1
                out.append((q, a))
    return out


def training_pairs(task, rng, n, digits, held_out):
    """n training pairs, none of whose questions is in the held-out set."""
    out = []
    while len(out) < n:
        out += [p for p in make_pairs(task, rng, n, digits) if p[0] not in held_out]
    return out[:n]
