"""The training steps every algorithm shares: one optimiser step (zero, backward, average
over ranks, clip, check, step), Polyak averaging of target networks, and freezing parameters.

Public and on the bottom floor: the algorithms, the tests and users' own ``train`` functions
call the same helpers (``from machina.utils import optimizer_step``).
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from machina.utils import batch_share
from machina.utils import distributed as dist_utils
from machina.utils.checks import NonFiniteError, all_finite

__all__ = ["frozen", "non_finite_error", "optimizer_step", "optimizer_steps", "polyak_update"]


def optimizer_step(
    optim: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    loss: torch.Tensor,
    params: Iterable[torch.Tensor] | None = None,
    max_grad_norm: float | None = None,
    *,
    name: str = "loss",
    batch: Mapping[str, Any] | None = None,
) -> float:
    """Zero the gradients, back-propagate ``loss``, average them over ranks, clip their norm
    and take one step — or raise before the step when anything is non-finite.

    ``optim`` may be a sequence of optimisers (e.g. one per Q function of a twin): one
    backward pass of the summed losses, then every optimiser steps.

    Data-parallel (``torch.distributed`` with more than one process, averaging turned on by
    ``machina.distributed.init()`` or a ``machina.optims.Distributed*`` optimiser): the
    gradients of the optimisers' parameters (and of any clipped ``params`` they do not hold)
    are averaged over ranks in one flattened all-reduce, **before** clipping, so
    ``max_grad_norm`` clips the averaged gradient and every rank takes the same step. The
    loss travels in the same all-reduce, so all ranks agree on whether to raise.

    Parameters
    ----------
    optim : torch.optim.Optimizer or sequence of them
        The optimisers that step.
    loss : torch.Tensor
        Scalar loss, shape ``()``.
    params : iterable of torch.Tensor, optional
        Parameters whose gradient norm is clipped; the optimisers' parameters by default.
    max_grad_norm : float, optional
        Clip the total gradient norm of ``params`` to this value.
    name : str
        What the loss is (e.g. ``"ppo_clip.train: pol_loss"``), for error messages.
    batch : mapping, optional
        The batch the loss was computed on; an error lists its keys and names those holding
        non-finite values.

    Returns
    -------
    float
        This rank's loss before the step.

    Raises
    ------
    NonFiniteError
        The loss (on any rank) or the gradient is NaN or infinite. The optimisers have not
        stepped: parameters and optimiser state are as they were before the call.
    """
    optims = list(optim) if isinstance(optim, list | tuple) else [optim]
    opt_params = [p for opt in optims for p in optimizer_params(opt)]
    averaging = dist_utils.averages_here(optims)
    if batch_share.take_share_note() and not averaging:
        _warn_share_not_averaged()
    loss_value = float(loss.detach())
    if not averaging and not math.isfinite(loss_value):
        raise non_finite_error(f"{name} is {loss_value}", batch)
    for opt in optims:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if averaging:
        if max_grad_norm is not None and params is not None:
            # clipped parameters the optimisers do not hold (a frozen trunk, say) are
            # averaged too: else each rank's clip factor, so its step, would differ
            params = list(params)
            averaged = list(opt_params)
            held = {id(p) for p in opt_params}
            for p in params:  # in the caller's order: every rank sends the same list
                if id(p) not in held and p.requires_grad:  # a frozen one has no gradient
                    held.add(id(p))
                    averaged.append(p)
        else:
            averaged = opt_params
        mean_loss = float(dist_utils.average_gradients(averaged, extra=loss.detach()))
        if not math.isfinite(mean_loss):
            rank = dist_utils.get_rank()
            where = (
                f"{loss_value} on rank {rank}"
                if not math.isfinite(loss_value)
                else (f"finite on rank {rank} but not on another rank")
            )
            raise non_finite_error(f"{name} is {where}", batch)
    if not _clip_and_check(opt_params, params, max_grad_norm):
        raise non_finite_error(f"the gradient of {name} is not finite", batch)
    if averaging:
        with dist_utils.grads_already_averaged():
            for opt in optims:
                opt.step()
    else:
        for opt in optims:
            opt.step()
    return loss_value


def optimizer_steps(
    steps: Sequence[tuple[torch.optim.Optimizer, torch.Tensor, Iterable[torch.Tensor], str]],
    max_grad_norm: float | None = None,
    *,
    batch: Mapping[str, Any] | None = None,
) -> list[float]:
    """:func:`optimizer_step` for several losses of disjoint parameters (a policy's and a
    value function's), with one backward pass for all of them.

    The same gradients, clips and steps as one ``optimizer_step`` per loss in turn, when no
    loss depends on another optimiser's parameters: one autograd call instead of one per loss
    (about an eighth of a PPO update with 64x64 networks on the CPU). Each ``params`` is
    clipped to ``max_grad_norm`` on its own. Nothing steps when any loss or gradient is
    non-finite (the error names the first). Only the optimisers' registered parameters are
    checked for overlap: a loss that reaches another optimiser's parameters some other way
    would have its gradient added there.

    Parameters
    ----------
    steps : sequence of (optimizer, loss, params, name)
        Each optimiser, its scalar loss ``()``, the parameters whose gradient norm it clips
        and the loss's name for error messages.
    max_grad_norm : float, optional
        Clip each step's gradient norm to this value.
    batch : mapping, optional
        As in :func:`optimizer_step`.

    Returns
    -------
    list of float
        Each loss before the step.

    Raises
    ------
    ValueError
        When two optimisers hold a common parameter, or gradients are averaged over ranks
        here (``optimizer_step`` per loss does both).
    NonFiniteError
        A loss or a gradient is NaN or infinite; no optimiser has stepped.
    """
    optims = [opt for opt, _, _, _ in steps]
    opt_params = [optimizer_params(opt) for opt in optims]
    held = [id(p) for params in opt_params for p in params]
    if len(set(held)) != len(held):
        raise ValueError("steps: the optimisers share parameters; use optimizer_step per loss")
    if dist_utils.averages_here(optims):
        raise ValueError("steps: gradients are averaged over ranks; use optimizer_step per loss")
    return separate_steps(steps, opt_params, max_grad_norm, batch)


def optimizer_params(optim: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The parameters ``optim`` steps, in the order of its groups."""
    return [p for group in optim.param_groups for p in group["params"]]


def separate_steps(
    steps: Sequence[tuple[torch.optim.Optimizer, torch.Tensor, Iterable[torch.Tensor], str]],
    opt_params: Sequence[list[torch.Tensor]],
    max_grad_norm: float | None | Sequence[float | None],
    batch: Mapping[str, Any] | None,
) -> list[float]:
    """:func:`optimizer_steps` without its checks, for a caller that made them once for many
    calls (``machina.algos._common.PolVfStep``): ``opt_params[i]`` is
    ``optimizer_params(steps[i][0])``, the optimisers share no parameter and nothing averages
    their gradients over ranks. ``max_grad_norm``: one clip for every step, or one per step
    (None: no clip)."""
    clips = (
        [max_grad_norm] * len(steps)
        if max_grad_norm is None or isinstance(max_grad_norm, (int, float))
        else list(max_grad_norm)
    )
    optims = [opt for opt, _, _, _ in steps]
    if batch_share.take_share_note():  # nothing averages here
        _warn_share_not_averaged()
    values = [float(loss.detach()) for _, loss, _, _ in steps]
    for value, (_, _, _, name) in zip(values, steps):
        if not math.isfinite(value):
            raise non_finite_error(f"{name} is {value}", batch)
    for opt in optims:
        opt.zero_grad(set_to_none=True)
    torch.autograd.backward([loss for _, loss, _, _ in steps])
    for own, clip, (_, _, params, name) in zip(opt_params, clips, steps):
        if not _clip_and_check(own, params, clip):
            raise non_finite_error(f"the gradient of {name} is not finite", batch)
    for opt in optims:
        opt.step()
    return values


_WARNED_SHARE = [False]


def _warn_share_not_averaged() -> None:
    """Warn once per process: a step on a rank's share of a minibatch, nothing averaged."""
    if _WARNED_SHARE[0]:
        return
    _WARNED_SHARE[0] = True
    warnings.warn(
        "Traj(ddp=True) gave this rank a share of a minibatch, and this step averages no "
        "gradient over the ranks: each rank trains on its share alone and the ranks drift "
        "apart. machina.distributed.init() turns averaging on; with a process group of your "
        "own, call machina.utils.distributed.set_grad_averaging(True) (harmless if your "
        "gradients are averaged another way, e.g. by DistributedDataParallel)",
        RuntimeWarning,
        stacklevel=3,
    )


def _clip_and_check(
    opt_params: list[torch.Tensor],
    params: Iterable[torch.Tensor] | None,
    max_grad_norm: float | None,
) -> bool:
    """Clip the gradient norm of ``params`` (default ``opt_params``) to ``max_grad_norm``
    when given; whether every gradient of ``opt_params`` is finite."""
    grads = [p.grad for p in opt_params if p.grad is not None]
    if max_grad_norm is None:
        return _grads_finite(grads) if grads else True
    clip = opt_params if params is None else list(params)
    # The clip's total norm doubles as the finiteness check when it covers every gradient
    # the optimisers will use (the usual case).
    total_norm = _clip_grad_norm(clip, max_grad_norm)
    if not math.isfinite(total_norm):
        return False
    if not {id(g) for g in grads} <= {id(p.grad) for p in clip if p.grad is not None}:
        return all_finite(grads)
    return True


def _clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_(params, max_norm)`` as a float, with the same
    arithmetic (the same foreach kernels in the same order, so the same bits).

    The usual case, dense gradients of one device and dtype, skips torch's per-call grouping
    by device and dtype and its checks, about half its cost on a small network's gradients
    (~70 against ~150 us on a 64x64 MLP); any other case is torch's own.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    first = grads[0]
    if first.device.type not in ("cpu", "cuda") or any(
        g.layout is not torch.strided or g.device != first.device or g.dtype != first.dtype
        for g in grads
    ):
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(float(max_norm) / (total + 1e-6), max=1.0))
    return float(total)


