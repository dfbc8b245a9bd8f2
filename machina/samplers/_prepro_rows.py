"""A prepro on the observations of many environments at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def prepro_is_batched(prepro: Any) -> bool:
    """Whether ``prepro`` maps a batch ``(N, *ob_shape)`` as N observations at once: it says
    so with a true ``batched`` attribute (``machina.prepro.BasePrePro`` does), also as a
    bound method of such an object."""
    owner = getattr(prepro, "__self__", None)
    return bool(getattr(prepro, "batched", False) or getattr(owner, "batched", False))


def apply_prepro(prepro: Callable, raw: np.ndarray, batched: bool) -> np.ndarray:
    """``prepro`` on every row of ``raw (N, *raw_shape)``: one call when it is batched."""
    if batched:
        return np.asarray(prepro(raw))
    return np.stack([np.asarray(prepro(ob)) for ob in raw]) if len(raw) else raw
