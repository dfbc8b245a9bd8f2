"""Samplers: whole episodes from environments, in this process or in worker processes."""

from machina.samplers.epi_sampler import EpiSampler

__all__ = ["EpiSampler"]
