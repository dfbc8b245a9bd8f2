"""Exploration noise added to a deterministic policy's actions."""

from machina.noise.base import BaseActionNoise
from machina.noise.gaussian_noise import GaussianActionNoise
from machina.noise.ounoise import OUActionNoise

__all__ = ["BaseActionNoise", "GaussianActionNoise", "OUActionNoise"]
