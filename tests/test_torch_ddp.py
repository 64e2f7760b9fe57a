"""pylstm.torch under DistributedDataParallel on the gloo backend: 2 processes on loopback train to the same
parameters as one process on whole batches (skipped without torch)."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
import ddp_worker  # noqa: E402  (tests/ is on the path: see pyproject's pythonpath)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one(tmp_path):
    port, world = free_port(), 2
    script = pathlib.Path(ddp_worker.__file__)
    procs, logs = [], [tmp_path / f"rank{r}.log" for r in range(world)]
    try:
        for rank in range(world):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
            with open(logs[rank], "w") as log:
                procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, cwd="/",
                                              stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 180
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs:  # bounded in time: nothing outlives the test
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, p in enumerate(procs):
        assert p.returncode == 0, f"rank {rank} exited with {p.returncode}:\n{logs[rank].read_text()}"
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    alone = ddp_worker.train(ddp_worker.build()).state_dict()
    start = ddp_worker.build().state_dict()
    assert list(ranks[0]) == list(alone)
    for name, want in alone.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        err = float((ranks[0][name] - want).abs().max())
        assert err <= 1e-10, f"{name}: {err:.2e} from one process on whole batches"
        assert not torch.equal(want, start[name]), f"{name} did not train"
