"""Data-parallel training across processes with ``torch.distributed``.

Launch the script with ``torchrun`` and call :func:`init` once; from then on every ``train``
function (on- and off-policy, recurrent included) trains data-parallel with its signature
unchanged: each optimiser step averages the gradients over ranks in one flattened
all-reduce, before clipping, so ``max_grad_norm`` clips the averaged gradient and the
parameters stay identical on every rank::

    torchrun --nproc_per_node 2 my_script.py

    import machina.distributed as mdist
    mdist.init()                          # gloo on CPU, nccl with CUDA
    mdist.sync_params(pol, vf)            # rank 0's initial weights everywhere
    ...
    traj = Traj(ddp=True)                 # mode 1: same episodes on every rank, each rank
                                          # computes its share of every minibatch
    result = ppo_clip.train(traj=traj, pol=pol, vf=vf, ...)
    if mdist.is_main():
        torch.save(pol.state_dict(), "pol.pt")
    mdist.destroy()

Two ways to feed the ranks: every rank holds the same episodes in a ``Traj(ddp=True)``
(training equals single-process training on the same data), or each rank samples its own
episodes with its own seed (a plain ``Traj``; gradients are averaged each step, and ranks
agree on the number of minibatches, so unequal data never hangs).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from machina.utils.distributed import (
    broadcast_params,
    collective_device,
    get_rank,
    get_world_size,
    is_initialized,
    is_rank_local,
    make_model_distributed,
    rank_local,
    set_grad_averaging,
)

__all__ = [
    "init",
    "destroy",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "get_local_rank",
    "is_main",
    "barrier",
    "sync_params",
    "make_model_distributed",
    "broadcast_object",
    "gather_object",
    "mean_over_ranks",
    "rank_local",
]

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def init(backend: str | None = None, timeout: float | None = None) -> None:
    """Join the process group that ``torchrun`` launched and turn on gradient averaging.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from
    the environment (``torchrun`` sets them). Without them (a plain ``python script.py``)
    nothing is initialised and training runs in one process, so the same script works both
    ways. Calling it again, or after ``torch.distributed.init_process_group``, only turns
    averaging on.

    Parameters
    ----------
    backend : str, optional
        ``"gloo"`` or ``"nccl"``; ``"nccl"`` when CUDA is available, else ``"gloo"``. With
        nccl each process uses GPU ``LOCAL_RANK``.
    timeout : float, optional
        Seconds a collective waits for the other ranks before raising; otherwise torch's
        default (30 minutes for gloo).
    """
    if not is_initialized():
        present = [k for k in _ENV if k in os.environ]
        if not present:
            return
        if len(present) != len(_ENV):
            missing = [k for k in _ENV if k not in os.environ]
            raise RuntimeError(
                f"machina.distributed.init: environment variables {missing} are missing (found "
                f"{present}); launch with torchrun, e.g. torchrun --nproc_per_node 2 script.py"
            )
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend not in ("gloo", "nccl", "mpi"):
            raise ValueError(
                f"machina.distributed.init: backend: expected 'gloo', 'nccl' or 'mpi', "
                f"got {backend!r}"
            )
        if backend == "nccl":
            if torch.cuda.device_count() <= get_local_rank():
                raise ValueError(
                    f"machina.distributed.init: backend: 'nccl' needs a CUDA device per "
                    f"process (LOCAL_RANK {get_local_rank()}), found "
                    f"{torch.cuda.device_count()} visible (CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}): make every local rank's "
                    "GPU visible to it, or use backend='gloo' on CPU"
                )
            torch.cuda.set_device(get_local_rank())
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = datetime.timedelta(seconds=timeout)
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    set_grad_averaging(True)


def destroy() -> None:
    """Leave the process group (if any) and turn gradient averaging off."""
    set_grad_averaging(False)
    if is_initialized():
        dist.destroy_process_group()


def get_local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that logs and saves."""
    return get_rank() == 0


def _collective() -> bool:
    """Whether the helpers below talk to the other ranks: a process group exists and this
    process is not inside ``rank_local()``."""
    return is_initialized() and not is_rank_local()


def barrier() -> None:
    """Wait until every rank reaches this point (no-op in a single process and inside
    ``rank_local()``, where only this rank runs)."""
    if _collective():
        dist.barrier()


def sync_params(*modules: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers of ``modules`` to every rank (call once
    after building the networks, so all ranks start from the same weights)."""
    broadcast_params(modules, src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (e.g. the episodes rank 0 sampled). Pickles: use
    it only between your own processes. ``obj`` itself inside ``rank_local()``."""
    if not _collective():
        return obj
    box = [obj if get_rank() == src else None]
    dist.broadcast_object_list(box, src)
    return box[0]


def gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (e.g. the episode returns each rank
    sampled, for rank 0 to log them all); ``[obj]`` in one process. Pickles, as
    :func:`broadcast_object`; ``[obj]`` inside ``rank_local()`` too."""
    if not _collective():
        return [obj]
    box: list[Any] = [None] * get_world_size()
    dist.all_gather_object(box, obj)
    return box


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over ranks (e.g. a loss or return to log on rank 0); ``value``
    in one process and inside ``rank_local()`` (a collective there would wait for ranks
    that never come)."""
    if not _collective():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=collective_device())
    dist.all_reduce(t)
    return float(t) / get_world_size()
