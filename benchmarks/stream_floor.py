"""Streaming against its memory floor, the two taking turns: ../shared/tools/stream-floor and pylstm's stream.

    python benchmarks/stream_floor.py                 # 7 rounds
    python benchmarks/stream_floor.py --rounds 11 --torch

The floor (../shared/tools/stream-floor THREADS MB) is the least time per step that reading a 2-layer LSTM's 4 MB of
float32 weights allows: its own process, 2 threads each reading their 2 MB share, best of six rounds. On a shared
guest whose cache and memory speed drift by 2x over seconds (benchmarks/README.md, "Noise"), a floor measured a minute
before or after a benchmark says little about it; here every round runs the floor tool, then 200-step blocks of
``layer.stream().step(x_t)`` for about the same time, and each round's ratio is pylstm's median block over that
round's floor. The result is the median of the rounds' ratios with their range. No thread limit or environment
variable is set; the stream is test_bench_stream.py's (I = H = 256, 2 layers, batch 1, float32). ``--torch`` adds
torch.nn.LSTM's step in each round as well.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

import pylstm

I = H = 256
LAYERS, THREADS, STEPS = 2, 2, 200
FLOOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tools", "stream-floor")
MB = LAYERS * 4 * H * (I + H) * 4 / 2**20  # the float32 weights one step reads


def floor_us():
    out = subprocess.run([FLOOR, str(THREADS), f"{MB:g}"], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"([\d.]+) us/step", out).group(1))


def pylstm_block():
    m = pylstm.LSTM(I, H, LAYERS, seed=0).eval()
    xs = np.random.default_rng(0).standard_normal((STEPS, 1, I)).astype(np.float32)
    s = m.stream()

    def run():
        t0 = time.perf_counter()
        for x in xs:
            s.step(x)
        return 1e6 * (time.perf_counter() - t0) / STEPS
    return run


def torch_block():
    import torch

    torch.set_num_threads(THREADS)
    m = torch.nn.LSTM(I, H, LAYERS).eval()
    xs = torch.from_numpy(np.random.default_rng(0).standard_normal((STEPS, 1, 1, I)).astype(np.float32))
    state = [None]

    def run():
        t0 = time.perf_counter()
        st = state[0]
        with torch.inference_mode():
            for x in xs:
                _, st = m(x, st)
        state[0] = st
        return 1e6 * (time.perf_counter() - t0) / STEPS
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=1.0, help="pylstm's blocks per round, in seconds (default 1)")
    p.add_argument("--torch", action="store_true", help="time torch.nn.LSTM's step in each round too")
    args = p.parse_args(argv)
    if not os.access(FLOOR, os.X_OK):
        sys.exit(f"stream-floor not found at {os.path.normpath(FLOOR)} (../shared beside the checkout)")
    pylstm.set_num_threads(THREADS)
    runs = {"pylstm": pylstm_block()}
    if args.torch:
        runs["torch"] = torch_block()
    for run in runs.values():
        run()  # the first call (packing, the pool's threads)
    floor_us()  # compiles the tool on its first use
    rows = []
    for _ in range(args.rounds):
        row = {"floor": floor_us()}
        for name, run in runs.items():
            blocks, t_end = [], time.perf_counter() + args.seconds
            while time.perf_counter() < t_end:
                blocks.append(run())
            row[name] = statistics.median(blocks)
        rows.append(row)
    print(f"pylstm isa {pylstm.config()['isa']}, {THREADS} threads; stream-floor {THREADS} {MB:g} and "
          f"{STEPS}-step blocks of each contender in turn, {args.rounds} rounds (µs per step)")
    print()
    print("| round | floor | " + " | ".join(runs) + " | pylstm / floor |")
    print("|---|---|" + "---|" * len(runs) + "---|")
    for i, row in enumerate(rows):
        print(f"| {i + 1} | {row['floor']:.1f} | " + " | ".join(f"{row[k]:.1f}" for k in runs)
              + f" | {row['pylstm'] / row['floor']:.2f}x |")
    ratios = [row["pylstm"] / row["floor"] for row in rows]
    med = {k: statistics.median(row[k] for row in rows) for k in ["floor", *runs]}
    print()
    print("medians: " + ", ".join(f"{k} {v:.1f} µs" for k, v in med.items())
          + f"; pylstm / floor, median of the rounds' ratios: {statistics.median(ratios):.2f}x "
          f"[{min(ratios):.2f}, {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
