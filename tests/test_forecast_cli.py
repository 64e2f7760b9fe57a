"""`pylstm forecast` (issue 25): with its defaults it beats seasonal naive on its default series; on another real
monthly series given as a CSV it beats naive and writes one row per held-out step, the times as read; the held-out
tail never reaches training; --resume continues bit for bit; bad files are one-line errors that write nothing."""

import csv
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

# The [data] extra; the test extra installs it. The tests of bad input do not need it.
needs_statsmodels = pytest.mark.skipif(importlib.util.find_spec("statsmodels") is None,
                                       reason="statsmodels is not installed (pip install \".[data]\")")


def _run(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "pylstm", "forecast", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env=env)


def _scores(stdout):
    """{row label: (MASE, sMAPE)} from the printed table."""
    out = {}
    for line in stdout.splitlines():
        parts = line.rsplit(None, 2)
        if len(parts) == 3:
            try:
                out[parts[0].strip()] = (float(parts[1]), float(parts[2]))
            except ValueError:
                pass
    return out


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _elnino_csv(path, times=None):
    """statsmodels' El Niño sea temperatures (monthly, 1950-2010) as a CSV file of the user's own."""
    from pylstm.data import builtin_series

    s = builtin_series("elnino")
    times = times or s.times
    path.write_text("month,temperature\n" + "".join(f"{t},{float(v)!r}\n" for t, v in zip(times, s.values)))
    return s


