"""Pieces every algorithm shares: checks, batch iteration and optimiser steps."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from machina.traj import Traj
from machina.utils import distributed as dist_utils
from machina.utils.checks import NonFiniteError

Batch = dict[str, torch.Tensor]

# Which estimator adds each key an algorithm may need, for error messages.
ADDED_BY = {
    "advs": "ef.compute_advs(traj, gamma, lam)",
    "rets": "ef.compute_rets(traj, gamma)",
    "vs": "ef.compute_vs(traj, vf)",
    "next_vs": "ef.compute_vs(traj, vf)",
    "h_masks": "ef.compute_h_masks(traj)",
    "next_obs": "ef.add_next_obs(traj)",
    "terms": "EpiSampler (its episodes carry 'terms' and 'truncs'; record them in your own)",
}


def check_traj(traj: Traj, keys: Iterable[str], algo: str, name: str = "traj") -> None:
    """Raise a clear error when ``traj`` is not a registered Traj holding ``keys``.

    ``name`` is the argument's name in ``algo``'s ``train`` (e.g. ``"expert_traj"``), used in
    the messages.
    """
    if not isinstance(traj, Traj):
        raise TypeError(
            f"{algo}.train: {name}: expected a machina.traj.Traj, got {type(traj).__name__}"
        )
    if traj.num_step == 0:
        pending = f" (episodes are pending: call {name}.register_epis())"
        hint = pending if traj.current_epis else ""
        raise ValueError(f"{algo}.train: {name} holds no registered steps{hint}")
    for key in keys:
        if key not in traj.data_map:
            adder = ADDED_BY.get(key)
            if adder:
                adder = adder.replace("(traj", f"({name}", 1)  # the caller's argument name
            hint = f"; add it with {adder} before {name}.register_epis()" if adder else ""
            raise KeyError(f"{algo}.train: {name} has no '{key}'{hint}")


def is_recurrent(*modules: torch.nn.Module) -> bool:
    return any(getattr(m, "rnn", False) for m in modules)


def minibatches(
    traj: Traj,
    modules: Iterable[torch.nn.Module],
    batch_size: int,
    epoch: int,
    num_epi_per_seq: int = 1,
) -> Iterator[Batch]:
    """Shuffled step batches, or whole-episode sequences when any module is recurrent.

    For recurrent modules ``batch_size`` counts sequences, otherwise steps.
    """
    if is_recurrent(*modules):
        return traj.iterate_rnn(batch_size, num_epi_per_seq=num_epi_per_seq, epoch=epoch)
    return traj.iterate(batch_size, epoch=epoch)


def whole_batch(traj: Traj, modules: Iterable[torch.nn.Module]) -> Batch:
    """Every step of ``traj`` in one batch (all episodes as sequences when recurrent)."""
    if is_recurrent(*modules):
        return next(traj.iterate_rnn(traj.num_epi))
    return dict(traj.data_map)


def check_sampling(sampling: int, fn_name: str) -> None:
    """A ValueError naming ``fn_name`` unless ``sampling`` (actions drawn per state) is an
    int >= 1."""
    if isinstance(sampling, bool) or not isinstance(sampling, int) or sampling < 1:
        raise ValueError(f"{fn_name}: sampling: expected an int >= 1, got {sampling!r}")


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
    gradients of the optimisers' parameters are averaged over ranks in one flattened
    all-reduce, **before** clipping, so ``max_grad_norm`` clips the averaged gradient and
    every rank takes the same step. The loss travels in the same all-reduce, so all ranks
    agree on whether to raise.

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
    opt_params = [p for opt in optims for group in opt.param_groups for p in group["params"]]
    averaging = dist_utils.averages_here(optims)
    loss_value = float(loss.detach())
    if not averaging and not math.isfinite(loss_value):
        raise _non_finite(f"{name} is {loss_value}", batch)
    for opt in optims:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if averaging:
        mean_loss = float(dist_utils.average_gradients(opt_params, extra=loss.detach()))
        if not math.isfinite(mean_loss):
            rank = dist_utils.get_rank()
            where = (
                f"{loss_value} on rank {rank}"
                if not math.isfinite(loss_value)
                else (f"finite on rank {rank} but not on another rank")
            )
            raise _non_finite(f"{name} is {where}", batch)
    grads = [p.grad for p in opt_params if p.grad is not None]
    # One norm serves both the clip and the finiteness check (a single host sync).
    if max_grad_norm is not None:
        clip = opt_params if params is None else list(params)
        total = torch.nn.utils.clip_grad_norm_(clip, max_grad_norm)
        if not {id(g) for g in grads} <= {id(p.grad) for p in clip if p.grad is not None}:
            total = torch.nn.utils.get_total_norm(grads)  # some stepped grads were not clipped
    else:
        total = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
    total_norm = float(total)
    if not math.isfinite(total_norm):
        raise _non_finite(f"the gradient of {name} is not finite (norm {total_norm})", batch)
    with dist_utils.grads_already_averaged() if averaging else contextlib.nullcontext():
        for opt in optims:
            opt.step()
    return loss_value


def _non_finite(what: str, batch: Mapping[str, Any] | None) -> NonFiniteError:
    """The error for a non-finite loss or gradient: what, the batch keys and which of them
    hold non-finite values (looked at only now, on the error path). Nested mappings (e.g.
    ``{"agent": agent_batch, "expert": expert_batch}``) give dotted keys."""
    msg = f"{what}; the optimiser did not step (parameters and optimiser state are unchanged)"
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
        In ``[0, 1]``: 0 leaves ``target`` as it is, 1 copies ``source``.
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
            # one fused call for all parameters (a loop of lerp_ costs ~1 ms per SAC step)
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


def check_feed_forward(algo: str, **modules: torch.nn.Module) -> None:
    """Raise a clear error if any of the named modules is recurrent (not supported here)."""
    for name, module in modules.items():
        for m in _as_modules(module):
            if getattr(m, "rnn", False):
                raise ValueError(
                    f"{algo}.train: {name}: recurrent modules (rnn=True) are not supported; "
                    "train on feed-forward ones"
                )


def log(enabled: bool, msg: str) -> None:
    if enabled:
        from machina import logger

        logger.log(msg)
