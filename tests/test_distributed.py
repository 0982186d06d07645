"""torch.distributed helpers: single-process fallbacks and a real 2-process gloo group on CPU."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from saliency import distributed
from saliency.errors import UserError
from saliency.generators.layers import PowerStepSpectralNorm


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_environment(rank: int, world_size: int, port: int) -> None:
    """What torchrun sets for each process it starts."""
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    assert distributed.resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no CUDA GPU"):
        distributed.resolve_device("cuda")
    with pytest.raises(UserError, match="'gpu' is not known"):
        distributed.resolve_device("gpu")


def test_autocast_follows_the_precision_switch_on_any_device() -> None:
    with distributed.autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with distributed.autocast(torch.device("cpu"), "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with distributed.autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        distributed.autocast(torch.device("cpu"), "fp16")


def test_single_process_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched() and not distributed.init(torch.device("cpu"))
    assert (distributed.rank(), distributed.world_size(), distributed.is_writer()) == (0, 1, True)
    values = torch.tensor([1.0, 2.0])
    assert distributed.mean_across_ranks(values) is values and distributed.sum_across_ranks(values) is values
    assert distributed.reduce_metrics({"a": 1.5}, torch.device("cpu")) == {"a": 1.5}
    module = nn.Linear(2, 2)
    assert distributed.data_parallel(module, torch.device("cpu")) is module
    assert distributed.unwrap(module) is module and distributed.broadcast_module(module) is module
    distributed.barrier()
    distributed.shutdown()


def fork_ranks(child, world_size: int, *args: object) -> None:
    """Run ``child(rank, world_size, port, *args)`` in ``world_size`` forked processes (as torchrun would).

    Forking, not spawning: DDP's first use imports torch._dynamo (seconds), done here once for all
    ranks. Each rank keeps one thread, as DataLoader workers do after a fork.
    """
    import torch._dynamo  # noqa: F401

    mp.start_processes(_one_thread, args=(child, world_size, free_port(), *args), nprocs=world_size,
                       start_method="fork")


def _one_thread(rank: int, child, *args: object) -> None:
    torch.set_num_threads(1)
    child(rank, *args)


def _two_process_child(rank: int, world_size: int, port: int, out: str) -> None:
    torchrun_environment(rank, world_size, port)
    assert distributed.init(torch.device("cpu"))
    torch.manual_seed(rank)  # every rank starts from different weights
    model = nn.Linear(3, 1)
    distributed.broadcast_module(model)
    frozen = PowerStepSpectralNorm.linear(3, 2).requires_grad_(False)
    frozen(torch.ones(1, 3))  # keeps W/σ of this rank's own weights
    distributed.broadcast_module(frozen)
    broadcast = [p.detach().clone() for p in model.parameters()]
    wrapped = distributed.data_parallel(model, torch.device("cpu"))
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    wrapped(torch.full((4, 3), float(rank + 1))).sum().backward()  # different data on each rank
    optimizer.step()
    result = {
        "rank": distributed.rank(), "world": distributed.world_size(), "writer": distributed.is_writer(),
        "mean": distributed.mean_across_ranks(torch.tensor([rank + 1.0])).item(),
        "sum": distributed.sum_across_ranks(torch.tensor([rank + 1.0])).item(),
        "metrics": distributed.reduce_metrics({"loss": float(rank)}, torch.device("cpu")),
        "broadcast": [p.tolist() for p in broadcast],
        "trained": [p.detach().tolist() for p in distributed.unwrap(wrapped).parameters()],
        "wrapped": isinstance(wrapped, nn.parallel.DistributedDataParallel),
        "frozen": frozen(torch.ones(1, 3)).tolist(),  # with rank 0's weights, W/σ recomputed
    }
    distributed.barrier()
    distributed.shutdown()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def test_two_gloo_processes_agree(tmp_path: Path) -> None:
    fork_ranks(_two_process_child, 2, str(tmp_path))
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert (first["rank"], second["rank"], first["world"], first["writer"], second["writer"]) == (0, 1, 2, True, False)
    assert first["mean"] == second["mean"] == 1.5 and first["sum"] == 3.0
    assert first["frozen"] == second["frozen"]
    assert first["metrics"] == second["metrics"] == {"loss": 0.5}
    assert first["broadcast"] == second["broadcast"], "rank 0's weights reach every rank"
    assert first["wrapped"] and first["trained"] == second["trained"], "gradients are averaged over ranks"
    assert first["trained"] != first["broadcast"]
