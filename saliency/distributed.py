"""torch.distributed helpers shared by every stage: one process per device, launched by torchrun.

Outside a launcher everything falls back to one process (rank 0 of 1), so stage code calls these
helpers unconditionally and the same code runs on a laptop, one GPU or several. The process group
uses nccl on CUDA and gloo on CPU, so the multi-process path can be tested without a GPU.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from typing import TYPE_CHECKING, Any, Callable, ContextManager, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from saliency.errors import UserError

if TYPE_CHECKING:
    from saliency.config import Config

DEVICE_NAMES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "bf16")  # what a stage computes in; run.precision also takes "auto"
# How long a rank waits in a collective: a stage that runs on rank 0 alone (rank, classes, eval)
# keeps the others waiting for as long as it takes, minutes on a GPU, far longer on a CPU.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=12)

T = TypeVar("T")


def launched() -> bool:
    """Whether a launcher (torchrun) described more than one process in the environment."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> bool:
    """Join the process group described by torchrun's environment, once; True when distributed.

    The backend follows the device: nccl for CUDA tensors, gloo for CPU tensors.
    """
    if dist.is_initialized():
        return True
    if not launched():
        return False
    if device.type == "cuda":
        dist.init_process_group(backend="nccl", device_id=device, timeout=COLLECTIVE_TIMEOUT)
    else:
        dist.init_process_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
    return True


def shutdown(in_step: bool = False) -> None:
    """Leave the process group (no-op when there is none), so nccl exits without warnings. With
    ``in_step`` (this rank finished its command, as every rank then does) the ranks first wait for
    each other: a rank that tore gloo down while its peer was still leaving made the peer abort
    ("terminate called without an active exception") under load. A failed rank leaves at once (a
    barrier could wait for a peer that is in another collective)."""
    if dist.is_initialized():
        if in_step:
            dist.barrier()
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank; before the process group exists, the launcher's word for it (a run
    folder's lock is taken before any stage joins the group, and must be taken by rank 0 alone)."""
    if dist.is_initialized():
        return dist.get_rank()
    return int(os.environ["RANK"]) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    """The process's index on its machine (which GPU it drives)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_writer() -> bool:
    """Only rank 0 writes manifests and shared files."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def on_writer(work: Callable[[], T], device: torch.device | None = None) -> T:
    """``work()`` on rank 0 alone, its result (or its failure) handed to every rank.

    For stages whose work is one process (rank, classes, eval): under torchrun the other ranks wait
    for rank 0 instead of racing it for the run folder, then go on with its metrics, so ``saliency
    run`` stays in step. Joins the process group first (gloo unless ``device`` is a GPU).
    """
    if not launched():
        return work()
    init(device if device is not None else torch.device("cpu"))
    outcome: list[Any] = [None]
    failure: BaseException | None = None
    if is_writer():
        try:
            outcome[0] = ("complete", work())
        except BaseException as error:  # noqa: BLE001 - reported to the other ranks, then re-raised
            outcome[0], failure = ("failed", f"{type(error).__name__}: {error}"), error
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    status, value = outcome[0]
    if status != "complete":
        raise UserError(f"rank 0 failed ({value}); see its message above")
    return value


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` (this process's GPU under torchrun) or ``auto`` (cuda when there is one)."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICE_NAMES:
        raise UserError(f"device {name!r} is not known; choose one of {', '.join(DEVICE_NAMES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("device 'cuda' asked for, but no CUDA GPU is visible; use device cpu or auto")
    device = torch.device("cuda", local_rank())
    torch.cuda.set_device(device)
    return device


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast outruns fp32 on ``device``: CUDA GPUs from Ampere (compute capability 8)
    on, and CPUs whose torch reports AVX-512 BF16 or AMX tiles. Elsewhere bf16 is emulated (slower
    than fp32) or missing."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported"))
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``run.precision`` as computed on ``device``: ``auto`` is bf16 where :func:`bf16_is_fast`, else fp32."""
    if name == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if name not in PRECISIONS:
        raise UserError(f"run.precision {name!r} is not known; choose one of {', '.join(PRECISIONS)} or auto")
    return name


def settle_precision(cfg: Config, device: torch.device) -> Config:
    """``cfg`` with ``run.precision`` resolved for ``device``, so that every stage computes, records in
    its manifest and keys its resume by the precision it actually used."""
    from saliency.config import apply_overrides

    precision = resolve_precision(cfg.run.precision, device)
    return cfg if precision == cfg.run.precision else apply_overrides(cfg, {"run.precision": precision})


def autocast(device: torch.device, precision: str = "fp32") -> ContextManager[None]:
    """bf16 autocast on ``device`` when ``precision`` is ``"bf16"``; a no-op for ``"fp32"``.

    ``run.precision`` is the one switch: fp32 is the paper's and the authors' precision; bf16 runs
    about twice as fast where the hardware has it (:func:`bf16_is_fast`; figures in docs/method.md),
    and ``auto`` (:func:`resolve_precision`) picks it there.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def mean_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all ranks (the tensor itself when alone)."""
    if not dist.is_initialized():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (counts, correct predictions)."""
    if not dist.is_initialized():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def reduce_metrics(metrics: dict[str, float], device: torch.device) -> dict[str, float]:
    """Scalar metrics averaged over ranks (``device`` must suit the backend: CUDA for nccl)."""
    if not dist.is_initialized() or not metrics:
        return dict(metrics)
    values = mean_across_ranks(torch.tensor(list(metrics.values()), dtype=torch.float64, device=device))
    return dict(zip(metrics, values.tolist()))


def broadcast_module(module: nn.Module) -> nn.Module:
    """Copy rank 0's parameters and buffers to every rank (e.g. a randomly initialised generator).

    Received through a copy, because a collective writes storage without bumping the tensor's
    version counter, which caches of derived tensors (a frozen generator's W/σ) are keyed by."""
    if dist.is_initialized():
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                received = tensor.detach().clone()
                dist.broadcast(received, src=0)
                tensor.copy_(received)
    return module


def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` wrapped in DistributedDataParallel when distributed and trainable, else itself.

    DDP averages gradients over ranks and starts every rank from rank 0's weights.
    """
    if not dist.is_initialized() or not any(p.requires_grad for p in module.parameters()):
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
