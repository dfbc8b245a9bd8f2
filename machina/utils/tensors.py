"""Detaching and moving tensors held in dicts and state dicts; tensors to numpy arrays."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "detach_tensor_dict",
    "detached_if_no_grad",
    "state_dict_to_cpu",
    "get_cpu_state_dict",
    "cpu_copy",
    "to_numpy",
]


def detached_if_no_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` detached when gradients are off: a view of a parameter (``expand``) keeps its
    ``requires_grad`` even under ``torch.no_grad()``, so ``.numpy()`` on it would fail."""
    return x if torch.is_grad_enabled() else x.detach()


def detach_tensor_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict with every tensor of ``d`` detached from the graph.

    Tuples of tensors (an LSTM's ``(h, c)``) are detached element-wise; ``None`` values are
    dropped; other values are kept as they are.
    """
    out: dict[str, Any] = {}
    for key, value in d.items():
        if value is None:
            continue
        if isinstance(value, tuple):
            out[key] = tuple(v.detach() if isinstance(v, torch.Tensor) else v for v in value)
        elif isinstance(value, torch.Tensor):
            out[key] = value.detach()
        else:
            out[key] = value
    return out


def state_dict_to_cpu(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Move every tensor of ``state_dict`` (nested dicts included) to the CPU, in place.

    Returns the same dict, so it can be used in an expression. Works on
    module and optimiser state dicts (an optimiser's ``state`` is a dict keyed by int).
    """
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            state_dict[key] = value.to("cpu")
        elif isinstance(value, dict):
            state_dict[key] = state_dict_to_cpu(value)
    return state_dict


def get_cpu_state_dict(module: torch.nn.Module) -> dict[str, Any]:
    """A CPU copy of ``module.state_dict()``; the module and its own tensors are untouched."""
    return cpu_copy(module.state_dict())


def cpu_copy(value: Any) -> Any:
    """A copy of a (module's or optimiser's) state dict with every tensor copied to the CPU,
    never first on its own device (a GPU copy would double the memory of a model and its
    Adam state). Containers keep their type and attributes (a module state dict's
    ``_metadata``); other values are deep-copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        out = copy.copy(value)
        for key, item in value.items():
            out[key] = cpu_copy(item)
        return out
    if isinstance(value, list):
        return [cpu_copy(item) for item in value]
    if isinstance(value, tuple):
        items = [cpu_copy(item) for item in value]
        return value._make(items) if hasattr(value, "_make") else tuple(items)
    return copy.deepcopy(value)


def to_numpy(x: Any, bfloat16_as_float32: bool = False) -> np.ndarray:
    """``x`` as a numpy array of the same shape.

    A CPU tensor outside autograd is viewed without a copy (the array shares its memory);
    any other tensor is detached and copied to the CPU; a list or tuple is converted element
    by element (tensors inside included); anything else goes through ``np.asarray``.
    ``bfloat16_as_float32``: a bfloat16 tensor, which numpy lacks, as a float32 copy (exact).

    Raises
    ------
    TypeError
        For a tensor of a dtype numpy lacks (e.g. bfloat16, unless converted as above).
    """
    if isinstance(x, torch.Tensor):
        if bfloat16_as_float32 and x.dtype == torch.bfloat16:
            x = x.detach().to("cpu", torch.float32)
        elif x.requires_grad:  # numpy() would raise, and raising costs ~15 us
            x = x.detach()
        try:
            return x.numpy()  # a CPU tensor outside autograd: no copy, cheapest
        except (RuntimeError, TypeError):
            return x.detach().cpu().numpy()
    if isinstance(x, list | tuple):
        return np.asarray([to_numpy(v, bfloat16_as_float32) for v in x])
    return np.asarray(x)
