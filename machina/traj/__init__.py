"""Episode storage (``Traj``) and the estimators that run on episodes (``epi_functional``)."""

from machina.traj import epi_functional, traj_functional
from machina.traj.traj import Traj

__all__ = ["Traj", "epi_functional", "traj_functional"]
