"""Training loops as a user writes them, against torch's same loop, in one process.

    python benchmarks/user_loop.py [--steps 30] [--rounds 5] [--only numpy,pylstm.torch,small]

No thread limit, no environment variable and no pause is set here: each loop runs as it would in a user's script,
beside the thread pools the process already has (NumPy's OpenBLAS, torch's OpenMP). Three loops:

- numpy: the README's main job written with pylstm's NumPy API: one-hot input built with NumPy indexing,
  pylstm.LSTM(96, 256), pylstm.nn.Linear(256, 96), nn.softmax_cross_entropy, optim.clip_grad_norm(1.0),
  optim.Adam(3e-3), T = 64, N = 32, the state carried from step to step; against the same loop in torch.nn.
- pylstm.torch: that torch loop with only torch.nn.LSTM replaced by pylstm.torch.LSTM.
- small: a univariate series model, LSTM(1, 32, num_layers=2, batch_first=True) + Linear(32, 1), MSE, Adam, batch
  32, T = 48, in a plain torch loop, through pylstm.torch against torch.nn.

Each round runs every contender in turn: one untimed step (the only warm-up beyond the first call, so that a
contender's first step does not pay for the one before it), then --steps timed steps. The table gives the median
milliseconds per step over the rounds, their ratio torch / pylstm (> 1: pylstm is faster), and the median over
rounds of each round's own ratio with its range ("paired"): on a host whose speed drifts over seconds, the two blocks
of one round share its speed, where the medians of separate rounds may not (benchmarks/README.md, "Noise").
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import time

import numpy as np

import pylstm
from pylstm import nn, optim

V, H, T, N, LR, CLIP = 96, 256, 64, 32, 3e-3, 1.0
SMALL_H, SMALL_T, SMALL_N = 32, 48, 32


def numpy_loop(seed=0):
    """The README's main job as a user writes it with the NumPy API: returns step()."""
    rng = np.random.default_rng(seed)
    lstm = pylstm.LSTM(V, H, seed=seed)
    head = nn.Linear(H, V, seed=seed + 1)
    opt = optim.Adam([lstm, head], lr=LR)
    eye = np.eye(V, dtype=np.float32)
    state = None

    def step():
        nonlocal state
        ids = rng.integers(0, V, (T + 1, N))
        x, y = eye[ids[:-1]], ids[1:]
        opt.zero_grad()
        out, state = lstm(x, state)
        loss, dlogits = nn.softmax_cross_entropy(head(out), y)
        lstm.backward(head.backward(dlogits), input_grad=False)
        optim.clip_grad_norm([lstm, head], CLIP)
        opt.step()
        return loss
    return step


def torch_loop(lstm_cls=None, seed=0):
    """The same loop in torch; ``lstm_cls`` replaces torch.nn.LSTM (pylstm.torch.LSTM drops in)."""
    import torch

    torch.manual_seed(seed)
    lstm = (lstm_cls or torch.nn.LSTM)(V, H)
    head = torch.nn.Linear(H, V)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    state = None

    def step():
        nonlocal state
        ids = torch.randint(0, V, (T + 1, N))
        x = torch.nn.functional.one_hot(ids[:-1], V).float()
        opt.zero_grad()
        out, state = lstm(x, state)
        state = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), ids[1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        return loss
    return step


def small_loop(lstm_cls=None, seed=0):
    """A small forecasting model in a plain torch loop: a noisy sine, windows of SMALL_T steps, next value."""
    import torch

    torch.manual_seed(seed)
    lstm = (lstm_cls or torch.nn.LSTM)(1, SMALL_H, num_layers=2, batch_first=True)
    head = torch.nn.Linear(SMALL_H, 1)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-3)
    t = torch.arange(5000, dtype=torch.float32)
    series = torch.sin(0.07 * t) + 0.1 * torch.randn(5000)
    gen = torch.Generator().manual_seed(seed)

    def step():
        start = torch.randint(0, 5000 - SMALL_T - 1, (SMALL_N,), generator=gen)
        idx = start[:, None] + torch.arange(SMALL_T + 1)
        window = series[idx]
        x, y = window[:, :-1, None], window[:, -1:]
        opt.zero_grad()
        out, _ = lstm(x)
        loss = torch.nn.functional.mse_loss(head(out[:, -1]), y)
        loss.backward()
        opt.step()
        return loss
    return step


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return (f"{fields.get('Model name', '?').strip()} (family {fields.get('CPU family', '?').strip()} "
                f"model {fields.get('Model', '?').strip()}), {fields.get('CPU(s)', '?').strip()} CPUs")
    except (OSError, subprocess.SubprocessError, ValueError):
        return platform.processor() or "?"


def contenders(only):
    runs = {}
    if "numpy" in only:
        runs["numpy"] = {"pylstm": numpy_loop()}
    try:
        import torch  # noqa: F401

        from pylstm import torch as pylstm_torch
    except ImportError:
        print("torch is not installed: pylstm's loops only, no ratios")
        return runs
    if "numpy" in only:
        runs["numpy"]["torch"] = torch_loop()
    if "pylstm.torch" in only:
        runs["pylstm.torch"] = {"pylstm": torch_loop(pylstm_torch.LSTM), "torch": torch_loop()}
    if "small" in only:
        runs["small"] = {"pylstm": small_loop(pylstm_torch.LSTM), "torch": small_loop()}
    return runs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per contender per round (default 30)")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--only", default="numpy,pylstm.torch,small", help="which loops (default: all three)")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    cfg = pylstm.config()
    print(f"{datetime.date.today()}  {cpu_model()}")
    print(f"pylstm isa {cfg['isa']}, {cfg['threads']} threads, NumPy's BLAS threads: {cfg['numpy_blas_threads']}")
    try:
        import torch

        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"capability {torch.backends.cpu.get_cpu_capability()}")
    except ImportError:
        pass
    runs = contenders(only)
    times = {loop: {name: [] for name in c} for loop, c in runs.items()}
    for _ in range(args.rounds):
        for loop, c in runs.items():
            for name, step in c.items():
                step()  # untimed: see the docstring
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[loop][name].append((time.perf_counter() - t0) / args.steps)
    print(f"\n{args.steps} steps x {args.rounds} rounds, median ms per step (no thread limits, no pauses; one "
          "untimed step per contender per round)")
    print(f"{'loop':14} {'pylstm ms':>10} {'torch ms':>10} {'torch/pylstm':>13}   paired [lowest, highest]")
    result = {}
    for loop, t in times.items():
        ours = 1e3 * float(np.median(t["pylstm"]))
        theirs = 1e3 * float(np.median(t["torch"])) if "torch" in t else float("nan")
        rounds = [b / a for a, b in zip(t["pylstm"], t["torch"])] if "torch" in t else [float("nan")]
        result[loop] = (ours, theirs, theirs / ours, float(np.median(rounds)))
        print(f"{loop:14} {ours:10.2f} {theirs:10.2f} {theirs / ours:12.2f}x   {np.median(rounds):.2f}x "
              f"[{min(rounds):.2f}, {max(rounds):.2f}]")
    return result


if __name__ == "__main__":
    main()
