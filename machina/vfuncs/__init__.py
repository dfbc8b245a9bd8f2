"""Value functions: state values V(s) and state-action values Q(s, a)."""

from machina.vfuncs.cem_state_action_vfunc import CEMDeterministicSAVfunc
from machina.vfuncs.deterministic_state_action_vfunc import DeterministicSAVfunc
from machina.vfuncs.deterministic_state_vfunc import DeterministicSVfunc
from machina.vfuncs.factory import make_vf

__all__ = ["CEMDeterministicSAVfunc", "DeterministicSAVfunc", "DeterministicSVfunc", "make_vf"]
