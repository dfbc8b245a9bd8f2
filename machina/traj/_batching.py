"""Index arithmetic shared by the Traj batch generators."""

from __future__ import annotations

import operator
from collections.abc import Iterator

import torch


def check_batch_size(batch_size: int, available: int, unit: str) -> int:
    """``batch_size`` as an int; a ValueError naming it when it is not in ``[1, available]``."""
    try:
        batch_size = operator.index(batch_size)
    except TypeError:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}") from None
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if available == 0:
        raise ValueError("batch_size: the Traj holds no steps; call register_epis() first")
    if batch_size > available:
        raise ValueError(
            f"batch_size: expected at most the {available} {unit} the Traj holds, got {batch_size}"
        )
    return batch_size


def shuffled_chunks(n: int, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """A random permutation of ``range(n)`` cut into chunks of ``batch_size`` (last smaller)."""
    perm = torch.randperm(n, device=device)
    yield from torch.split(perm, batch_size)


def gather_sequences(
    columns: dict[str, torch.Tensor],
    starts: torch.Tensor,
    lengths: torch.Tensor,
    time_steps: int | None = None,
) -> dict[str, torch.Tensor]:
    """Gather flat columns into zero-padded time-major sequences.

    Parameters
    ----------
    columns : dict of str to torch.Tensor
        Flat columns, shape (N, ...).
    starts, lengths : torch.Tensor
        Start index and length of each sequence, shape (B,).
    time_steps : int, optional
        Padded length T; default the longest sequence, ``T_max``.

    Returns
    -------
    dict of str to torch.Tensor
        Each column as (T, B, ...) with zeros past each sequence's end, plus
        ``out_masks`` (T, B) float32, 1.0 on real steps.
    """
    if time_steps is None:
        time_steps = int(lengths.max())
    t = torch.arange(time_steps, device=starts.device)[:, None]
    valid = t < lengths[None, :]
    indices = torch.where(valid, starts[None, :] + t, starts[None, :])
    batch = {}
    flat = indices.reshape(-1)
    for key, col in columns.items():
        # index_select on the flat indices: twice as fast as col[indices] on CPU.
        gathered = torch.index_select(col, 0, flat).reshape(*indices.shape, *col.shape[1:])
        mask = valid.reshape(valid.shape + (1,) * (col.dim() - 1))
        batch[key] = torch.where(mask, gathered, torch.zeros((), dtype=col.dtype))
    batch["out_masks"] = valid.to(torch.float32)
    return batch
