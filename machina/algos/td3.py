"""Twin delayed DDPG (Fujimoto et al., 2018, arXiv:1802.09477)."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import torch

from machina import loss_functional as lf
from machina.algos._common import check_feed_forward, check_traj, log
from machina.algos.sac import OFF_POLICY_KEYS
from machina.traj import Traj
from machina.utils.training import frozen, optimizer_step, polyak_update


def train(
    traj: Traj,
    pol: torch.nn.Module,
    qfs: Sequence[torch.nn.Module],
    targ_pol: torch.nn.Module,
    targ_qfs: Sequence[torch.nn.Module],
    optim_pol: torch.optim.Optimizer,
    optim_qfs: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    epoch: int,
    batch_size: int,
    tau: float,
    gamma: float,
    pol_update_delay: int = 2,
    target_noise: float = 0.2,
    target_noise_clip: float = 0.5,
    log_enable: bool = True,
    max_grad_norm: float | None = None,
) -> dict[str, list[float]]:
    """Take ``epoch`` TD3 gradient steps, each on a uniform random batch of ``traj``.

    Each step regresses both Q functions onto the clipped double-Q target with target policy
    smoothing (:func:`machina.loss_functional.td3_targets`). Every ``pol_update_delay``-th
    step of this call also steps ``pol`` against ``qfs[0]`` and moves all targets toward
    their networks by ``tau``.

    Parameters
    ----------
    traj : Traj
        Replay memory with ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms``.
    pol, targ_pol : torch.nn.Module
        Deterministic policy (``DeterministicActionNoisePol``) and its target. Feed-forward.
    qfs, targ_qfs : sequence of torch.nn.Module
        Twin Q functions and their targets.
    optim_pol : torch.optim.Optimizer
        Optimiser of ``pol``.
    optim_qfs : torch.optim.Optimizer or sequence of them
        One per Q function, or one for all.
    epoch, batch_size, tau, gamma, log_enable
        As in ``ddpg.train``.
    pol_update_delay : int
        Q steps per policy (and target) step; counted within each call, so a call with
        ``epoch < pol_update_delay`` steps neither the policy nor the targets (a warning
        says so).
    max_grad_norm : float, optional
        Gradient-norm clip of the policy's step and of the Q functions' step (one norm over
        both Q functions: they step together on their summed loss).
    target_noise, target_noise_clip : float
        Standard deviation and clip of the smoothing noise, in the policy's action space.

    Returns
    -------
    dict
        ``QfLoss`` (mean over the Q functions, one per step) and ``PolLoss`` (one per
        policy step).
    """
    check_traj(traj, OFF_POLICY_KEYS, "td3")
    qfs, targ_qfs = list(qfs), list(targ_qfs)
    check_feed_forward("td3", pol=pol, qfs=qfs)
    if pol_update_delay < 1:
        raise ValueError(f"pol_update_delay: expected an int >= 1, got {pol_update_delay!r}")
    for name, value in (("target_noise", target_noise), ("target_noise_clip", target_noise_clip)):
        # a negative clip made clamp(c, -c): every target action moved by -c, silently
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise ValueError(f"td3.train: {name}: expected a float >= 0, got {value!r}")
    if epoch < pol_update_delay:
        warnings.warn(
            f"td3.train: epoch={epoch} < pol_update_delay={pol_update_delay}: this call steps "
            "only the Q functions (the delay counts steps within one call); pass epoch >= "
            "pol_update_delay, e.g. the steps sampled since the last call",
            stacklevel=2,
        )
    log(log_enable, "Optimizing...")
    pol_losses, qf_losses = [], []
    qf_params = [p for qf in qfs for p in qf.parameters()]
    for step, batch in enumerate(traj.random_batch(batch_size, epoch), start=1):
        targets = lf.td3_targets(targ_pol, targ_qfs, batch, gamma, target_noise, target_noise_clip)
        qf_loss = sum(lf.q_regression(qf, batch, targets) for qf in qfs)
        qf_losses.append(
            optimizer_step(
                optim_qfs, qf_loss, qf_params, max_grad_norm, name="td3.train: qf_loss", batch=batch
            )
            / len(qfs)
        )
        if step % pol_update_delay == 0:
            with frozen(qfs):
                pol_loss = lf.ddpg_pol(pol, qfs[0], batch)
                pol_losses.append(
                    optimizer_step(
                        optim_pol,
                        pol_loss,
                        None,
                        max_grad_norm,
                        name="td3.train: pol_loss",
                        batch=batch,
                    )
                )
            polyak_update([targ_pol, *targ_qfs], [pol, *qfs], tau)
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=pol_losses, QfLoss=qf_losses)
