"""Observation and reward normalisation with running statistics."""

from machina.prepro.base import BasePrePro
from machina.prepro.reward import RewardNormalizer
from machina.prepro.running_mean_std import RunningMeanStd

__all__ = ["BasePrePro", "RewardNormalizer", "RunningMeanStd"]
