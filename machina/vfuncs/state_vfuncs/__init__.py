"""State-value functions under machina 0.x's package name (``machina.vfuncs.state_vfuncs``)."""

from machina.vfuncs.base import BaseSVfunc
from machina.vfuncs.deterministic_state_vfunc import (
    DeterministicSVfunc,
    NormalizedDeterministicSVfunc,
)

__all__ = ["BaseSVfunc", "DeterministicSVfunc", "NormalizedDeterministicSVfunc"]
