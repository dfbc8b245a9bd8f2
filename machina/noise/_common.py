"""Argument checks the noise classes share."""

from __future__ import annotations

import torch


def per_dim(name: str, value, dim: int, owner: str, nonnegative: bool = False) -> torch.Tensor:
    """``value`` as a float32 ``(dim,)`` tensor; a ValueError naming ``name`` otherwise."""
    tensor = torch.as_tensor(value, dtype=torch.float32)
    if tensor.ndim == 0:
        tensor = tensor.expand(dim).clone()
    if tuple(tensor.shape) != (dim,) or not bool(torch.isfinite(tensor).all()):
        raise ValueError(
            f"{name}: {owner} needs a finite float or {dim} floats (one per action dim), "
            f"got {value!r}"
        )
    if nonnegative and bool((tensor < 0).any()):
        raise ValueError(f"{name}: {owner} needs values >= 0, got {value!r}")
    return tensor
