"""Training a dynamics model for model predictive control.

Nagabandi et al., 2018, "Neural Network Dynamics for Model-Based Deep Reinforcement Learning
with Model-Free Fine-Tuning" (arXiv:1708.02596). The planner that uses the model is
``machina.pols.mpc_pol.MPCPol``; the user's loop alternates this training with sampling by
the planner, aggregating the episodes into one ``Traj``.
"""

from __future__ import annotations

import torch

from machina.algos._common import check_traj, log
from machina.loss_functional.model import dynamics
from machina.models.deterministic_state_model import DeterministicSModel
from machina.traj import Traj
from machina.utils.training import optimizer_step

MODEL_KEYS = ("obs", "acs", "next_obs")


def update_dm(
    dm: DeterministicSModel,
    optim_dm: torch.optim.Optimizer,
    batch: dict,
    target: str = "next_obs",
    td: bool = True,
) -> float:
    """One step of the dynamics model on ``batch`` (``lf.dynamics`` with ``target``, ``td``).

    Returns the loss before the step.
    """
    return optimizer_step(optim_dm, dynamics(dm, batch, target=target, td=td))


def train_dm(
    traj: Traj,
    dyn_model: DeterministicSModel,
    optim_dm: torch.optim.Optimizer,
    epoch: int = 60,
    batch_size: int = 512,
    target: str = "next_obs",
    td: bool = True,
    num_epi_per_seq: int = 1,
    log_enable: bool = True,
    update_stats: bool = True,
    max_grad_norm: float | None = None,
) -> dict:
    """Regress the dynamics model onto the observation changes in ``traj``.

    Parameters
    ----------
    traj : Traj
        Registered episodes with ``obs``, ``acs`` and ``next_obs`` (all of the episodes seen
        so far, typically: random warm-up episodes plus the planner's).
    dyn_model : DeterministicSModel
        The dynamics model.
    optim_dm : torch.optim.Optimizer
        Optimiser of ``dyn_model``'s parameters.
    epoch : int
        Feed-forward: number of gradient steps, each on ``batch_size`` steps drawn uniformly
        with replacement. Recurrent: passes over the episodes.
    batch_size : int
        Steps per batch, or whole-episode sequences per batch when recurrent; capped at what
        ``traj`` holds.
    target : str
        The key the model predicts: ``'next_obs'``, or another key of the model's output
        shape such as ``'rews'`` (see :func:`machina.loss_functional.dynamics`).
    td : bool
        With ``target='next_obs'``: learn the standardised change of the observation (True)
        or the next observation in real units (False).
    num_epi_per_seq : int
        Recurrent only: episodes joined into one sequence.
    log_enable : bool
        Log progress through ``machina.logger``.
    update_stats : bool
        First set the model's normalisation statistics from all of ``traj``
        (:meth:`DeterministicSModel.update_stats`), so they follow the aggregated data.
    max_grad_norm : float, optional
        Gradient-norm clip.

    Returns
    -------
    dict
        ``DynModelLoss``: one float per gradient step (``lf.dynamics``'s loss).
    """
    if not isinstance(target, str):
        raise TypeError(f"mpc.train_dm: target: expected a key of traj, got {target!r}")
    check_traj(traj, MODEL_KEYS if target in MODEL_KEYS else (*MODEL_KEYS, target), "mpc")
    if update_stats:
        dyn_model.update_stats(traj)
    log(log_enable, "Optimizing...")
    if getattr(dyn_model, "rnn", False):
        batches = traj.iterate_rnn(
            min(batch_size, traj.num_epi), num_epi_per_seq=num_epi_per_seq, epoch=epoch
        )
    else:
        batches = traj.random_batch(min(batch_size, traj.num_step), epoch)
    losses = [
        optimizer_step(
            optim_dm,
            dynamics(dyn_model, batch, target=target, td=bool(td)),
            None,
            max_grad_norm,
            name="mpc.train_dm: dm_loss",
            batch=batch,
        )
        for batch in batches
    ]
    log(log_enable, "Optimization finished!")
    return dict(DynModelLoss=losses)


#: the name the issue and other machina algorithms use: ``mpc.train(traj, dm, optim_dm, ...)``
train = train_dm
