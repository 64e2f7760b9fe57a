"""The recurrent regularizers (issue 27) against the plain LSTM, in one run: training (forward and backward through
time, drawing the masks included) and inference, at the suite's medium and large shapes.

    python benchmarks/regularizers.py [--rounds 7] [--shapes medium large]

weight_drop, recurrent_dropout, zoneout and layer_norm. Each round times every contender in turn, one untimed call
first; the table gives the median ms per call over the rounds and each option's ratio to plain (issue 27's bounds:
< 1.1x for the three regularizers, < 1.5x for layer norm, medium training). 2 threads (pylstm's pool default on
this machine); no thread limit or environment variable is set. `--shapes medium-n1` adds the medium layer on one row.
Inference with weight-drop or recurrent dropout is the plain model (eval mode draws nothing), so it is timed to show
that; with zoneout it zones the states by their expectation.
"""

from __future__ import annotations

import argparse
import datetime
import time

import numpy as np
from user_loop import cpu_model

import pylstm

# medium-n1: the medium layer on one row, where layer norm's split by rows runs on one thread
SHAPES = {"medium": (100, 32, 256, 256), "large": (50, 64, 1024, 1024), "medium-n1": (100, 1, 256, 256)}
OPTIONS = {"plain": {}, "weight_drop=0.3": {"weight_drop": 0.3},
           "recurrent_dropout=0.3": {"recurrent_dropout": 0.3}, "zoneout=0.1": {"zoneout": 0.1},
           "layer_norm": {"layer_norm": True}}


def contender(shape, options, train):
    T, N, I, H = SHAPES[shape]
    m = pylstm.LSTM(I, H, seed=0, **options).train(train)
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
    dy = np.ones((T, N, H), np.float32)

    def run():
        m(x)
        if train:
            m.backward(dy, input_grad=False)
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--shapes", nargs="*", default=["medium", "large"], choices=list(SHAPES))
    args = p.parse_args(argv)
    cfg = pylstm.config()
    print(f"{datetime.date.today()}  {cpu_model()}; pylstm isa {cfg['isa']}, {cfg['threads']} threads")
    print("| shape | pass | " + " | ".join(f"{o} ms" for o in OPTIONS) + " | " +
          " | ".join(f"{o} / plain" for o in list(OPTIONS)[1:]) + " |")
    print("|" + "---|" * (2 + 2 * len(OPTIONS) - 1))
    for shape in args.shapes:
        for train in (True, False):
            runs = {o: contender(shape, kw, train) for o, kw in OPTIONS.items()}
            times = {o: [] for o in runs}
            for run in runs.values():
                run()  # the untimed first call
            for _ in range(args.rounds):
                for o, run in runs.items():
                    t0 = time.perf_counter()
                    run()
                    times[o].append(time.perf_counter() - t0)
            ms = {o: 1e3 * float(np.median(t)) for o, t in times.items()}
            ratios = " | ".join(f"{ms[o] / ms['plain']:.3f}x" for o in list(OPTIONS)[1:])
            print(f"| {shape} | {'train' if train else 'infer'} | " + " | ".join(f"{ms[o]:.2f}" for o in OPTIONS)
                  + f" | {ratios} |")


if __name__ == "__main__":
    main()
