"""Dynamics models: ``(obs, acs)`` -> next-observation change."""

from machina.models.base import BaseModel
from machina.models.deterministic_state_model import DeterministicSModel

__all__ = ["BaseModel", "DeterministicSModel"]
