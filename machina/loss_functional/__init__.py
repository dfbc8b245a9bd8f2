"""Losses as pure functions of (modules, batch) returning scalar tensors."""

from machina.loss_functional._common import masked_mean
from machina.loss_functional.policy import kl_old_new, pg, pg_clip, pg_kl
from machina.loss_functional.value import monte_carlo

__all__ = ["kl_old_new", "masked_mean", "monte_carlo", "pg", "pg_clip", "pg_kl"]
