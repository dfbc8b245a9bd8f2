"""State-action value functions under machina 0.x's package name
(``machina.vfuncs.state_action_vfuncs``)."""

from machina.vfuncs.base import BaseSAVfunc
from machina.vfuncs.cem_state_action_vfunc import CEMDeterministicSAVfunc
from machina.vfuncs.deterministic_state_action_vfunc import DeterministicSAVfunc

__all__ = ["BaseSAVfunc", "CEMDeterministicSAVfunc", "DeterministicSAVfunc"]
