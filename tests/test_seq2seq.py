"""pylstm seq2seq: the tasks' data, the masked loss against finite differences, learning on a small problem,
interruption and bit-for-bit resume, and the command's errors."""

import signal

import numpy as np
import pytest
from conftest import numerical_gradient

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


def test_scores_and_baseline():
    assert s2.scores(["12", "7", "100"], ["12", "8", "10"]) == (1 / 3, 4 / 6)  # characters right: 2 + 0 + 2 of 2 + 1 + 3
    exact, char = s2.baseline(["10", "12", "13"], ["12", "99"])
    assert exact == 0.0 and 0 < char < 1


def test_learns_to_reverse():
    """A small model learns to reverse 3-letter strings well above the baseline within a few hundred steps."""
    m = s2.Seq2Seq("reverse", hidden=48, digits=3, seed=0, lr=1e-2)
    rng = np.random.default_rng(0)
    held = s2.make_pairs("reverse", np.random.default_rng(1), 200, 3)
    for _ in range(300):
        m.gradients(*zip(*s2.make_pairs("reverse", rng, 64, 3)))
        m.opt.step()
    exact, char = s2.scores(m.answer([q for q, _ in held]), [a for _, a in held])
    base = s2.baseline([a for _, a in s2.make_pairs("reverse", rng, 1000, 3)], [a for _, a in held])
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


def test_command_errors(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["seq2seq", "--task", "divide"])
    with pytest.raises(SystemExit, match="no such file"):
        cli.main(SMALL + ["--out", str(tmp_path), "--resume"])
    with pytest.raises(SystemExit):
        cli.main(["seq2seq", "--hidden", "0"])
