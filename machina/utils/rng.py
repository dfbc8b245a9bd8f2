"""The global random generators' states (torch and CUDA, numpy, python) as one mapping: what a
checkpoint saves of a process (``machina.checkpoint``) and a Ray trainer of its own."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["global_rng_state", "set_global_rng_state"]


def global_rng_state() -> dict[str, Any]:
    """This process's global RNG states.

    Returns
    -------
    dict
        ``torch``: (S,) uint8; ``numpy``: ``np.random.get_state()``'s tuple (its key array
        (624,) uint32); ``python``: ``[version, internal (625 ints), gauss]`` (JSON-able);
        ``cuda``: a list of (S,) uint8, only when CUDA is available.
    """
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the global one)
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`global_rng_state`'s result (``cuda`` only where both have CUDA)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
