"""Low-level data-parallel helpers over ``torch.distributed``: rank and world size, one
flattened gradient all-reduce, parameter broadcast.

This module is the bottom floor of distributed training: ``optimizer_step`` (every ``train``
function's step) and ``machina.optims`` call it. ``machina.distributed.init()`` sets up the
process group and turns gradient averaging on; everything here also works when the user
created the process group with ``torch.distributed.init_process_group`` themselves.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.weak import WeakIdKeyDictionary

if dist.is_available():
    # Imported here, before any process group exists: its functions take ``group=group.WORLD``
    # as a default argument, so a first import after ``init_process_group`` (torch.optim and
    # torch._dynamo import it lazily) would hold the group forever. Its gloo threads then
    # outlive ``destroy_process_group`` and can abort the interpreter at exit ("terminate
    # called without an active exception").
    import torch.distributed.nn.functional  # noqa: F401

__all__ = [
    "is_initialized",
    "get_rank",
    "get_world_size",
    "set_grad_averaging",
    "grad_averaging_enabled",
    "averages_here",
    "average_gradients",
    "average_tensor",
    "any_rank",
    "collective_device",
    "grads_already_averaged",
    "grads_are_averaged",
    "rank_local",
    "is_rank_local",
    "broadcast_params",
    "make_model_distributed",
    "wrap_ddp",
]

_GRAD_AVERAGING = False
_LOCAL = threading.local()
# Gradient tensors average_gradients averaged, held weakly by identity (a mark on the
# Parameter itself would make the model unpicklable).
_AVERAGED_GRADS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def is_initialized() -> bool:
    """True when a ``torch.distributed`` process group exists in this process."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank, 0 when ``torch.distributed`` is not initialised."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """The number of processes, 1 when ``torch.distributed`` is not initialised."""
    return dist.get_world_size() if is_initialized() else 1


def set_grad_averaging(enabled: bool) -> None:
    """Turn on (or off) the gradient all-reduce in every ``train`` function's optimiser step.

    ``machina.distributed.init()`` and :func:`make_model_distributed` turn it on. It only
    acts while ``torch.distributed`` is initialised with more than one process.
    """
    global _GRAD_AVERAGING
    _GRAD_AVERAGING = bool(enabled)


def grad_averaging_enabled() -> bool:
    """Whether :func:`set_grad_averaging` turned gradient averaging on."""
    return _GRAD_AVERAGING


def averages_here(optims: Iterable[torch.optim.Optimizer] = ()) -> bool:
    """Whether an optimiser step of ``optims`` must average gradients over ranks now.

    True with more than one process and either averaging turned on or one of ``optims``
    averaging by itself (``machina.optims.DistributedAdamW`` / ``DistributedSGD``).
    """
    if get_world_size() <= 1 or is_rank_local():
        return False
    return _GRAD_AVERAGING or any(getattr(o, "averages_gradients", False) for o in optims)


def average_gradients(
    params: Sequence[torch.Tensor],
    extra: torch.Tensor | None = None,
    world_size: int | None = None,
) -> torch.Tensor | None:
    """Replace every ``p.grad`` by its mean over ranks, in one flattened all-reduce.

    A parameter whose gradient is ``None`` on some ranks counts as a zero gradient there (its
    loss did not depend on it); one that has none on every rank keeps ``None``, so the
    optimiser skips it exactly as in a single process. Every rank must pass the same
    parameters in the same order (the optimisers' ``param_groups`` give that).

    Parameters
    ----------
    params : sequence of torch.Tensor
        Parameters (leaf tensors) whose ``.grad`` is averaged in place.
    extra : torch.Tensor, optional
        A tensor averaged in the same call (``optimizer_step`` sends the loss, so every rank
        learns whether any rank's loss is non-finite without a second collective).
    world_size : int, optional
        Divisor of the sum; the process group's size by default.

    Returns
    -------
    torch.Tensor or None
        ``extra`` averaged over ranks (same shape), or None without ``extra``.
    """
    params = list(params)
    divisor = get_world_size() if world_size is None else world_size
    if not is_initialized():
        return None if extra is None else extra.detach().clone()
    ref = params[0] if params else extra
    if ref is None:
        return None
    missing = [p.grad is None for p in params]
    grads = [torch.zeros_like(p) if m else p.grad for p, m in zip(params, missing)]
    # one buffer of every gradient's dtype and at least float32: a float16 first parameter
    # made a loss above 65504 inf (a false non-finite error on every rank)
    dtype = functools.reduce(torch.promote_types, [g.dtype for g in grads], torch.float32)
    flags = torch.tensor([0.0 if m else 1.0 for m in missing], dtype=dtype, device=ref.device)
    pieces = [g.reshape(-1).to(dtype) for g in grads] + [flags]
    if extra is not None:
        pieces.append(extra.detach().reshape(-1).to(dtype))
    flat = torch.cat(pieces)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(divisor)
    sizes = [g.numel() for g in grads]
    n = sum(sizes)
    counts = flat[n : n + len(params)].tolist() if any(missing) else None
    for i, (p, view) in enumerate(zip(params, flat[:n].split(sizes))):
        if missing[i]:
            if counts[i] != 0.0:  # some rank had a gradient: this rank's share was zero
                p.grad = view.view_as(p).to(p.dtype, copy=True)
        else:
            p.grad.copy_(view.view_as(p.grad))
        if p.grad is not None:  # for make_model_distributed's check of a step
            _AVERAGED_GRADS[p.grad] = True
    if extra is None:
        return None
    return flat[n + len(params) :].view_as(extra)


