"""Pieces every algorithm shares: checks, batch iteration and optimiser steps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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
}


def check_traj(traj: Traj, keys: Iterable[str], algo: str) -> None:
    """Raise a clear error when ``traj`` is not a registered Traj holding ``keys``."""
    if not isinstance(traj, Traj):
        raise TypeError(
            f"{algo}.train: traj: expected a machina.traj.Traj, got {type(traj).__name__}"
        )
    if traj.num_step == 0:
        hint = " (episodes are pending: call traj.register_epis())" if traj.current_epis else ""
        raise ValueError(f"{algo}.train: traj holds no registered steps{hint}")
    for key in keys:
        if key not in traj.data_map:
            adder = ADDED_BY.get(key)
            hint = f"; add it with {adder} before traj.register_epis()" if adder else ""
            raise KeyError(f"{algo}.train: traj has no '{key}'{hint}")


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


def optimizer_step(
    optim: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Iterable[torch.Tensor] | None = None,
    max_grad_norm: float | None = None,
) -> float:
    """Zero the gradients, back-propagate ``loss``, clip their norm and take one step.

    Returns the loss as a float.
    """
    optim.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        if params is None:
            params = [p for group in optim.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optim.step()
    return float(loss.detach())


def log(enabled: bool, msg: str) -> None:
    if enabled:
        from machina import logger

        logger.log(msg)
