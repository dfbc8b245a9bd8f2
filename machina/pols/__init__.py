"""Policies: map observations to actions for the environment and for learning."""

from machina.pols.base import BasePol
from machina.pols.categorical_pol import CategoricalPol
from machina.pols.factory import make_pol
from machina.pols.gaussian_pol import GaussianPol
from machina.pols.multi_categorical_pol import MultiCategoricalPol
from machina.pols.random_pol import RandomPol

__all__ = [
    "BasePol",
    "CategoricalPol",
    "GaussianPol",
    "MultiCategoricalPol",
    "RandomPol",
    "make_pol",
]
