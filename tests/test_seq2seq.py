"""pylstm seq2seq: the tasks' data, the masked loss against finite differences, learning on a small problem,
interruption and bit-for-bit resume, and the command's errors."""

import re
import signal

import numpy as np
import pytest
from helpers import numerical_gradient

from pylstm import cli, optim
from pylstm import seq2seq as s2

SMALL = ["seq2seq", "--digits", "2", "--hidden", "32", "--batch", "32", "--held-out", "100", "--eval-every", "20",
         "--checkpoint-every", "10"]


def test_tasks_make_right_answers():
    rng = np.random.default_rng(0)
    for q, a in s2.make_pairs("add", rng, 200, 3):
        x, y = q.split("+")
        assert int(a) == int(x) + int(y) and len(x) <= 3 and len(y) <= 3
    for q, a in s2.make_pairs("reverse", rng, 50, 5):
        assert a == q[::-1] and 1 <= len(q) <= 5
    for q, a in s2.make_pairs("sort", rng, 50, 5):
        assert a == "".join(sorted(q))


def test_masked_cross_entropy_gradient():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 2, 5))
    target = rng.integers(0, 5, (3, 2))
    mask = np.array([[1, 1], [1, 0], [0, 0]], float)
    _, d = s2.masked_cross_entropy(logits, target, mask)
    num = numerical_gradient(lambda: s2.masked_cross_entropy(logits, target, mask)[0], logits)
    assert np.max(np.abs(num - d)) < 1e-8
    assert not d[2].any()  # masked positions get no gradient


@pytest.mark.parametrize("task, digits, n", [("add", 3, 2000), ("reverse", 10, 2000), ("sort", 3, 40)])
def test_held_out_questions_are_distinct_and_leave_every_kind_to_training(task, digits, n):
    held = s2.held_out_pairs(task, np.random.default_rng(0), n, digits)
    questions = [q for q, _ in held]
    assert len(held) == n and len(set(questions)) == n
    kinds = {}
    for q in questions:
        kinds[s2._kind(task, q)] = kinds.get(s2._kind(task, q), 0) + 1
    for kind, count in kinds.items():
        assert count <= 0.1 * s2._kind_size(task, kind), (kind, count)
    # Every kind of question still reaches training, the smallest ones too.
    train = s2.training_pairs(task, np.random.default_rng(1), 20000, digits, set(questions))
    assert not set(q for q, _ in train) & set(questions)
    assert {s2._kind(task, q) for q, _ in train} >= set(kinds)
    assert s2._kind_size("add", (1, 1)) == 100 and s2._kind_size("add", (2, 3)) == 90 * 900
    assert s2.held_out_room("reverse", 2) == 1 + 10 and s2.held_out_room("add", 2) == 10 + 90 + 90 + 810
    with pytest.raises(ValueError, match="--held-out 100 is too many for reverse with --digits 2"):
        s2.held_out_pairs("reverse", np.random.default_rng(0), 100, 2)


def test_scores_and_baseline():
    # characters right: 2 + 0 + 2 of 2 + 1 + 3
    assert s2.scores(["12", "7", "100"], ["12", "8", "10"]) == (1 / 3, 4 / 6)
    exact, char = s2.baseline(["10", "12", "13"], ["12", "99"])
    assert exact == 0.0 and 0 < char < 1


def test_attention_backward_against_finite_differences():
    rng = np.random.default_rng(2)
    att = s2.LuongAttention(4, seed=1, dtype="float64")
    dec, enc = rng.standard_normal((3, 2, 4)), rng.standard_normal((5, 2, 4))
    weights = rng.standard_normal((3, 2, 4))

    def loss():
        return float((att(dec, enc) * weights).sum())

    loss()
    att.combine.zero_grad()
    ddec, denc = att.backward(weights)
    assert np.max(np.abs(ddec - numerical_gradient(loss, dec))) < 1e-8
    assert np.max(np.abs(denc - numerical_gradient(loss, enc))) < 1e-8
    with att.combine.edit_parameters() as p:
        for key in ("weight", "bias"):
            num = numerical_gradient(loss, p[key])
            assert np.max(np.abs(att.combine.grads[key] - num)) < 1e-8, key


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_model_gradients_with_attention_against_finite_differences(cell):
    m = s2.Seq2Seq("add", cell, hidden=5, digits=2, seed=3, clip=1e9, attention=True, dtype="float64")
    pairs = s2.make_pairs("add", np.random.default_rng(4), 3, 2)
    q = m.encode_questions([a for a, _ in pairs])
    dec_in, target, mask = m.encode_answers([b for _, b in pairs])
    m.gradients(*zip(*pairs))
    rng = np.random.default_rng(5)
    for name, module in m.modules.items():
        with module.edit_parameters() as p:
            for key, value in p.items():
                for idx in [tuple(rng.integers(0, n) for n in value.shape) for _ in range(3)]:
                    orig = value[idx]
                    value[idx] = orig + 1e-6
                    up = m._loss(q, dec_in, target, mask, backward=False)
                    value[idx] = orig - 1e-6
                    down = m._loss(q, dec_in, target, mask, backward=False)
                    value[idx] = orig
                    assert abs(module.grads[key][idx] - (up - down) / 2e-6) < 1e-7, (name, key, idx)


