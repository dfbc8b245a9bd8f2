"""Probability distributions of policies; parameters are dicts of tensors."""

from machina.pds.base import BasePd
from machina.pds.categorical_pd import CategoricalPd
from machina.pds.deterministic_pd import DeterministicPd
from machina.pds.gaussian_pd import GaussianPd
from machina.pds.mixture_gaussian_pd import MixtureGaussianPd
from machina.pds.multi_categorical_pd import MultiCategoricalPd
from machina.pds.tanh_gaussian_pd import TanhGaussianPd

__all__ = [
    "BasePd",
    "CategoricalPd",
    "DeterministicPd",
    "GaussianPd",
    "MixtureGaussianPd",
    "MultiCategoricalPd",
    "TanhGaussianPd",
]
