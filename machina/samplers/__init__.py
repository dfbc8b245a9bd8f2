"""Samplers: whole episodes from environments, in this process, in worker processes or in
Ray actors over a cluster."""

from machina.samplers.distributed_epi_sampler import DistributedEpiSampler
from machina.samplers.epi_sampler import EpiSampler

__all__ = ["DistributedEpiSampler", "EpiSampler"]
