"""How an episode ended, read from the flags a batch or an episode's columns carry."""

from __future__ import annotations

from typing import Any

import torch


def terminated(data: Any) -> Any:
    """Termination flags of ``data``, a batch of tensors or episode columns of arrays (anything
    with ``in`` and ``[]``): its ``terms``; without them (older data), ``dones`` except where
    ``truncs`` marks a truncation (``dones`` is either), or every ``dones`` end without
    ``truncs`` (machina 0.x). An end both terminated and truncated needs ``terms``."""
    if "terms" in data:
        return data["terms"]
    dones = data["dones"]
    if "truncs" not in data:
        return dones
    truncs = data["truncs"]
    if isinstance(dones, torch.Tensor):
        return dones.bool() & ~truncs.bool()
    return dones.astype(bool) & ~truncs.astype(bool)