def average_tensor(t: torch.Tensor, optims: Iterable[torch.optim.Optimizer] = ()) -> torch.Tensor:
    """Replace ``t`` by its mean over ranks, in place, when gradient averaging is on, or one
    of ``optims`` averages by itself (see :func:`averages_here`; returns ``t``). For training
    code that computes its own update direction instead of calling ``optimizer_step`` (e.g.
    a natural-gradient step: average the gradient and each Fisher-vector product), or a
    statistic that steers later steps (``ppo_kl``'s KL), so that every rank does the same."""
    if averages_here(optims):
        if not t.is_floating_point():
            raise TypeError(f"t: expected a floating-point tensor to average, got {t.dtype}")
        # Summed in float64, the mean of equal values is that value exactly (in float32,
        # (g + g + g) / 3 is not g): ranks holding the same data, as TRPO's policy step on a
        # Traj(ddp=True), step as one process. Two ranks get float32's result either way.
        wide = t.detach().to(torch.float64)
        dist.all_reduce(wide, op=dist.ReduceOp.SUM)
        t.copy_(wide.div_(get_world_size()))
    return t


@contextlib.contextmanager
def _flag_set(name: str) -> Iterator[None]:
    """This thread's flag ``name`` set inside the block (as it was again after it)."""
    previous = getattr(_LOCAL, name, False)
    setattr(_LOCAL, name, True)
    try:
        yield
    finally:
        setattr(_LOCAL, name, previous)


def grads_already_averaged() -> contextlib.AbstractContextManager[None]:
    """Inside the block, gradient-averaging optimisers (``machina.optims.Distributed*``) do
    not average again: ``optimizer_step`` averaged before clipping."""
    return _flag_set("averaged")


def grads_are_averaged() -> bool:
    """True inside :func:`grads_already_averaged`."""
    return getattr(_LOCAL, "averaged", False)


def rank_local() -> contextlib.AbstractContextManager[None]:
    """Inside the block this process batches and trains on its own, as without a process
    group: Traj batching calls are not collectives (no agreement on minibatch counts, no
    shared minibatches) and no gradient is averaged. For work one rank does alone, e.g. a
    validation pass on rank 0: outside the block, once the process group exists, every
    rank must make the same batching and training calls, or the others wait for it."""
    return _flag_set("rank_local")


def is_rank_local() -> bool:
    """True inside :func:`rank_local`."""
    return getattr(_LOCAL, "rank_local", False)


def collective_device() -> torch.device:
    """Where the default process group's collectives take their tensors: nccl moves only
    CUDA tensors (this process's current GPU), gloo and mpi CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank: one all-reduce once a process group exists
    (outside :func:`rank_local`), where Traj's batching calls are collectives; ``flag``
    itself otherwise. For a check that fails on one rank only: every rank then stops, instead
    of the others waiting for it in their next collective."""
    if not (dist.is_available() and dist.is_initialized()) or is_rank_local():
        return flag
    if dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int64, device=collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _module_tensors(modules: torch.nn.Module | Iterable[torch.nn.Module]) -> list[torch.Tensor]:
    mods = [modules] if isinstance(modules, torch.nn.Module) else list(modules)
    return [t for m in mods for t in (*m.parameters(), *m.buffers())]


