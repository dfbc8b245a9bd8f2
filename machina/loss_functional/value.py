"""Value-function losses."""

from __future__ import annotations

import torch

from machina.loss_functional._common import Batch, masked_mean, run


def monte_carlo(
    vf: torch.nn.Module, batch: Batch, clip_param: float = 0.2, clip: bool = False
) -> torch.Tensor:
    """Regression of V(obs) onto ``rets``: ``0.5 * E[(V - rets)^2]``.

    Parameters
    ----------
    vf : torch.nn.Module
        A machina state-value function.
    batch : dict of str to torch.Tensor
        ``obs`` and ``rets`` (and ``vs``, the values at sampling time, when ``clip``).
    clip_param : float
        With ``clip``, the new values may move at most this far from ``vs`` before the
        loss stops rewarding them (PPO2's value clipping).
    clip : bool
        Clip as above.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    vs = run(vf, batch)[0]
    rets = batch["rets"]
    loss = (vs - rets) ** 2
    if clip:
        old_vs = batch["vs"]
        clipped = old_vs + torch.clamp(vs - old_vs, -clip_param, clip_param)
        loss = torch.max(loss, (clipped - rets) ** 2)
    return 0.5 * masked_mean(loss, batch)
