"""Moved to :mod:`machina.utils.spaces` (the bottom floor, so that nets, noise, value
functions and models need not import ``machina.pols``); this path keeps working."""

from machina.utils.spaces import check_flat_space, check_space

__all__ = ["check_flat_space", "check_space"]
