"""Dynamics-model losses as pure functions of (model, batch)."""

from __future__ import annotations

import torch

from machina.loss_functional._common import Batch, masked_mean
from machina.models.deterministic_state_model import DeterministicSModel


def dynamics(
    dm: DeterministicSModel, batch: Batch, target: str = "next_obs", td: bool = True
) -> torch.Tensor:
    """Half the mean squared error of the standardised observation change (machina 0.x's
    scale: every branch is ``0.5 * mean((pred - goal) ** 2)``).

    ``dm``'s net predicts ``(next_obs - obs - mean_d_obs) / std_d_obs``; each dimension's
    error counts alike, whatever its scale (Nagabandi et al., 2018, arXiv:1708.02596).

    With ``td=False`` the predicted next observation ``obs + dm(obs, acs)`` is compared with
    ``next_obs`` in real units; with another ``target`` key (e.g. ``'rews'``) the model's
    output itself is compared with ``batch[target]``. Both are half the mean squared error
    over dimensions and real steps.

    Parameters
    ----------
    dm : DeterministicSModel
        The dynamics model.
    batch : dict of str to torch.Tensor
        ``obs``, ``acs`` and ``next_obs`` of shape (B, ...), or (T, B, ...) with ``h_masks``
        and ``out_masks`` when ``dm`` is recurrent (``Traj.iterate_rnn``).
    target : str
        The batch key predicted: ``'next_obs'`` or another key of the model's output shape.
    td : bool
        With ``target='next_obs'``: learn the standardised change (True) or the next
        observation in real units (False).

    Returns
    -------
    torch.Tensor
        Scalar loss: half the squared error averaged over dimensions and real steps.
    """
    obs, acs = batch["obs"], batch["acs"]
    if target not in batch:
        raise KeyError(f"batch: dynamics target {target!r} is not a key of the batch")
    rnn = getattr(dm, "rnn", False)
    if rnn and "h_masks" not in batch:
        raise KeyError("batch: a recurrent dynamics model needs 'h_masks'; use iterate_rnn")
    kwargs = dict(h_masks=batch["h_masks"]) if rnn else {}
    if rnn:
        dm.reset()
    if target == "next_obs" and td:
        pred, _ = dm.normalized_delta(obs, acs, **kwargs)
        goal = dm.normalize_delta(batch["next_obs"] - obs)
        return 0.5 * masked_mean((pred - goal).pow(2).mean(-1), batch)
    pred, _ = dm(obs, acs, **kwargs)
    goal = batch[target]
    if target == "next_obs":
        pred = obs + pred
    if goal.dim() == pred.dim() - 1:
        goal = goal.unsqueeze(-1)
    if goal.shape != pred.shape:
        raise ValueError(
            f"target: the model predicts shape {tuple(pred.shape)}, batch[{target!r}] has "
            f"{tuple(batch[target].shape)}"
        )
    return 0.5 * masked_mean((pred - goal).pow(2).mean(-1), batch)
