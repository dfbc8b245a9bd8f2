"""Observation preprocessing: running mean / variance normalisation."""

from machina.prepro.base import BasePrePro
from machina.prepro.running_mean_std import RunningMeanStd

__all__ = ["BasePrePro", "RunningMeanStd"]