@pytest.mark.parametrize("attention", [False, True])
def test_greedy_decoding_agrees_with_the_teacher_forced_pass(attention):
    """The stream (one step at a time) and the whole-sequence pass give the same next character, so the decoder's
    streaming path with attention computes what training trains."""
    m = s2.Seq2Seq("add", hidden=16, digits=2, seed=6, attention=attention, dtype="float64")
    questions = [q for q, _ in s2.make_pairs("add", np.random.default_rng(7), 20, 2)]
    written = m.answer(questions)
    T = m.a_len + 1
    dec_in = np.zeros((T, len(questions)), np.int64)
    for n, a in enumerate(written):
        ids = [m.vocab.index[c] for c in s2.START + a][:T]
        dec_in[:len(ids), n] = ids
    enc_out, state = m.encoder(m._eye[m.encode_questions(questions)])
    out, _ = m.decoder(m._eye[dec_in], state)
    logits = m.head(out if m.attention is None else m.attention(out, enc_out))
    for n, a in enumerate(written):
        want = [m.vocab.index[c] for c in a + s2.END][:T]
        assert list(logits[:len(want), n].argmax(-1)) == want, (questions[n], a)


@pytest.mark.parametrize("attention, digits", [(False, 3), (True, 5)])
def test_learns_to_reverse(attention, digits):
    """A small model learns to reverse short strings well above the baseline within a few hundred steps; with
    attention, longer ones."""
    m = s2.Seq2Seq("reverse", hidden=48, digits=digits, seed=0, lr=1e-2, attention=attention)
    rng = np.random.default_rng(0)
    held = s2.make_pairs("reverse", np.random.default_rng(1), 200, digits)
    for _ in range(300):
        m.gradients(*zip(*s2.make_pairs("reverse", rng, 64, digits)))
        m.opt.step()
    exact, char = s2.scores(m.answer([q for q, _ in held]), [a for _, a in held])
    base = s2.baseline([a for _, a in s2.make_pairs("reverse", rng, 1000, digits)], [a for _, a in held])
    assert exact > 0.5 and char > base[1] + 0.3, (exact, char, base)


def interrupt_at(monkeypatch, k):
    real, calls = optim.clip_grad_norm, [0]

    def clip(*a, **kw):
        calls[0] += 1
        if calls[0] == k:
            signal.raise_signal(signal.SIGINT)
        return real(*a, **kw)

    monkeypatch.setattr(optim, "clip_grad_norm", clip)


@pytest.mark.parametrize("k", [7, 20])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch, k, capsys):
    args = SMALL + ["--steps", "30"]
    assert cli.main(args + ["--out", str(tmp_path / "a")]) == 0
    signal_out = tmp_path / "b"
    interrupt_at(monkeypatch, k)
    assert cli.main(args + ["--out", str(signal_out)]) == 130
    monkeypatch.undo()
    assert "--resume" in capsys.readouterr().out
    assert cli.main(args + ["--out", str(signal_out), "--resume"]) == 0
    with np.load(tmp_path / "a" / "seq2seq-add.npz") as f, np.load(signal_out / "seq2seq-add.npz") as g:
        for key in f.files:
            assert np.array_equal(f[key], g[key]), key
    if k == 7:  # a finished run resumed at its own --steps says so and leaves the checkpoint alone
        before = (signal_out / "seq2seq-add.npz").read_bytes()
        capsys.readouterr()
        assert cli.main(args + ["--out", str(signal_out), "--resume"]) == 0
        assert "the run is already at step 30: raise --steps (now 30) to train on" in capsys.readouterr().out
        assert (signal_out / "seq2seq-add.npz").read_bytes() == before


@pytest.mark.parametrize("task, held", [("sort", 111), ("reverse", 111), ("add", 2000)])
def test_every_task_runs_with_its_defaults(task, held, tmp_path, capsys):
    assert cli.main(["seq2seq", "--task", task, "--steps", "2", "--hidden", "8", "--batch", "8", "--eval-every", "2",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{held} distinct held-out questions (at most 10 % of each kind)" in out and "held-out exact match" in out


def test_command_errors(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["seq2seq", "--task", "divide"])
    with pytest.raises(SystemExit, match="no such file"):
        cli.main(SMALL + ["--out", str(tmp_path), "--resume"])
    with pytest.raises(SystemExit):
        cli.main(["seq2seq", "--hidden", "0"])
    with pytest.raises(SystemExit, match="pylstm seq2seq: --held-out 100 is too many for reverse with --digits 2: "
                       "at most 11 distinct questions"):
        cli.main(["seq2seq", "--task", "reverse", "--digits", "2", "--held-out", "100", "--out", str(tmp_path)])


def test_quantize_scores_the_trained_model_again_quantized(tmp_path, capsys):
    """--quantize int8: the held-out scores of the same trained model with its encoder and decoder through
    pylstm.quantize, printed beside float32's; the float32 model is left as it was (its checkpoint is the same as
    without --quantize)."""
    args = SMALL + ["--steps", "40", "--out"]
    assert cli.main(args + [str(tmp_path / "a"), "--quantize", "int8"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("int8 (pylstm.quantize"))
    exact8, char8, exact32, char32 = (float(v) for v in re.findall(r"\d+\.\d+", line.split("held-out exact")[1]))
    assert abs(char8 - char32) <= 10 and 0 <= exact8 <= 100
    assert cli.main(args + [str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert (tmp_path / "a" / "seq2seq-add.npz").read_bytes() == (tmp_path / "b" / "seq2seq-add.npz").read_bytes()
    with pytest.raises(SystemExit, match="--quantize needs --cell lstm"):
        cli.main(SMALL + ["--cell", "gru", "--quantize", "int8", "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()
