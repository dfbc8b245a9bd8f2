"""State-value functions under machina 0.x's module name."""

from machina.vfuncs.deterministic_state_vfunc import (
    DeterministicSVfunc,
    NormalizedDeterministicSVfunc,
)

__all__ = ["DeterministicSVfunc", "NormalizedDeterministicSVfunc"]
