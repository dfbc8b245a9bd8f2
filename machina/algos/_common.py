"""Pieces every algorithm shares: checks, batch iteration and optimiser steps."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch

from machina.traj import Traj

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
) -> float:
    """Zero the gradients, back-propagate ``loss``, clip their norm and take one step.

    ``optim`` may be a sequence of optimisers (e.g. one per Q function of a twin): one
    backward pass of the summed losses, then every optimiser steps. Returns the loss as a
    float.
    """
    optims = list(optim) if isinstance(optim, list | tuple) else [optim]
    for opt in optims:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        if params is None:
            params = [p for opt in optims for group in opt.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    for opt in optims:
        opt.step()
    return float(loss.detach())


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
