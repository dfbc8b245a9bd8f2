"""Policies: map observations to actions for the environment and for learning."""

from machina.pols.argmax_qf_pol import ArgmaxQfPol
from machina.pols.base import BasePol
from machina.pols.categorical_pol import CategoricalPol
from machina.pols.deterministic_action_noise_pol import DeterministicActionNoisePol
from machina.pols.factory import make_pol
from machina.pols.gaussian_pol import GaussianPol
from machina.pols.gaussian_sde_pol import GaussianSDEPol
from machina.pols.mixture_gaussian_pol import MixtureGaussianPol
from machina.pols.mpc_pol import MPCPol
from machina.pols.multi_categorical_pol import MultiCategoricalPol
from machina.pols.random_pol import RandomPol
from machina.pols.tanh_gaussian_pol import TanhGaussianPd, TanhGaussianPol
from machina.pols.tanh_gaussian_sde_pol import TanhGaussianSDEPol

__all__ = [
    "ArgmaxQfPol",
    "BasePol",
    "CategoricalPol",
    "DeterministicActionNoisePol",
    "GaussianPol",
    "GaussianSDEPol",
    "MPCPol",
    "MixtureGaussianPol",
    "MultiCategoricalPol",
    "RandomPol",
    "TanhGaussianPd",
    "TanhGaussianPol",
    "TanhGaussianSDEPol",
    "make_pol",
]