@needs_statsmodels
def test_the_default_beats_seasonal_naive_on_the_default_series(tmp_path):
    r = _run("--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "series co2:" in r.stdout and "filled 59 missing value(s) inside the series" in r.stdout
    s = _scores(r.stdout)
    assert {"LSTM", "naive", "seasonal naive (52)", "linear AR(52)"} <= set(s)
    assert s["LSTM"][0] < s["seasonal naive (52)"][0], r.stdout
    assert "% below seasonal naive's" in r.stdout
    rows = _rows(tmp_path / "out" / "forecast-co2.csv")
    assert len(rows) == 229 and list(rows[0]) == ["time", "truth", "forecast", "naive", "seasonal_naive", "linear_ar"]
    assert rows[-1]["time"] == "2001-12-29"
    truth, fc = (np.array([float(row[k]) for row in rows]) for k in ("truth", "forecast"))
    # The printed MASE is the CSV's errors over the in-sample seasonal-naive scale.
    from pylstm.data import builtin_series
    from pylstm.forecasting import mase

    y = builtin_series("co2").values
    assert np.allclose(truth, y[-229:]) and mase(truth, fc, y[:-229], 52) == pytest.approx(s["LSTM"][0], abs=1e-3)


@needs_statsmodels
def test_another_monthly_series_from_a_csv_beats_naive_with_its_times_as_read(tmp_path):
    times = [f"{m} {1950 + i // 12}" for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                                             "Sep", "Oct", "Nov", "Dec"] * 61)]
    _elnino_csv(tmp_path / "sst.csv", times)
    r = _run("--data", "sst.csv", "--season", "12", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    s = _scores(r.stdout)
    assert s["LSTM"][0] < s["naive"][0], r.stdout
    rows = _rows(tmp_path / "out" / "forecast-sst.csv")
    assert len(rows) == 74 and [row["time"] for row in rows] == times[-74:]  # default test: 10 % of 732
    assert (tmp_path / "out" / "forecast-sst.npz").exists()


@needs_statsmodels
def test_the_held_out_tail_never_reaches_training(tmp_path):
    """Two files that differ only in their held-out tail (the last 74 steps, tripled in one): training (its loss
    curve), the model's and the baselines' first block of forecasts, made from the history before the tail, are the
    same."""
    s = _elnino_csv(tmp_path / "a.csv")
    changed = s.values.copy()
    changed[-74:] *= 3
    (tmp_path / "b.csv").write_text("month,t\n" + "".join(f"{t},{float(v)!r}\n" for t, v in zip(s.times, changed)))
    for name in ("a", "b"):
        r = _run("--data", f"{name}.csv", "--steps", "60", "--out", "out", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    a, b = (_rows(tmp_path / "out" / f"forecast-{n}.csv") for n in ("a", "b"))
    first = 12  # the first block: --horizon defaults to the season
    for column in ("forecast", "naive", "seasonal_naive", "linear_ar"):
        assert [row[column] for row in a[:first]] == [row[column] for row in b[:first]], column
        assert [row[column] for row in a[first:]] != [row[column] for row in b[first:]], column
    losses = [np.load(tmp_path / "out" / f"forecast-{n}.npz")["resume/history/loss"] for n in ("a", "b")]
    assert len(losses[0]) == 60 and np.array_equal(*losses)


@needs_statsmodels
def test_resume_continues_bit_for_bit(tmp_path):
    _elnino_csv(tmp_path / "sst.csv")
    r = _run("--data", "sst.csv", "--steps", "60", "--checkpoint-every", "20", "--out", "whole", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _run("--data", "sst.csv", "--steps", "30", "--out", "split", cwd=tmp_path).returncode == 0
    r = _run("--data", "sst.csv", "--steps", "60", "--resume", "--out", "split", cwd=tmp_path)
    assert r.returncode == 0 and "resuming from" in r.stdout and "at step 30" in r.stdout, r.stderr
    whole, split = (tmp_path / d / "forecast-sst.csv" for d in ("whole", "split"))
    assert whole.read_text() == split.read_text()
    r = _run("--data", "sst.csv", "--steps", "60", "--resume", "--hidden", "8", "--out", "split", cwd=tmp_path)
    assert r.returncode == 1 and "hidden" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    text = (tmp_path / "sst.csv").read_text().splitlines()
    (tmp_path / "sst.csv").write_text("\n".join(text[:-1]) + "\n")  # the same file less its last line
    r = _run("--data", "sst.csv", "--steps", "60", "--resume", "--out", "split", cwd=tmp_path)
    assert r.returncode == 1 and "series_crc32" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, args, message", [
    ("", (), "the file is empty"),
    ("t,v\n", (), "has a header row but no data"),
    ("t,v\n2000-01,1\n2000-02,abc\n", (), "'abc' in column 'v' is not a number"),
    ("t,v\n" + "".join(f"{2000 + i // 12}-{i % 12 + 1:02d},{i}\n" for i in range(30)), (), "30 steps are too few"),
    ("t,v\n" + "".join(f"{i},{np.sin(i)}\n" for i in range(200)), (), "give --season (1 for none)"),
    ("t,v\n" + "".join(f"{i},{np.sin(i)}\n" for i in range(200)), ("--column", "w"), "no column 'w'"),
    ("t,v\n" + "".join(f"{i},5\n" for i in range(200)), ("--season", "1"), "MASE is undefined"),
])
def test_bad_files_are_one_line_errors_and_write_nothing(tmp_path, text, args, message):
    (tmp_path / "bad.csv").write_text(text)
    r = _run("--data", "bad.csv", *args, "--out", "out", cwd=tmp_path)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("pylstm forecast: error: bad.csv")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (("--column", "v"), "--column needs --data"),
    (("--series", "nile", "--data", "ok.csv"), "give --series or --data, not both"),
    (("--data", "ok.csv", "--season", "1", "--window", "1"), "--window must be at least 2"),
    (("--data", "ok.csv", "--season", "1", "--test", "200"), "--test 200 leaves nothing to train on (200 steps)"),
    (("--data", "ok.csv", "--season", "90", "--horizon", "6", "--window", "12"), "shorten --season (90) or --test"),
    (("--data", "ok.csv", "--window", "0"), "argument --window: must be > 0, got 0"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path, args, message):
    (tmp_path / "ok.csv").write_text("t,v\n" + "".join(f"{i},{np.sin(i)}\n" for i in range(200)))
    r = _run(*args, "--out", "out", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert message in lines[-1] and "Traceback" not in r.stderr, r.stderr
    # ours: one line, exit 1; argparse's: the usage, then one line, exit 2
    assert r.returncode == 1 and len(lines) == 1 or r.returncode == 2 and lines[0].startswith("usage:")
    assert not (tmp_path / "out").exists()


def test_without_statsmodels_it_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['statsmodels'] = None; from pylstm.cli import main; "
            "sys.exit(main(['forecast', '--out', 'out']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and 'pip install "pylstm[data]"' in r.stderr and "--data FILE.csv" in r.stderr
    assert not (tmp_path / "out").exists()


@needs_statsmodels
def test_the_builtin_series_read_through_statsmodels():
    from pylstm.data import BUILTIN, builtin_series

    seasons = {}
    for name in BUILTIN:
        s = builtin_series(name)
        assert np.isfinite(s.values).all() and len(s.times) == len(s.values) > 90
        seasons[name] = s.season
    assert seasons == {"co2": 52, "elnino": 12, "elec_equip": 12, "sunspots": 11, "nile": 1}


@needs_statsmodels
def test_quantize_scores_the_same_model_quantized(tmp_path):
    r = _run("--steps", "60", "--quantize", "int8", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = next(s for s in r.stdout.splitlines() if s.startswith("int8 LSTM"))
    mase8 = float(line.split()[2])
    assert abs(mase8 - _scores(r.stdout)["LSTM"][0]) < 0.1
    r = _run("--cell", "gru", "--quantize", "int8", "--out", "gru", cwd=tmp_path)
    assert r.returncode == 1 and "--quantize needs --cell lstm" in r.stderr and not (tmp_path / "gru").exists()
