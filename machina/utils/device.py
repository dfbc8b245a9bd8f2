"""A default device for scripts written against machina 0.x.

machina's own code has no global device: modules, Trajs and samplers take theirs from their
parameters or an explicit argument. machina 0.x's scripts call ``set_device(device)`` and
read ``get_device()`` to place their own tensors and nets; these functions keep that working.
The value stored here is read only by such user code (and by the compatibility helpers that
mirror machina 0.x's defaults), never by the library's training or sampling paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["set_device", "get_device", "cpu_mode"]

_DEVICE = torch.device("cpu")


def set_device(device: str | torch.device) -> None:
    """Store ``device`` as the default that :func:`get_device` returns.

    Parameters
    ----------
    device : str or torch.device
        E.g. ``"cpu"``, ``"cuda:0"`` or ``torch.device("cuda", 1)``.
    """
    global _DEVICE
    try:
        _DEVICE = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"set_device: device: expected a torch.device or a device string such as 'cpu' or "
            f"'cuda:0', got {device!r}"
        ) from e


def get_device() -> torch.device:
    """The device stored by :func:`set_device` (``cpu`` until it is called)."""
    return _DEVICE


@contextlib.contextmanager
def cpu_mode() -> Iterator[None]:
    """Inside the block :func:`get_device` returns ``cpu``; the previous device comes back
    afterwards, also when the block raises."""
    global _DEVICE
    previous = _DEVICE
    _DEVICE = torch.device("cpu")
    try:
        yield
    finally:
        _DEVICE = previous
