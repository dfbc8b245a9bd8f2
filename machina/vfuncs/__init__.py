"""Value functions: state values V(s) and state-action values Q(s, a)."""

from machina.vfuncs import state_action_vfuncs, state_vfuncs  # machina 0.x's subpackages
from machina.vfuncs.base import BaseSAVfunc, BaseSVfunc
from machina.vfuncs.cem_state_action_vfunc import CEMDeterministicSAVfunc
from machina.vfuncs.deterministic_state_action_vfunc import DeterministicSAVfunc
from machina.vfuncs.deterministic_state_vfunc import (
    DeterministicSVfunc,
    NormalizedDeterministicSVfunc,
)
from machina.vfuncs.factory import make_vf

__all__ = [
    "BaseSAVfunc",
    "BaseSVfunc",
    "CEMDeterministicSAVfunc",
    "DeterministicSAVfunc",
    "DeterministicSVfunc",
    "NormalizedDeterministicSVfunc",
    "make_vf",
    "state_action_vfuncs",
    "state_vfuncs",
]