# Per thread and device: the found-flag and the unit scale of the finiteness kernel, made
# once. Allocating the two one-element tensors at every step cost three quarters of the
# check (measured: ~35 us of optimizer_step on a 64x64 MLP's gradients, ~8 us with these).
_CHECK_TENSORS = threading.local()


def _grads_finite(grads: list[torch.Tensor]) -> bool:
    """``checks.all_finite(grads)`` with the kernel's two small tensors reused (see above)."""
    device = grads[0].device
    if any(g.device != device for g in grads):
        return all_finite(grads)  # several devices: rare; allocates as before
    cache = _CHECK_TENSORS.__dict__
    tensors = cache.get(device)
    if tensors is None:
        tensors = cache[device] = (torch.zeros(1, device=device), torch.ones(1, device=device))
    found, one = tensors
    found.zero_()
    # multiplies every gradient by 1 (no change) and sets found where any is NaN or inf
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
    return not bool(found)


def non_finite_error(what: str, batch: Mapping[str, Any] | None) -> NonFiniteError:
    """The error for a non-finite loss or gradient: what, the batch keys and which of them
    hold non-finite values (looked at only now, on the error path). Nested mappings (e.g.
    ``{"agent": agent_batch, "expert": expert_batch}``) give dotted keys."""
    msg = (
        f"{what}; the optimiser did not step (parameters and optimiser state are as before "
        "this step; a train call's earlier steps, if any, were applied)"
    )
    if batch is None:
        return NonFiniteError(msg)
    flat: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    bad = [
        k
        for k, v in flat.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(v.isfinite().all())
    ]
    msg += f"; batch keys: {sorted(flat)}"
    msg += f"; non-finite values in: {bad}" if bad else "; every batch value is finite"
    share = batch_share.share_of(batch)
    if share is not None and share.start == share.stop:
        msg += (
            "; this rank's share of the minibatch is empty (a last minibatch of fewer items "
            "than ranks under Traj(ddp=True)), and a plain mean of nothing is NaN: take the "
            "loss's mean with machina.utils.batch_share.share_mean(x, batch)"
        )
    return NonFiniteError(msg)


