"""The error raised when training meets a non-finite loss or gradient, and cheap finiteness
checks of tensors and arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["NonFiniteError", "all_finite", "all_finite_array", "all_finite_tensor"]


def all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """True when every element of every (floating-point) tensor is finite.

    One fused pass per device and one host sync: the kernel ``torch.amp.GradScaler`` uses
    to find overflowed gradients (multiplying by 1, which leaves the values as they are).
    Cheaper than a gradient norm (``torch.nn.utils.get_total_norm``); the timings are in
    "Measurements behind the code", example/benchmarks/README.md.
    """
    device = tensors[0].device if tensors else None
    if all(t.device == device for t in tensors):  # the usual case: one device, one kernel
        groups = [tensors] if tensors else []
    else:
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for t in tensors:
            by_device.setdefault(t.device, []).append(t)
        groups = list(by_device.values())
    found = []
    for group in groups:
        flag = torch.zeros(1, device=group[0].device)
        one = torch.ones(1, device=group[0].device)
        torch._amp_foreach_non_finite_check_and_unscale_(list(group), flag, one)
        found.append(flag)
    return not any(bool(f) for f in found)


def all_finite_array(arr: np.ndarray) -> bool:
    """True when ``arr`` (any shape) holds no NaN or inf.

    ``count_nonzero`` is several times cheaper than ``.all()`` on the small arrays a sampler
    checks every step.
    """
    return np.count_nonzero(np.isfinite(arr)) == arr.size


def all_finite_tensor(x: torch.Tensor) -> bool:
    """True when ``x`` (any shape) holds no NaN or inf.

    On the CPU the check runs in numpy, a few times cheaper on the small batches a sampler
    passes than torch's ``isfinite(x).all()`` with its sync; elsewhere (or for a dtype numpy
    lacks) in torch.
    """
    if x.is_cpu:
        try:
            arr = (x.detach() if x.requires_grad else x).numpy()
        except (RuntimeError, TypeError):  # e.g. a dtype numpy lacks
            pass
        else:
            return all_finite_array(arr)
    return bool(torch.isfinite(x).all())


class NonFiniteError(FloatingPointError):
    """A loss or gradient is NaN or infinite; raised before the optimiser steps, so the
    parameters and the optimiser state are as they were before the call."""
