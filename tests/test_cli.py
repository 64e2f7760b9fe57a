"""The command line: the self-check runs, checks every quantity and exits 0; train, sample, task, gradflow and bench
run end to end on small sizes; bad paths and options give clear errors."""

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest

from pylstm.cli import main


def test_selfcheck_passes(capsys):
    assert main(["--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "self-check passed" in out and out.count(" ok") == 20 and "FAIL" not in out
    import pylstm

    assert out.startswith(f"isa: {pylstm.config()['isa']}\n")  # the configuration comes first


def test_module_entry_point_and_bad_option():
    r = subprocess.run([sys.executable, "-m", "pylstm", "--rounds", "0"], capture_output=True, text=True,
                       cwd="/", timeout=120)
    assert r.returncode == 2 and "--rounds: must be > 0" in r.stderr


def test_console_script_is_installed():
    import shutil
    exe = shutil.which("pylstm", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the pylstm console script is not installed beside this Python"
    r = subprocess.run([exe, "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "self-check passed" in r.stdout


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pylstm", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_train_sample_gradflow_end_to_end(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    r = _run("train", "--data", str(text), "--steps", "60", "--hidden", "32", "--seq-len", "16", "--batch", "8",
             "--eval-every", "30", "--lr", "0.01", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "validation loss" in r.stdout and "below" in r.stdout
    assert (tmp_path / "out" / "lstm.npz").exists()
    r = _run("sample", "--checkpoint", str(tmp_path / "out" / "lstm.npz"), "--prompt", "the ", "--length", "40",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the ") and len(r.stdout.strip()) >= 40
    r = _run("sample", "--checkpoint", str(tmp_path / "out" / "lstm.npz"), "--prompt", "thé €", "--length", "5",
             cwd=tmp_path)
    assert r.returncode == 0 and "vocabulary has no 'é', '€'" in r.stderr, r.stderr
    r = _run("gradflow", "--length", "30", "--hidden", "8", "--batch", "2", "--out", str(tmp_path / "out"),
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == [0, 1, 2, 5, 10, 20, 29]
    # The additive path of the LSTM with an open forget gate keeps more gradient 29 steps back than the plain RNN.
    assert float(rows[-1][-1]) > float(rows[-1][1])


@pytest.mark.parametrize("task", ["adding", "copy"])
def test_task_trains_every_cell_and_prints_a_row_each(tmp_path, task):
    r = _run("task", task, "--length", "6", "--steps", "40", "--hidden", "8", "--eval-every", "20", "--copies", "2",
             "--out", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    if importlib.util.find_spec("matplotlib"):  # the `plot` extra; the README's test command does not install it
        assert (tmp_path / f"task-{task}.png").exists()
    else:
        assert 'pip install "pylstm[plot]"' in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.split()[:1] in (["lstm"], ["gru"], ["rnn"])]
    assert [row[0] for row in rows] == ["lstm", "gru", "rnn"]
    assert all(float(row[1]) > 0 and row[2].endswith("%") for row in rows)
    r = _run("task", task, "--cell", "gru", "--length", "6", "--steps", "5", "--hidden", "8", "--out", str(tmp_path),
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [line.split()[0] for line in r.stdout.splitlines() if line.split()[:1] in (["lstm"], ["gru"], ["rnn"])]
    assert rows == ["gru"]


def test_bench_prints_a_row_per_cell_and_pass(tmp_path):
    r = _run("bench", "--length", "5", "--batch", "2", "--hidden", "8", "--rounds", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("isa: ") and "\nblas: OpenBLAS" in r.stdout  # the configuration comes first
    rows = [line.split() for line in r.stdout.splitlines() if line.split()[:1] in (["lstm"], ["gru"], ["rnn"])]
    assert [(row[0], row[1]) for row in rows] == [(c, p) for c in ("lstm", "gru", "rnn") for p in ("infer", "train")]
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)
    for row in rows:  # torch and ONNX Runtime columns, when installed (CI installs both); ORT times inference only
        if importlib.util.find_spec("torch"):
            assert float(row[4]) > 0
        if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
            assert (float(row[5]) > 0) if row[1] == "infer" else row[5] == "-"


def test_cli_errors_are_clear(tmp_path):
    r = _run("train", "--data", str(tmp_path / "missing.txt"), cwd=tmp_path)
    assert r.returncode != 0 and "is not a readable file" in r.stderr
    r = _run("sample", "--checkpoint", str(tmp_path / "none.npz"), cwd=tmp_path)
    assert r.returncode != 0 and "is not a file" in r.stderr
    r = _run("train", "--cell", "transformer", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = _run("train", "--hidden", "0", cwd=tmp_path)
    assert r.returncode == 2 and "must be > 0" in r.stderr
    small = tmp_path / "small.txt"
    small.write_text("hello world, this is a small text. " * 20)  # 700 characters
    r = _run("train", "--data", str(small), "--steps", "2", cwd=tmp_path)
    assert r.returncode != 0 and "32 streams (--batch) of 64-step chunks (--seq-len) need about 2,192" in r.stderr
    r = _run("train", "--data", str(small), "--steps", "2", "--batch", "4", "--seq-len", "16", "--hidden", "8",
             "--out", str(tmp_path / "small-out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _run("task", "sorting", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = _run("task", "adding", "--length", "1", "--steps", "1", cwd=tmp_path)
    assert r.returncode != 0 and "--length must be >= 2" in r.stderr
    r = _run("task", "adding", "--seed", "-1", cwd=tmp_path)
    assert r.returncode == 2 and "--seed: must be >= 0" in r.stderr
    for sub in ("selfcheck", "train", "sample", "task", "seq2seq", "gradflow", "bench"):
        r = _run(sub, "--help", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(f"usage: pylstm {sub}") and "--seed" in r.stdout
    r = _run("inspect", "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: pylstm inspect") and "--checkpoint" in r.stdout


@pytest.mark.parametrize("typo, suggestion", [("trian", "train"), ("seq2sq", "seq2seq"), ("inspcet", "inspect"),
                                              ("selfchek", "selfcheck"), ("transformer", None)])
def test_an_unknown_subcommand_is_an_error_that_lists_the_subcommands(typo, suggestion):
    r = _run(typo, "--help", cwd="/")
    assert r.returncode == 2 and r.stdout == ""
    assert f"pylstm: error: argument command: invalid choice: '{typo}' (choose from selfcheck, train, sample, task, " \
           "seq2seq, inspect, gradflow, activations, forecast, bench)" in r.stderr
    if suggestion:
        assert f"did you mean '{suggestion}'?" in r.stderr
    else:
        assert "did you mean" not in r.stderr


def test_top_level_help_lists_every_subcommand():
    r = _run("--help", cwd="/")
    assert r.returncode == 0 and r.stdout.startswith("usage: pylstm")
    for sub in ("selfcheck", "train", "sample", "task", "seq2seq", "inspect", "gradflow", "activations", "forecast",
                "bench"):
        assert f"    {sub} " in r.stdout


def test_without_matplotlib_the_tables_print_and_say_how_to_get_pictures(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from pylstm.cli import main; "
            "sys.exit(main(['task', 'adding', '--cell', 'rnn', '--length', '4', '--steps', '3', '--out', "
            f"{str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'pip install "pylstm[plot]"' in r.stdout and "rnn " in r.stdout
    assert not (tmp_path / "task-adding.png").exists()


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    # As `pylstm gradflow | head -1`: the reader closes the pipe before the table is written.
    with subprocess.Popen([sys.executable, "-m", "pylstm", "gradflow", "--length", "30", "--hidden", "8", "--batch",
                           "2", "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          cwd=tmp_path) as p:
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 1 and "Traceback" not in err, err


def test_the_version_has_one_source():
    import importlib.metadata

    import pylstm

    assert importlib.metadata.version("pylstm") == pylstm.__version__  # pyproject reads it from pylstm/__init__.py


def test_activations_prints_measured_numbers_and_a_picture(tmp_path):
    """`pylstm activations` (issue 25): every number comes from the run. Sigmoid's derivative peaks at 1/4 and tanh's
    at 1; sigmoid's gradient dies fastest with distance; its W_hh gradient rows share one sign far more often."""
    r = _run("activations", "--steps", "300", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()
            if line.split()[:1] and line.split()[0] in ("tanh", "sigmoid", "relu")}
    assert set(rows) == {"tanh", "sigmoid", "relu"}
    # per row: max φ', at a, the reach at 3 distances, train and held-out MSE, same-sign share, cosine
    value = {name: [float(v) for v in row[1:]] for name, row in rows.items()}
    assert abs(value["sigmoid"][0] - 0.25) < 1e-6 and abs(value["tanh"][0] - 1) < 1e-6
    assert value["sigmoid"][4] < value["tanh"][4] / 100  # the gradient 9 steps back
    assert value["sigmoid"][7] > 0.5 > value["tanh"][7]  # the same-sign share
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "out" / "activations.png").stat().st_size > 10_000
    r = _run("activations", "--length", "1", "--out", str(tmp_path / "bad"), cwd=tmp_path)
    assert r.returncode != 0 and "--length must be at least 2" in r.stderr and not (tmp_path / "bad").exists()


def test_activations_compare_is_reproducible_and_sigmoid_learns_least():
    """The comparison itself: the same seed gives the same numbers; with the defaults' task and 2000 steps, sigmoid's
    held-out loss stays at the no-memory level while tanh's drops below it."""
    from pylstm.cli.activations import compare
    from pylstm.tasks import no_memory_score

    a, b = compare(steps=2000), compare(steps=2000)
    for name in a:
        assert np.array_equal(a[name]["losses"], b[name]["losses"]) and a[name]["held_out"] == b[name]["held_out"]
    baseline = no_memory_score("adding")[0]
    assert a["sigmoid"]["held_out"] > 0.9 * baseline and a["tanh"]["held_out"] < 0.9 * baseline


def test_train_quantize_reports_the_quantized_validation_loss(tmp_path):
    import pylstm

    dtypes = ["int8"] + (["bfloat16"] if pylstm.config()["bf16"] != "none" else [])
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    r = _run("train", "--data", str(text), "--steps", "30", "--hidden", "32", "--seq-len", "16", "--batch", "8",
             "--eval-every", "30", "--lr", "0.01", *[a for d in dtypes for a in ("--quantize", d)], "--out",
             str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for dtype in dtypes:
        line = next(s for s in r.stdout.splitlines() if s.startswith(f"{dtype} (pylstm.quantize"))
        low, exact, change = (float(v) for v in re.findall(r"[-+]?\d+\.\d+", line.split("validation loss")[1]))
        assert abs(low - exact) < 0.05 and change == pytest.approx(low - exact, abs=2e-4)
    r = _run("train", "--data", str(text), "--cell", "gru", "--quantize", "int8", "--out", str(tmp_path / "gru"),
             cwd=tmp_path)
    assert r.returncode != 0 and "--quantize needs --cell lstm" in r.stderr and not (tmp_path / "gru").exists()