def _as_modules(modules: torch.nn.Module | Sequence[torch.nn.Module]) -> list[torch.nn.Module]:
    return [modules] if isinstance(modules, torch.nn.Module) else list(modules)


def polyak_update(
    target: torch.nn.Module | Sequence[torch.nn.Module],
    source: torch.nn.Module | Sequence[torch.nn.Module],
    tau: float,
) -> None:
    """Move ``target``'s parameters toward ``source``'s: ``target = (1 - tau) * target + tau *
    source``, in place and without gradient; buffers (e.g. batch-norm statistics) are copied.

    Every algorithm with target networks calls this one helper.

    Parameters
    ----------
    target, source : torch.nn.Module or sequence of torch.nn.Module
        Networks of the same architecture (a sequence is updated pairwise, e.g. twin Q).
    tau : float
        In ``[0, 1]``: 0 leaves ``target``'s parameters as they are, 1 copies ``source``.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau: expected a float in [0, 1], got {tau!r}")
    targets, sources = _as_modules(target), _as_modules(source)
    if len(targets) != len(sources):
        raise ValueError(
            f"target: expected as many modules as source ({len(sources)}), got {len(targets)}"
        )
    with torch.no_grad():
        for targ_module, src_module in zip(targets, sources):
            targ_params = list(targ_module.parameters())
            src_params = list(src_module.parameters())
            targ_buffers = list(targ_module.buffers())
            src_buffers = list(src_module.buffers())
            shapes = [tuple(p.shape) for p in targ_params + targ_buffers]
            if shapes != [tuple(p.shape) for p in src_params + src_buffers]:
                raise ValueError(
                    f"target: {type(targ_module).__name__} does not have the parameters and "
                    f"buffers of source {type(src_module).__name__} (shapes differ); make it "
                    "with copy.deepcopy(source)"
                )
            # one fused call for all parameters: a loop of lerp_ costs far more per step
            # (example/benchmarks/README.md, "Measurements behind the code")
            torch._foreach_lerp_(targ_params, src_params, tau)
            for targ, src in zip(targ_buffers, src_buffers):
                targ.copy_(src)


@contextlib.contextmanager
def frozen(modules: Iterable[torch.nn.Module]) -> Iterator[None]:
    """Turn off ``requires_grad`` of the modules' parameters inside the block.

    A policy loss that back-propagates through Q functions needs no gradient for the Q
    functions' own parameters; freezing them skips that work.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
