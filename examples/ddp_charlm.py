"""The README's character model, trained data-parallel with torch.distributed and pylstm.torch.LSTM.

    torchrun --nproc-per-node 2 examples/ddp_charlm.py [--steps 300]

Every process runs this script: torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, the gloo backend (the
CPU one) joins them, and DistributedDataParallel averages the gradients after each backward. The global batch of
--batch streams is split evenly between the processes, so any number of processes takes the same steps as one
process would (up to the order of floating-point sums). On several machines, run the same command on each with
--nnodes, --node-rank and a rendezvous address (--rdzv-backend c10d --rdzv-endpoint HOST:PORT).

The model is `pylstm train`'s: one-hot characters, an LSTM, a Linear head, cross-entropy, gradient clipping and
Adam, over truncated back-propagation through time with the state carried between chunks. Each process prints its
own throughput (characters per second of its share) and the running loss on its share.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import pylstm
import pylstm.torch
from pylstm.cli import stdlib_docstrings


class CharModel(torch.nn.Module):
    def __init__(self, V, H, layers):
        super().__init__()
        self.V = V
        self.rnn = pylstm.torch.LSTM(V, H, layers)  # the one line that differs from a torch.nn script
        self.head = torch.nn.Linear(H, V)

    def forward(self, ids, state):
        out, state = self.rnn(torch.nn.functional.one_hot(ids, self.V).float(), state)
        return self.head(out), state


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="training steps")
    p.add_argument("--hidden", type=int, default=256, help="LSTM units")
    p.add_argument("--layers", type=int, default=1, help="LSTM layers")
    p.add_argument("--seq-len", type=int, default=64, help="steps per chunk (truncated BPTT)")
    p.add_argument("--batch", type=int, default=32, help="streams in the global batch, split between processes")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--threads", type=int, default=0, help="threads per process (0: the cores divided evenly)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights")
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the {world} processes")
    threads = args.threads or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    torch.set_num_threads(threads)
    pylstm.set_num_threads(threads)

    text = stdlib_docstrings()
    vocab = sorted(set(text))
    lookup = {c: i for i, c in enumerate(vocab)}
    data = torch.tensor(np.fromiter((lookup[c] for c in text), np.int64, len(text)))
    V, T, share = len(vocab), args.seq_len, args.batch // world
    stream_len = (len(data) - 1) // args.batch
    # This process's streams: its own slice of the global batch's N streams over the text.
    offsets = (torch.arange(share) + rank * share) * stream_len

    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = DistributedDataParallel(CharModel(V, args.hidden, args.layers))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state, pos = None, 0
    t0, chars, ema = time.perf_counter(), 0, None
    for step in range(1, args.steps + 1):
        if pos + T + 1 > stream_len:
            pos, state = 0, None
        idx = offsets[None, :] + pos + torch.arange(T)[:, None]  # (T, share)
        pos += T
        logits, state = model(data[idx], state)
        state = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), data[idx + 1].reshape(-1))
        opt.zero_grad()
        loss.backward()  # DDP all-reduces the gradients here
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        chars += T * share
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 50 == 0 or step == args.steps:
            rate = chars / (time.perf_counter() - t0)
            print(f"rank {rank}/{world}: step {step}, loss {ema:.3f} nats/char, {rate:,.0f} chars/s "
                  f"({threads} threads)", flush=True)
    # Every rank finishes its collectives, and the model (with DDP's reducer) goes before the process group: torch
    # 2.13's gloo group, destroyed at interpreter exit, can deadlock against its own threads.
    dist.barrier()
    del model, opt
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
