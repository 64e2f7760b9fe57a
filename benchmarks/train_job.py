"""The README's main job, `pylstm train`, against torch on the same model and sizes, in one process.

    python benchmarks/train_job.py [--steps 60] [--rounds 3]

One training step of `pylstm train`'s defaults: a character LSTM (vocabulary 96, one layer of 256 units) and a
Linear head, softmax cross-entropy over T = 64 steps of N = 32 streams, backward, gradient clipping at 1.0 and Adam
at 3e-3, with the state carried from one chunk to the next (truncated BPTT). pylstm runs it with the calls the
command makes; torch runs nn.LSTM, nn.Linear, cross_entropy, clip_grad_norm_ and Adam on 2 threads, and
"pylstm.torch" runs that same torch loop with only torch.nn.LSTM replaced by pylstm.torch.LSTM. The data are random
characters: speed does not depend on them. No thread limit is set and no pause is made. Each round runs one untimed
step of each contender and then times --steps steps of it, alternating; the table gives the median characters per
second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import pylstm
from pylstm import nn, optim

V, H, T, N, LR, CLIP = 96, 256, 64, 32, 3e-3, 1.0


def pylstm_steps(steps, seed=0):
    rng = np.random.default_rng(seed)
    rnn, head = nn.recurrent_model("lstm", V, H, V, 1, seed=seed)
    opt = optim.Adam([rnn, head], lr=LR)
    eye = np.eye(V, dtype=np.float32)
    ids = rng.integers(0, V, (steps + 1, T + 1, N))
    state = None

    def run(steps=steps):
        nonlocal state
        for s in range(steps):
            x, y = eye[ids[s, :T]], ids[s, 1:]
            opt.zero_grad()
            out, state = rnn(x, state)
            loss, dlogits = nn.softmax_cross_entropy(head(out), y)
            rnn.backward(head.backward(dlogits), input_grad=False)
            optim.clip_grad_norm([rnn, head], CLIP)
            opt.step()
    return run


def torch_steps(steps, seed=0, lstm=None):
    """The torch loop; ``lstm`` is the LSTM class (torch.nn.LSTM by default; pylstm.torch.LSTM drops in)."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    rnn, head = (lstm or torch.nn.LSTM)(V, H), torch.nn.Linear(H, V)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    ids = torch.randint(0, V, (steps + 1, T + 1, N))
    state = None

    def run(steps=steps):
        nonlocal state
        for s in range(steps):
            x = torch.nn.functional.one_hot(ids[s, :T], V).float()
            opt.zero_grad()
            out, state = rnn(x, state)
            state = tuple(st.detach() for st in state)
            loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), ids[s, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP)
            opt.step()
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60, help="training steps per timed round (default 60)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of each (default 3)")
    args = p.parse_args(argv)
    pylstm.set_num_threads(2)
    pylstm.show_config()
    runs = {"pylstm": pylstm_steps(args.steps)}
    try:
        runs["torch"] = torch_steps(args.steps)
        from pylstm import torch as pylstm_torch

        # The same torch loop, with only torch.nn.LSTM replaced by pylstm.torch.LSTM.
        runs["pylstm.torch"] = torch_steps(args.steps, lstm=pylstm_torch.LSTM)
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
