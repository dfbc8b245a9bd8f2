"""``DeterministicSAVfunc`` under machina 0.x's module name."""

from machina.vfuncs.deterministic_state_action_vfunc import DeterministicSAVfunc

__all__ = ["DeterministicSAVfunc"]
