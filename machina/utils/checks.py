"""The error raised when training meets a non-finite loss or gradient."""

from __future__ import annotations

__all__ = ["NonFiniteError"]


class NonFiniteError(FloatingPointError):
    """A loss or gradient is NaN or infinite; raised before the optimiser steps, so the
    parameters and the optimiser state are as they were before the call."""
