"""The README's main job, `pylstm train`, against torch on the same model and sizes, in one process.

    python benchmarks/train_job.py [--steps 60] [--rounds 3]

One training step of `pylstm train`'s defaults: a character LSTM (vocabulary 96, one layer of 256 units) and a
Linear head, softmax cross-entropy over T = 64 steps of N = 32 streams, backward, gradient clipping at 1.0 and Adam
at 3e-3, with the state carried from one chunk to the next (truncated BPTT): the loops of user_loop.py, reported in
characters per second. pylstm runs it with pylstm's NumPy API; torch runs nn.LSTM, nn.Linear, cross_entropy,
clip_grad_norm_ and Adam on 2 threads, and "pylstm.torch" runs that same torch loop with only torch.nn.LSTM replaced
by pylstm.torch.LSTM. The data are random characters: speed does not depend on them. No thread limit is set and no
pause is made. Each round runs one untimed step of each contender and then times --steps steps of it, alternating;
the table gives the median characters per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from user_loop import H, N, T, V, numpy_loop, torch_loop  # noqa: E402  (the same loops, step by step)

import pylstm


def steps_of(step, steps):
    def run(n=steps):
        for _ in range(n):
            step()
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60, help="training steps per timed round (default 60)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of each (default 3)")
    args = p.parse_args(argv)
    pylstm.set_num_threads(2)
    pylstm.show_config()
    runs = {"pylstm": steps_of(numpy_loop(), args.steps)}
    try:
        runs["torch"] = steps_of(torch_loop(), args.steps)
        from pylstm import torch as pylstm_torch

        # The same torch loop, with only torch.nn.LSTM replaced by pylstm.torch.LSTM.
        runs["pylstm.torch"] = steps_of(torch_loop(pylstm_torch.LSTM), args.steps)
    except ImportError:
        print("torch is not installed: pylstm only")
    speeds = {k: [] for k in runs}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name, run in runs.items():
            run(1)  # untimed: this contender's first step does not pay for the one before it
            t0 = time.perf_counter()
            run()
            dt = time.perf_counter() - t0
            if r:
                speeds[name].append(args.steps * T * N / dt)
    print(f"\nmain job (LSTM {V}->{H}, Linear, Adam, clip; T={T}, N={N}), {args.steps} steps x {args.rounds} rounds")
    print(f"{'impl':13} {'chars/s (median)':>17} {'min':>9} {'max':>9}")
    for name, v in speeds.items():
        print(f"{name:13} {np.median(v):17,.0f} {min(v):9,.0f} {max(v):9,.0f}")
    for name in ("pylstm", "pylstm.torch"):
        if "torch" in speeds and name in speeds:
            print(f"{name} / torch: {np.median(speeds[name]) / np.median(speeds['torch']):.2f}x")


if __name__ == "__main__":
    main()
