"""The `python -m pylstm` self-check runs, checks every quantity, and exits 0."""

import subprocess
import sys

from pylstm.__main__ import main


def test_selfcheck_passes(capsys):
    assert main(["--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "self-check passed" in out and out.count(" ok") == 20 and "FAIL" not in out


def test_module_entry_point_and_bad_option():
    r = subprocess.run([sys.executable, "-m", "pylstm", "--rounds", "0"], capture_output=True, text=True,
                       cwd="/", timeout=120)
    assert r.returncode == 2 and "--rounds must be >= 1" in r.stderr


def test_console_script_is_installed():
    import shutil
    exe = shutil.which("pylstm", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the pylstm console script is not installed beside this Python"
    r = subprocess.run([exe, "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "self-check passed" in r.stdout
