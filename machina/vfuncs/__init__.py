"""Value functions."""

from machina.vfuncs.deterministic_state_vfunc import DeterministicSVfunc
from machina.vfuncs.factory import make_vf

__all__ = ["DeterministicSVfunc", "make_vf"]
