"""AdamW that averages gradients over ``torch.distributed`` ranks in ``step``."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch

from machina.optims.adamw import AdamW
from machina.utils import distributed as dist_utils

__all__ = ["DistributedAdamW"]


class DistributedAdamW(AdamW):
    """:class:`AdamW` whose ``step`` first averages the gradients over ranks (one flattened
    all-reduce), so every rank takes the same step.

    Inside a machina ``train`` function the step helper averages before clipping (so
    ``max_grad_norm`` clips the averaged gradient) and this optimiser does not average a
    second time. Without an initialised process group it is a plain :class:`AdamW`.

    Parameters
    ----------
    params : iterable
        Parameters or parameter-group dicts.
    local_rank : int, optional
        This process's rank; ``torch.distributed``'s by default (0 without a group).
    world_size : int, optional
        Divisor of the summed gradients; the group's size by default (1 without a group).
    lr, betas, eps, weight_decay
        As :class:`AdamW`.
    """

    averages_gradients = True

    def __init__(
        self,
        params: Iterable[Any],
        local_rank: int | None = None,
        world_size: int | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
    ) -> None:
        # machina 0.x's order: DistributedAdamW(params, 1e-3) makes 1e-3 the rank, not lr
        for name, value, low in (("local_rank", local_rank, 0), ("world_size", world_size, 1)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
            ):
                raise TypeError(
                    f"{name}: expected an int >= {low} or None, given {value!r} (the learning "
                    "rate goes by keyword: DistributedAdamW(params, lr=...))"
                )
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.local_rank = dist_utils.get_rank() if local_rank is None else int(local_rank)
        self.world_size = dist_utils.get_world_size() if world_size is None else int(world_size)

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Average the gradients over ranks (unless already averaged), then :class:`AdamW`'s
        step; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        average_if_needed(self)
        super().step()
        return loss


def average_if_needed(optim: torch.optim.Optimizer) -> None:
    """Average ``optim``'s gradients over ranks when a process group with more than one rank
    exists, ``optimizer_step`` has not averaged them already and the caller is not inside
    ``machina.distributed.rank_local()``."""
    if (
        dist_utils.get_world_size() > 1
        and not dist_utils.grads_are_averaged()
        and not dist_utils.is_rank_local()
    ):
        params = [p for group in optim.param_groups for p in group["params"]]
        dist_utils.average_gradients(params, world_size=optim.world_size)
