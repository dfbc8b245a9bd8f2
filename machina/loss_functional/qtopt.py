"""QT-Opt's clipped double Q-learning with a CEM argmax (Kalashnikov et al., 2018).

QT-Opt keeps two target Q functions: ``targ_qf1`` follows the online ``qf`` and picks the
next action by the cross-entropy method (``CEMDeterministicSAVfunc.max``); ``targ_qf2``
follows a *lagged* copy of ``qf`` that the user refreshes every few thousand steps. The
target is the smaller of the two at that action, as in TD3's clipped double Q.
"""

from __future__ import annotations

import torch

from machina.loss_functional._common import Batch, mean_loss
from machina.loss_functional.q import bellman_target, q_regression
from machina.utils import batch_share

LOSS_TYPES = ("mse", "bce")


def clipped_double_targets(
    targ_qf1: torch.nn.Module, targ_qf2: torch.nn.Module, batch: Batch, gamma: float
) -> torch.Tensor:
    """``r + gamma * (1 - term) * min(Q'_1(s', a*), Q'_2(s', a*))``, ``a* = argmax Q'_1(s', .)``.

    Parameters
    ----------
    targ_qf1 : torch.nn.Module
        Target Q function with ``max(obs) -> (max_qs (B,), max_acs (B, d))``, e.g. a
        ``CEMDeterministicSAVfunc``.
    targ_qf2 : torch.nn.Module
        Lagged target Q function, ``targ_qf2(obs, acs) -> (qs (B,), info)``.
    batch : dict of str to torch.Tensor
        ``rews (B,)``, ``next_obs (B, *ob_shape)`` and ``terms (B,)``.
    gamma : float
        Discount.

    Returns
    -------
    torch.Tensor
        ``(B,)`` targets, without gradient.
    """
    with torch.no_grad(), batch_share.drawing_for(batch):
        next_obs = batch["next_obs"]
        max_qs, max_acs = targ_qf1.max(next_obs)
        lagged_qs = targ_qf2(next_obs, max_acs)[0]
        next_qs = torch.minimum(max_qs, lagged_qs)
        return bellman_target(batch["rews"], batch["terms"], next_qs, gamma)


def clipped_double_bellman(
    qf: torch.nn.Module,
    targ_qf1: torch.nn.Module,
    targ_qf2: torch.nn.Module,
    batch: Batch,
    gamma: float,
    loss_type: str = "bce",
) -> torch.Tensor:
    """QT-Opt's Bellman loss of ``qf`` against :func:`clipped_double_targets`, a scalar.

    Parameters
    ----------
    qf, targ_qf1, targ_qf2 : torch.nn.Module
        Online Q function and the two targets (see :func:`clipped_double_targets`).
    batch : dict of str to torch.Tensor
        ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms``, leading ``(B,)``.
    gamma : float
        Discount.
    loss_type : {"bce", "mse"}
        ``"bce"`` (machina 0.x's default here; ``qtopt.train``'s is ``"mse"``): binary
        cross-entropy, as QT-Opt uses for success rewards in ``[0, 1]``; ``qf`` must then
        output probabilities (e.g. a net ending in a sigmoid) and the targets, clamped to
        ``[0, 1]``, are soft labels. ``"mse"``: ``0.5 * E[(Q - y)^2]``.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type: expected one of {LOSS_TYPES}, got {loss_type!r}")
    targets = clipped_double_targets(targ_qf1, targ_qf2, batch, gamma)
    if loss_type == "mse":
        return q_regression(qf, batch, targets)
    qs = qf(batch["obs"], batch["acs"])[0]
    if bool(((qs < 0) | (qs > 1)).any()):
        qs = qs.detach()
        raise ValueError(
            "qf: loss_type='bce' needs Q values in [0, 1] (a net ending in a sigmoid), got "
            f"values in [{float(qs.min()):.3g}, {float(qs.max()):.3g}]"
        )
    return mean_loss(
        torch.nn.functional.binary_cross_entropy, qs, targets.clamp(0.0, 1.0), batch=batch
    )