def broadcast_params(modules: torch.nn.Module | Iterable[torch.nn.Module], src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers of ``modules`` to every rank, in place.

    One broadcast per dtype (parameters and buffers flattened together). Does nothing
    without an initialised process group.
    """
    if not is_initialized():
        return
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in _module_tensors(modules):
        by_dtype.setdefault((t.dtype, t.device), []).append(t)
    with torch.no_grad():
        for tensors in by_dtype.values():
            flat = torch.cat([t.detach().reshape(-1) for t in tensors])
            dist.broadcast(flat, src)
            for t, view in zip(tensors, flat.split([t.numel() for t in tensors])):
                t.copy_(view.view_as(t))


def make_model_distributed(
    model: torch.nn.Module,
    optim: torch.optim.Optimizer,
    use_apex: bool = False,
    apex_opt_level: str = "O0",
    apex_keep_batchnorm_fp32: bool = True,
    apex_sync_bn: bool = False,
    apex_loss_scale: float | None = None,
    device_ids: Sequence[int] | None = None,
    output_device: int | None = None,
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Prepare ``model`` for data-parallel training; returns ``(model, optim)``.

    Every ``train`` function's optimiser step averages gradients itself (before clipping,
    so the clipping sees the global gradient; issue 10), so the
    model needs no wrapper: rank 0's parameters and buffers are broadcast to every rank,
    gradient averaging is turned on, and the same ``model`` object is returned (it shares its
    parameters with itself). A loop of your own (``loss.backward(); optim.step()``, which
    machina 0.x's DDP-wrapped model averaged in the backward pass) must average itself:
    :func:`average_gradients` of the parameters after ``backward`` (before any clipping or
    a GradScaler's step), or machina's ``optimizer_step`` (averages, then clips, then steps).
    ``optim`` gets a step pre-hook that warns, once, when it steps on gradients nothing
    averaged since its last step; it does no collective itself, so a rank that skips a step
    (a GradScaler finding inf) never leaves the others waiting. ``device_ids`` and
    ``output_device`` are accepted for ``DistributedDataParallel``-style calls and not
    needed: the model stays on the device it is on.

    Raises
    ------
    RuntimeError
        When ``torch.distributed`` is not initialised.
    ValueError
        With ``use_apex=True``: NVIDIA apex is not supported (use ``torch.autocast``).
    """
    if use_apex:
        raise ValueError(
            "make_model_distributed: use_apex: NVIDIA apex is not supported; expected False, "
            "got True (use torch.autocast / torch.amp for mixed precision)"
        )
    if not is_initialized():
        raise RuntimeError(
            "make_model_distributed: torch.distributed is not initialised; call "
            "machina.distributed.init() (or torch.distributed.init_process_group) first"
        )
    broadcast_params(model)
    set_grad_averaging(True)
    if not getattr(optim, "_machina_step_check", None):
        optim._machina_step_check = optim.register_step_pre_hook(_warn_unaveraged_step)  # type: ignore[attr-defined]
    return model, optim


def _averaged(param: torch.Tensor) -> bool:
    """Whether ``param``'s current gradient tensor is one :func:`average_gradients` averaged
    (a gradient accumulated into it in place since, with ``zero_grad(set_to_none=False)``,
    still counts as averaged)."""
    return param.grad is not None and param.grad in _AVERAGED_GRADS


def _warn_unaveraged_step(optim: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """A step pre-hook: warn once when ``optim`` steps, with gradient averaging on, on
    gradients nothing averaged since the last step (a loop of the user's own). No
    collective: ranks may skip steps on their own."""
    if getattr(optim, "_machina_warned", False) or getattr(optim, "averages_gradients", False):
        return
    if grads_are_averaged() or not averages_here():
        return
    grads = [p for group in optim.param_groups for p in group["params"] if p.grad is not None]
    if grads and not all(_averaged(p) for p in grads):
        optim._machina_warned = True  # type: ignore[attr-defined]
        warnings.warn(
            "make_model_distributed: this optimiser stepped on gradients that no rank "
            "averaged: in a loop of your own, call machina.utils.distributed."
            "average_gradients(model.parameters()) after backward (or use "
            "machina.utils.optimizer_step), else the ranks' models drift apart",
            RuntimeWarning,
            stacklevel=3,
        )


def wrap_ddp(cls: type) -> type:
    """A subclass of the wrapper ``cls`` (e.g. ``DistributedDataParallel``) whose attribute
    look-ups fall back to the wrapped ``module`` (so ``ddp_pol.rnn`` works)."""

    class _Wrap(cls):
        def __getattr__(self, name: str) -> Any:
            wrapped = super().__getattr__("module")
            if hasattr(wrapped, name):
                return getattr(wrapped, name)
            return super().__getattr__(name)

    _Wrap.__name__ = _Wrap.__qualname__ = f"Wrapped{cls.__name__}"
    return _Wrap
