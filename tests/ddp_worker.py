"""Data-parallel training with pylstm.torch under torch.distributed, for test_torch_ddp.py: the model, the data and the
loop, and (run as a script, one process per rank, with torchrun's environment variables) the DDP run on gloo."""

import os
import sys

import torch

import pylstm
import pylstm.torch as pt

STEPS, BATCH = 4, 8


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = pt.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64)
        self.head = torch.nn.Linear(10, 2, dtype=torch.float64)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out.mean(1))


def build():
    torch.manual_seed(0)
    return Model()


def data():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 6, 3, generator=g, dtype=torch.float64),
             torch.randn(BATCH, 2, generator=g, dtype=torch.float64)) for _ in range(STEPS)]


def train(model, rank=0, world=1):
    """SGD on this rank's equal share of every batch; DDP averages the gradients, so the ranks together take the
    steps of one process on whole batches."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    share = BATCH // world
    for x, y in data():
        rows = slice(rank * share, (rank + 1) * share)
        loss = torch.nn.functional.mse_loss(model(x[rows]), y[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def main(out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    pylstm.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)  # MASTER_ADDR / MASTER_PORT from the environment
    model = DistributedDataParallel(build())
    train(model, rank, world)
    torch.save(model.module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    del model
    shut_down()


def shut_down():
    """Ends the process group without the exit-time deadlock of torch 2.13's gloo backend: a DDP model destroyed at
    interpreter exit can block in ~ProcessGroupGloo (holding the GIL) while a gloo thread waits for the GIL. Here
    every rank finishes its collectives (barrier), the caller has dropped the model, its reducer goes (gc), then the
    group."""
    import gc

    import torch.distributed as dist

    dist.barrier()
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
