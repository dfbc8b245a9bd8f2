"""What the estimators that run networks share: the modules' device, chunked no-grad calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from machina.utils.tensors import to_numpy

# Rows per network call: bounds memory on million-step batches.
CHUNK = 65536


def module_device(*modules: Any) -> torch.device:
    """Device of the first parameter of the first ``torch.nn.Module`` among ``modules`` that
    has one (None and plain callables are skipped); CPU when there is none."""
    for module in modules:
        if isinstance(module, torch.nn.Module):
            param = next(module.parameters(), None)
            if param is not None:
                return param.device
    return torch.device("cpu")


def chunked_no_grad(
    num_rows: int, fn: Callable[[slice], torch.Tensor], chunk: int = CHUNK
) -> np.ndarray:
    """``fn`` over consecutive row slices of at most ``chunk`` rows, without autograd.

    Parameters
    ----------
    num_rows : int
        Rows to cover, ``[0, num_rows)``.
    fn : callable
        ``fn(rows: slice) -> tensor (n_rows, ...)`` on any device.

    Returns
    -------
    (num_rows, ...) float32 numpy array
        The chunks' outputs, concatenated.
    """
    out = []
    with torch.no_grad():
        for lo in range(0, num_rows, chunk):
            out.append(to_numpy(torch.as_tensor(fn(slice(lo, lo + chunk))), True))
    if not out:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(out).astype(np.float32)
