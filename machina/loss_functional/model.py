"""Dynamics-model losses as pure functions of (model, batch)."""

from __future__ import annotations

import torch

from machina.loss_functional._common import Batch, masked_mean


def dynamics(dm: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean squared error of the standardised observation change.

    ``dm``'s net predicts ``(next_obs - obs - mean_d_obs) / std_d_obs``; each dimension's
    error counts alike, whatever its scale (Nagabandi et al., 2018, arXiv:1708.02596).

    Parameters
    ----------
    dm : DeterministicSModel
        The dynamics model.
    batch : dict of str to torch.Tensor
        ``obs``, ``acs`` and ``next_obs`` of shape (B, ...), or (T, B, ...) with ``h_masks``
        and ``out_masks`` when ``dm`` is recurrent (``Traj.iterate_rnn``).

    Returns
    -------
    torch.Tensor
        Scalar loss: the squared error averaged over dimensions and real steps.
    """
    obs, acs = batch["obs"], batch["acs"]
    if getattr(dm, "rnn", False):
        if "h_masks" not in batch:
            raise KeyError("batch: a recurrent dynamics model needs 'h_masks'; use iterate_rnn")
        dm.reset()
        pred, _ = dm.normalized_delta(obs, acs, h_masks=batch["h_masks"])
    else:
        pred, _ = dm.normalized_delta(obs, acs)
    target = dm.normalize_delta(batch["next_obs"] - obs)
    return masked_mean((pred - target).pow(2).mean(-1), batch)
