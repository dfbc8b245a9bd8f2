"""``CEMDeterministicSAVfunc`` under machina 0.x's module name."""

from machina.vfuncs.cem_state_action_vfunc import CEMDeterministicSAVfunc

__all__ = ["CEMDeterministicSAVfunc"]
