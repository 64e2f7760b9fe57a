"""docs/tour.md runs as written: every ```python block in order in one namespace, every ```bash line as a command in
one folder (the commands that train with fewer --steps), and each block's key result is checked. A block added to
the page without a check here fails the test."""

import contextlib
import importlib.util
import io
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "tour.md"

# What the test adds to a command that trains, so that the tour stays well inside CI's time (the page shows the full
# commands' output). argparse keeps the last value of an option, so these override the page's.
SHORTER = {"train": ["--steps", "80", "--eval-every", "40", "--checkpoint-every", "40"],
           "task": ["--steps", "600", "--eval-every", "200"],
           "forecast": ["--steps", "300"],
           "seq2seq": ["--steps", "600", "--eval-every", "300"]}


def _blocks():
    """[(language, code)] of the page's fenced blocks that run (python, bash), in order."""
    return [(lang, code) for lang, code in re.findall(r"```(\w+)\n(.*?)```", PAGE.read_text(), re.S)
            if lang in ("python", "bash")]


def _floats(text):
    return [float(v) for v in re.findall(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?", text)]


def _row(out, label):
    """The numbers on the printed row that starts with `label`."""
    line = next(line for line in out.splitlines() if line.startswith(label))
    return _floats(line[len(label):])


def check_rnn_equation(out, scope, folder):
    a, b = _floats(out)
    assert a < 1e-12 and b < 1e-12, out


def check_gradflow(out, scope, folder):
    rows = {int(line.split()[0]): [float(v) for v in line.split()[1:]] for line in out.splitlines()
            if line.split() and line.split()[0].isdigit()}
    assert rows[50][0] < 1e-10 < 1e-3 < rows[199][4], out  # the RNN's gradient dies; the LSTM's with +3 does not


def check_lstm_lines(out, scope, folder):
    assert "c = f * c + i * g" in out and "i = sigmoid(" in out and "h = o * tc" in out, out


def check_train_and_inspect(out, scope, folder):
    # 80 steps already take the validation loss well below the unigram entropy (3.29 nats/char): it learns.
    below = float(re.search(r"validation loss [\d.]+ nats/char against the unigram entropy [\d.]+ \(below it by "
                            r"([-\d.]+)\)", out).group(1))
    assert below > 0.1, out
    assert "units most correlated with each feature" in out and "gate saturation" in out, out
    assert (folder / "pylstm-out" / "inspect.html").stat().st_size > 10_000


def check_adding(out, scope, folder):
    # After 600 of the page's 3000 steps the GRU has begun to solve the task (MSE 0.004 on 2026-12-05, at both ISA
    # levels), while the RNN stays at the no-memory MSE, 1/6.
    mse = {cell: _row(out, cell)[0] for cell in ("lstm", "gru", "rnn")}
    assert mse["gru"] < mse["rnn"] / 5 and mse["rnn"] > 0.12, out
    assert (folder / "pylstm-out" / "task-adding.npz").exists()


def check_finite_differences(out, scope, folder):
    (err,) = _floats(out)
    assert err < 1e-6 and scope["dx"].shape == (7, 2, 3), out


def check_activations(out, scope, folder):
    tanh, sigmoid = _row(out, "tanh"), _row(out, "sigmoid")
    assert abs(sigmoid[0] - 0.25) < 1e-6 and abs(tanh[0] - 1) < 1e-6
    assert sigmoid[4] < tanh[4] / 100 and sigmoid[7] > 0.5 > tanh[7], out  # reach 9 steps back; same-sign share


def check_forecast(out, scope, folder):
    lstm, seasonal = _row(out, "LSTM"), _row(out, "seasonal naive (52)")
    assert lstm[0] < seasonal[0], out  # MASE; beaten already after 300 steps
    assert (folder / "pylstm-out" / "forecast-co2.csv").exists()


def check_seq2seq(out, scope, folder):
    m = re.search(r"held-out exact match ([\d.]+) %, per character ([\d.]+) % \(baseline ([\d.]+) / ([\d.]+) %\)", out)
    exact, char, base_exact, base_char = map(float, m.groups())
    assert exact > base_exact and char > base_char + 10, out  # 600 steps: 4.4 % and 40.7 % against 0.1 and 15.1


CHECKS = [check_rnn_equation, check_gradflow, check_lstm_lines, check_train_and_inspect, check_adding,
          check_finite_differences, check_activations, check_forecast, check_seq2seq]


def _command(line, folder):
    words = shlex.split(line)
    assert words[0] == "pylstm", line
    r = subprocess.run([sys.executable, "-m", "pylstm", *words[1:], *SHORTER.get(words[1], [])],
                       capture_output=True, text=True, cwd=folder, timeout=600)
    assert r.returncode == 0, f"{line}: {r.stderr}"
    return r.stdout


def test_every_block_of_the_tour_runs_and_shows_its_result(tmp_path):
    pytest.importorskip("statsmodels")  # `pylstm forecast`'s default series; the test extra installs it
    blocks = _blocks()
    assert len(blocks) == len(CHECKS), f"{len(blocks)} runnable blocks on the page, {len(CHECKS)} checks here"
    scope = {}
    for (lang, code), check in zip(blocks, CHECKS):
        if lang == "python":
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(code, str(PAGE), "exec"), scope)  # noqa: S102
            out = buf.getvalue()
        else:
            out = "".join(_command(line, tmp_path) for line in code.splitlines() if line.strip())
        check(out, scope, tmp_path)
    if importlib.util.find_spec("matplotlib"):
        for picture in ("gradflow", "lstm-loss", "inspect", "task-adding", "activations", "forecast-co2",
                        "seq2seq-add"):
            assert (tmp_path / "pylstm-out" / f"{picture}.png").exists(), picture
