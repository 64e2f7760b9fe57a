"""The ISA dispatch: pylstm.config(), the PYLSTM_ISA cap and its errors, and every level's kernels against the
reference (each level in a child process, since the level is chosen once per process)."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import pylstm
from pylstm import _core

KNOWN = ["avx512", "avx2", "sse2"] if _core.isa_available()[-1] == "sse2" else ["generic"]
LANES = {"avx512": 16, "avx2": 8, "sse2": 4, "generic": 4}
AVAILABLE = pylstm.config()["isa_available"]


def _run(code, isa=None):
    """Runs `code` in a fresh interpreter, outside the source tree, with PYLSTM_ISA=isa, or unset."""
    env = {k: v for k, v in os.environ.items() if k != "PYLSTM_ISA"}
    if isa is not None:
        env["PYLSTM_ISA"] = isa
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir(), timeout=300)


def test_config_keys_and_values():
    c = pylstm.config()
    assert c["isa"] == _core.isa()
    assert c["isa"] in c["isa_available"]
    assert c["isa_available"] == [lv for lv in KNOWN if lv in c["isa_available"]]  # best first, known names
    assert c["isa_available"][-1] == KNOWN[-1]  # the baseline runs everywhere
    assert c["isa_lanes"] == LANES[c["isa"]]
    assert c["threads"] == pylstm.get_num_threads()
    assert c["blas"].startswith("OpenBLAS")
    if os.environ.get("PYLSTM_ISA"):
        assert c["isa"] == os.environ["PYLSTM_ISA"].lower() and c["isa_cap"] == os.environ["PYLSTM_ISA"]
    else:
        assert c["isa"] == c["isa_available"][0] and c["isa_cap"] is None


def test_show_config_prints_every_key(capsys):
    pylstm.show_config()
    out = capsys.readouterr().out
    for key, value in pylstm.config().items():
        shown = ", ".join(value) if isinstance(value, list) else str(value)
        assert f"{key}: {shown}\n" in out


@pytest.mark.parametrize("level", AVAILABLE)
def test_each_level_can_be_forced_and_matches_the_reference(level):
    """Forced with PYLSTM_ISA (in upper case: the name is case-insensitive), a level is the one in use, with its own
    lanes, and the forward and backward of every cell agree with the NumPy reference at ragged sizes (H not a
    multiple of any vector width, N not a multiple of the fused loop's rows)."""
    r = _run("""
        import itertools, json, numpy as np, pylstm
        from pylstm import _core, reference
        rng = np.random.default_rng(0)
        errs = {}
        # H = 37: ragged for every vector width; H = 261: ragged too, and more than one 16 KB chunk of the fused
        # loop's recurrent product at every level (N = 7 rows share the weights). Training and inference, both
        # directions.
        cases = [(5, 7, 9, 37, True, False), (3, 7, 5, 261, True, True), (3, 7, 5, 261, False, False)]
        for (T, N, I, H, train, rev), (cell, G, ns), dt in itertools.product(
                cases, (("lstm", 4, 2), ("gru", 3, 1), ("rnn", 1, 1)), ("float32", "float64")):
                x = rng.standard_normal((T, N, I)).astype(dt)
                s0 = [rng.standard_normal((N, H)).astype(dt) for _ in range(ns)]
                W = [rng.uniform(-0.3, 0.3, s).astype(dt) for s in [(G * H, I), (G * H, H), (G * H,), (G * H,)]]
                dy = rng.standard_normal((T, N, H)).astype(dt)
                dsn = [rng.standard_normal((N, H)).astype(dt) for _ in range(ns)]
                res = []
                for impl in (_core, reference):
                    out = getattr(impl, cell + "_forward")(x, *s0, *W, training=train, reverse=rev)
                    y, cache = out[0], out[-1]
                    res.append(list(out[:-1]))
                    if train:
                        g = [np.zeros_like(w) for w in W]
                        back = getattr(impl, cell + "_backward")(dy, *dsn, x, *s0, W[0], W[1], y, cache, *g,
                                                                 reverse=rev)
                        res[-1] += list(back) + g
                key = f"{cell} {dt} H={H} {'train' if train else 'infer'}{' reverse' if rev else ''}"
                errs[key] = max(float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)) for a, b in zip(*res))
        print(json.dumps({"config": pylstm.config(), "errs": errs}))
    """, isa=level.upper())
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["config"]["isa"] == level
    assert out["config"]["isa_lanes"] == LANES[level]
    if "OPENBLAS_CORETYPE" not in os.environ and level in ("avx2", "sse2"):
        # PYLSTM_ISA caps pylstm's OpenBLAS too (Prescott is reported under the name of its SSE kernels, Katmai).
        cores = {"avx2": ["Haswell"], "sse2": ["Prescott", "Katmai"]}[level]
        assert any(core in out["config"]["blas"] for core in cores)
    for key, err in out["errs"].items():
        assert err <= (1e-5 if "float32" in key else 1e-10), (level, key, err)


def test_unknown_level_is_a_clear_error_at_import():
    r = _run("import pylstm", isa="avx3")
    assert r.returncode != 0
    assert "PYLSTM_ISA=avx3 is not a level pylstm knows; valid values: " + ", ".join(KNOWN) in r.stderr


@pytest.mark.parametrize("level", [lv for lv in KNOWN if lv not in AVAILABLE] or
                         [pytest.param("none", marks=pytest.mark.skip(reason="this CPU runs every level"))])
def test_level_above_the_cpu_is_a_clear_error_at_import(level):
    r = _run("import pylstm", isa=level)
    assert r.returncode != 0
    assert f"PYLSTM_ISA={level} asks for a level this CPU cannot run; it runs: {', '.join(AVAILABLE)}" in r.stderr


def test_choose_isa_rules():
    """The choice itself, on pretend CPUs: no cap picks the best; a cap picks exactly its level; names are
    case-insensitive; a level the CPU lacks, or an unknown name, is a ValueError that says what is possible."""
    if KNOWN == ["generic"]:
        assert _core._choose_isa("", ["generic"]) == "generic"
        return
    assert _core._choose_isa("", ["avx2", "sse2"]) == "avx2"
    assert _core._choose_isa("SSE2", ["avx512", "avx2", "sse2"]) == "sse2"
    assert _core._choose_isa("Avx2", ["avx512", "avx2", "sse2"]) == "avx2"
    with pytest.raises(ValueError, match="PYLSTM_ISA=avx512 asks for a level this CPU cannot run; it runs: avx2, sse2"):
        _core._choose_isa("avx512", ["avx2", "sse2"])
    with pytest.raises(ValueError, match="valid values: avx512, avx2, sse2"):
        _core._choose_isa("neon", ["avx2", "sse2"])


def test_activations_of_every_level_are_within_their_bound():
    """The vectorised sigmoid and tanh of each level are within 1e-6 relative of float64 math."""
    x = np.linspace(-30, 30, 4099, dtype=np.float32)
    code = """
        import numpy as np
        from pylstm import _core
        x = np.linspace(-30, 30, 4099, dtype=np.float32)
        print(_core.sigmoid(x).tobytes().hex(), _core.tanh(x).tobytes().hex())
    """
    for level in AVAILABLE:
        r = _run(code, isa=level)
        assert r.returncode == 0, r.stderr
        s, t = (np.frombuffer(bytes.fromhex(h), np.float32) for h in r.stdout.split())
        exact_s = 1 / (1 + np.exp(-x.astype(np.float64)))
        exact_t = np.tanh(x.astype(np.float64))
        assert np.max(np.abs(s - exact_s) / exact_s) < 1e-6, level
        assert np.max(np.abs(t - exact_t) / np.maximum(np.abs(exact_t), 1e-30)) < 1e-6, level


def test_import_leaves_no_openblas_variable_behind():
    """pylstm sets OPENBLAS_THREAD_TIMEOUT (and, when capped, OPENBLAS_CORETYPE) for its own OpenBLAS only: neither
    may reach NumPy's OpenBLAS or child processes."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os, pylstm
        print(sorted(k for k in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE") if k in os.environ))
    """)], capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                               if k not in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE")},
        cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
