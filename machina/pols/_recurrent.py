"""Moved to :mod:`machina.utils.recurrent` (the bottom floor, shared by policies, value
functions and models); this path and its old private names keep working."""

from machina.utils.checks import all_finite_tensor as _all_finite
from machina.utils.recurrent import HiddenState, RecurrentMixin
from machina.utils.recurrent import detach_hs as _detach

__all__ = ["HiddenState", "RecurrentMixin", "_all_finite", "_detach"]
