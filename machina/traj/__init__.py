"""Episode storage (``Traj``) and the estimators that run on episodes (``epi_functional``)."""

from machina.traj.traj import Traj  # noqa: I001  (Traj first: the estimators import it)
from machina.traj import epi_functional, traj_functional

__all__ = ["Traj", "epi_functional", "traj_functional"]
