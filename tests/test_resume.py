"""Training that loses nothing: atomic writes, clear errors for bad checkpoints, Ctrl-C and SIGTERM (in a real
subprocess too), bit-for-bit resume, and stopping on divergence."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pylstm
from pylstm import checkpoint, cli, nn, optim
from pylstm.checkpoint import Checkpoint, CheckpointError, WriteError

TEXT = "hello recurrent world. the quick brown fox jumps over the lazy dog. " * 300
SMALL = ["--hidden", "16", "--batch", "4", "--seq-len", "12", "--eval-every", "20", "--checkpoint-every", "10"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return str(path)


def train_args(corpus, out, steps, *more):
    return ["train", "--data", corpus, *SMALL, "--steps", str(steps), "--out", str(out), *more]


def arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def no_temporaries(folder):
    return [p for p in os.listdir(folder) if p.endswith(".tmp")] == []


# ---- atomic writes ----------------------------------------------------------------------------------------------
class DiskFull(OSError):
    pass


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.bin"
    checkpoint.atomic_write(target, lambda f: f.write(b"good"))

    def failing(f):
        f.write(b"half of the new cont")
        raise DiskFull(28, "No space left on device")

    with pytest.raises(WriteError, match=r"could not write .*f\.bin.*No space left.*unchanged"):
        checkpoint.atomic_write(target, failing)
    assert target.read_bytes() == b"good" and no_temporaries(tmp_path)

    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(target, interrupted)
    assert target.read_bytes() == b"good" and no_temporaries(tmp_path)


def test_nn_save_is_atomic_and_refuses_nan(tmp_path, monkeypatch):
    rnn, head = nn.recurrent_model("lstm", 3, 5, 3, seed=0)
    path = tmp_path / "m.npz"
    nn.save(path, {"rnn": rnn, "head": head})
    before = arrays(path)
    real = np.savez

    def savez_then_disk_full(f, **kw):
        real(f, **kw)  # most of the file is written...
        raise DiskFull(28, "No space left on device")  # ...and then the disk fills

    monkeypatch.setattr(np, "savez", savez_then_disk_full)
    with pytest.raises(WriteError, match="No space left"):
        nn.save(path, {"rnn": rnn, "head": head})
    monkeypatch.undo()
    assert no_temporaries(tmp_path)
    after = arrays(path)
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    with rnn.edit_parameters() as p:
        p["weight_hh_l0"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nn.save(path, {"rnn": rnn, "head": head})
    assert np.isfinite(arrays(path)["model/rnn/weight_hh_l0"]).all()


def test_the_loss_picture_is_written_atomically(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    target = tmp_path / "plot.png"
    target.write_bytes(b"old picture")

    def broken_savefig(self, *a, **k):
        raise DiskFull(28, "No space left on device")

    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(WriteError):
        cli._plot(str(target), {"a": ([0, 1], [1, 2])}, "x", "y", "t")
    assert target.read_bytes() == b"old picture" and no_temporaries(tmp_path)


def test_the_corpus_cache_is_written_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoint.os, "replace", lambda *a: (_ for _ in ()).throw(DiskFull(28, "full")))
    with pytest.raises(WriteError):
        cli.stdlib_docstrings(max_chars=5000)
    assert not any(p.name.startswith("stdlib") for p in (tmp_path / "cache" / "pylstm").iterdir())


# ---- loading bad checkpoints --------------------------------------------------------------------------------------
@pytest.fixture
def trained(tmp_path, corpus):
    out = tmp_path / "run"
    assert cli.main(train_args(corpus, out, 10)) == 0
    return out / "lstm.npz"


def bad_files(good, folder):
    data = good.read_bytes()
    files = {"truncated": data[:len(data) // 2], "corrupted": data[:3000] + bytes(200) + data[3200:],
             "not-npz": b"just some text\n", "empty": b""}
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.npz"
        paths[name].write_bytes(content)
    rnn, head = nn.recurrent_model("gru", 3, 4, 3, seed=0)
    paths["wrong-kind"] = folder / "other.npz"
    nn.save(paths["wrong-kind"], {"rnn": rnn, "head": head})
    return paths


def test_bad_checkpoints_are_clear_errors_and_load_nothing(trained, tmp_path, capsys):
    V = len(arrays(trained)["extra/vocab"])
    rnn, head = nn.recurrent_model("lstm", V, 16, V, seed=3)  # the sizes of `trained`
    before = {k: v.copy() for k, v in rnn.state_dict().items()}
    for name, path in bad_files(trained, tmp_path).items():
        with pytest.raises(CheckpointError, match=str(path.name)):
            nn.load(path, {"rnn": rnn, "head": head})
        assert all(np.array_equal(v, before[k]) for k, v in rnn.state_dict().items()), name
        with pytest.raises(SystemExit) as e:
            cli.main(["sample", "--checkpoint", str(path), "--length", "5"])
        assert str(path) in str(e.value) and "Traceback" not in str(e.value), name
    small = pylstm.LSTM(V, 8)
    with pytest.raises(CheckpointError, match="has shape"):
        nn.load(trained, {"rnn": small})
    assert nn.load(trained, {"rnn": rnn, "head": head})["cell"] == "lstm"  # the good one loads


def test_resume_refuses_other_options_and_other_files(trained, tmp_path, corpus):
    out = trained.parent
    with pytest.raises(SystemExit, match=r"other options.*hidden: checkpoint 16, now 32"):
        cli.main(train_args(corpus, out, 20, "--resume") + ["--hidden", "32"])
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    with pytest.raises(SystemExit, match="data: checkpoint"):
        cli.main(train_args(str(other), out, 20, "--resume"))
    with pytest.raises(SystemExit, match="no such file"):
        cli.main(train_args(corpus, tmp_path / "nowhere", 20, "--resume"))
    paths = bad_files(trained, tmp_path)
    os.replace(paths["truncated"], trained)
    with pytest.raises(SystemExit, match="truncated or corrupted"):
        cli.main(train_args(corpus, out, 20, "--resume"))


# ---- interruption and bit-for-bit resume ----------------------------------------------------------------------------
def signal_at_step(monkeypatch, k, signum=signal.SIGINT):
    """Delivers a real signal to this process during step k (inside the gradient clipping)."""
    real, calls = optim.clip_grad_norm, [0]

    def clip(*a, **kw):
        calls[0] += 1
        if calls[0] == k:
            signal.raise_signal(signum)
        return real(*a, **kw)

    monkeypatch.setattr(optim, "clip_grad_norm", clip)


STATE_KEYS = ("model/", "optim/", "resume/")


def final_state(path):
    return {k: v for k, v in arrays(path).items() if k.startswith(STATE_KEYS) or k in ("extra/pos", "extra/ema")}


@pytest.mark.parametrize("k", [1, 7, 10, 23, 39])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, corpus, monkeypatch, k, capsys):
    S = 40
    assert cli.main(train_args(corpus, tmp_path / "straight", S)) == 0
    want = final_state(tmp_path / "straight" / "lstm.npz")
    out = tmp_path / "stopped"
    signal_at_step(monkeypatch, k)
    assert cli.main(train_args(corpus, out, S)) == 130
    monkeypatch.undo()
    printed = capsys.readouterr().out
    assert f"saved {out / 'lstm.npz'} at step {k} of {S}" in printed and "--resume" in printed
    assert int(arrays(out / "lstm.npz")["resume/step"]) == k
    assert cli.main(train_args(corpus, out, S, "--resume")) == 0
    got = final_state(out / "lstm.npz")
    assert got.keys() == want.keys()
    for key in want:
        assert np.array_equal(got[key], want[key]), key  # bit for bit, loss history included
    assert len(got["resume/history/train"]) == S


def test_a_second_ctrl_c_while_saving_does_not_corrupt(tmp_path, corpus, monkeypatch, capsys):
    signal_at_step(monkeypatch, 5)
    real = checkpoint.save_arrays

    def save_interrupted(path, data):
        signal.raise_signal(signal.SIGINT)  # the second Ctrl-C, while the checkpoint is written
        real(path, data)

    monkeypatch.setattr(checkpoint, "save_arrays", save_interrupted)
    assert cli.main(train_args(corpus, tmp_path, 40)) == 130
    assert "still saving" in capsys.readouterr().err
    assert int(arrays(tmp_path / "lstm.npz")["resume/step"]) == 5 and no_temporaries(tmp_path)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, corpus, monkeypatch, capsys):
    real, calls = nn.softmax_cross_entropy, [0]

    def exploding(logits, y):
        calls[0] += 1
        loss, d = real(logits, y)
        return (float("nan"), d) if calls[0] == 15 else (loss, d)  # the training losses (no evaluation before 20)

    monkeypatch.setattr(nn, "softmax_cross_entropy", exploding)
    assert cli.main(train_args(corpus, tmp_path, 40)) == 1
    printed = capsys.readouterr().out
    assert "diverged at step 15" in printed and "--lr" in printed and "--clip" in printed
    assert "step 10" in printed  # where the last good checkpoint is
    saved = arrays(tmp_path / "lstm.npz")
    assert int(saved["resume/step"]) == 10
    assert all(np.isfinite(v).all() for k, v in saved.items() if k.startswith("model/"))


def test_checkpoint_api_round_trip(tmp_path):
    rnn, head = nn.recurrent_model("gru", 3, 5, 2, seed=1)
    opt = optim.Adam([rnn, head], lr=0.01)
    rng = np.random.default_rng(4)
    rng.random(3)
    state = [np.arange(10.0).reshape(2, 5)]
    ck = Checkpoint({"rnn": rnn, "head": head}, opt, step=12, generators={"data": rng}, carried={"h": state},
                    history={"loss": [3.0, 2.5]}, config={"hidden": 5, "cell": "gru"})
    ck.save(tmp_path / "c.npz")
    expected_draw = rng.random()
    rnn2, head2 = nn.recurrent_model("gru", 3, 5, 2, seed=2)
    opt2, rng2 = optim.Adam([rnn2, head2], lr=0.01), np.random.default_rng(0)
    got = Checkpoint.load(tmp_path / "c.npz", {"rnn": rnn2, "head": head2}, opt2, generators={"data": rng2},
                          config={"hidden": 5, "cell": "gru"})
    assert got.step == 12 and rng2.random() == expected_draw
    assert np.array_equal(got.carried["h"][0], state[0]) and list(got.history["loss"]) == [3.0, 2.5]
    assert all(np.array_equal(v, rnn.state_dict()[k]) for k, v in rnn2.state_dict().items())
    assert pylstm.nn.Checkpoint is Checkpoint
    with pytest.raises(CheckpointError, match="hidden: checkpoint 5, now 6"):
        Checkpoint.load(tmp_path / "c.npz", {"rnn": rnn2, "head": head2}, config={"hidden": 6})


# ---- a real process, real signals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_real_signal_saves_and_the_printed_command_resumes(tmp_path, corpus, signum, code):
    out = tmp_path / "run"
    argv = train_args(corpus, out, 1_000_000)
    proc = subprocess.Popen([sys.executable, "-m", "pylstm", *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "lstm.npz").exists():  # the first periodic checkpoint: training is under way
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        proc.send_signal(signum)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stdout
    assert "interrupted: saved" in stdout
    command = stdout.split("continue with:\n")[1].strip().splitlines()[0]
    assert command.startswith("pylstm train ") and command.endswith("--resume")
    step = int(arrays(out / "lstm.npz")["resume/step"])
    assert step >= 10
    # The printed command, with a nearer goal, continues from there.
    resume = command.split()[2:]
    resume[resume.index("--steps") + 1] = str(step + 5)
    done = subprocess.run([sys.executable, "-m", "pylstm", "train", *resume], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming from {out / 'lstm.npz'} at step {step}" in done.stdout
    assert int(arrays(out / "lstm.npz")["resume/step"]) == step + 5


# ---- pylstm task ----------------------------------------------------------------------------------------------------
TASK = ["task", "adding", "--steps", "30", "--length", "20", "--hidden", "8", "--batch", "8", "--eval-every", "10",
        "--checkpoint-every", "10"]


@pytest.mark.parametrize("k", [5, 30, 41, 75], ids=lambda k: f"stop-at-{k}")
def test_task_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch, k, capsys):
    """Three cells of 30 steps each: k counts steps across them (30 is the first cell's last step, 41 is inside
    the second)."""
    assert cli.main(TASK + ["--out", str(tmp_path / "straight")]) == 0
    want = final_state(tmp_path / "straight" / "task-adding.npz")
    out = tmp_path / "stopped"
    signal_at_step(monkeypatch, k, signal.SIGTERM)
    assert cli.main(TASK + ["--out", str(out)]) == 143
    monkeypatch.undo()
    assert "--resume" in capsys.readouterr().out
    assert cli.main(TASK + ["--out", str(out), "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().out
    got = final_state(out / "task-adding.npz")
    assert got.keys() == want.keys()
    for key in want:
        assert np.array_equal(got[key], want[key]), key
    assert len(got["resume/history/rnn/loss"]) == 3


def test_task_resume_refuses_other_options(tmp_path, monkeypatch):
    signal_at_step(monkeypatch, 3)
    assert cli.main(TASK + ["--out", str(tmp_path)]) == 130
    monkeypatch.undo()
    with pytest.raises(SystemExit, match="length: checkpoint 20, now 25"):
        cli.main(TASK + ["--out", str(tmp_path), "--resume", "--length", "25"])


@pytest.mark.parametrize("flag", ["--weight-drop", "--recurrent-dropout", "--zoneout"])
def test_a_regularizer_resumes_bit_for_bit_and_is_part_of_the_run(tmp_path, corpus, monkeypatch, capsys, flag):
    """pylstm train --weight-drop / --recurrent-dropout: the masks' stream is saved with the run, so an interrupted
    run resumes to the same weights; a resume with another value is refused."""
    S, more = 30, (flag, "0.3")
    assert cli.main(train_args(corpus, tmp_path / "straight", S, *more)) == 0
    want = final_state(tmp_path / "straight" / "lstm.npz")
    assert cli.main(train_args(corpus, tmp_path / "plain", S)) == 0
    plain = final_state(tmp_path / "plain" / "lstm.npz")
    assert not np.array_equal(want["model/rnn/weight_hh_l0"], plain["model/rnn/weight_hh_l0"])
    out = tmp_path / "stopped"
    signal_at_step(monkeypatch, 13)
    assert cli.main(train_args(corpus, out, S, *more)) == 130
    monkeypatch.undo()
    assert cli.main(train_args(corpus, out, S, *more, "--resume")) == 0
    got = final_state(out / "lstm.npz")
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    with pytest.raises(SystemExit):
        cli.main(train_args(corpus, out, S + 10, "--resume", flag, "0.5"))
    with pytest.raises(SystemExit):
        cli.main(train_args(corpus, tmp_path / "bad", S, flag, "1.5"))


def test_layer_norm_resumes_bit_for_bit_samples_and_is_part_of_the_run(tmp_path, corpus, monkeypatch, capsys):
    """pylstm train --layer-norm: the layer-norm LSTM's parameters are in the checkpoint, an interrupted run resumes
    to the same weights, `pylstm sample` rebuilds it from the file, and a resume without the flag is refused."""
    S = 30
    assert cli.main(train_args(corpus, tmp_path / "straight", S, "--layer-norm")) == 0
    want = final_state(tmp_path / "straight" / "lstm.npz")
    assert "model/rnn/ln_weight_ih_l0" in want and not np.all(want["model/rnn/ln_weight_ih_l0"] == 1)  # trained
    out = tmp_path / "stopped"
    signal_at_step(monkeypatch, 13)
    assert cli.main(train_args(corpus, out, S, "--layer-norm")) == 130
    monkeypatch.undo()
    assert cli.main(train_args(corpus, out, S, "--layer-norm", "--resume")) == 0
    got = final_state(out / "lstm.npz")
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    with pytest.raises(SystemExit, match="layer_norm"):
        cli.main(train_args(corpus, out, S + 10, "--resume"))
    capsys.readouterr()
    assert cli.main(["sample", "--checkpoint", str(out / "lstm.npz"), "--length", "20"]) == 0
    assert len(capsys.readouterr().out) > 20
    with pytest.raises(SystemExit, match="--layer-norm is for --cell lstm"):
        cli.main(train_args(corpus, tmp_path / "gru", S, "--layer-norm", "--cell", "gru"))
