"""SGD that averages gradients over ``torch.distributed`` ranks in ``step``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from machina.optims.distributed_adamw import average_if_needed
from machina.utils import distributed as dist_utils

__all__ = ["DistributedSGD"]


class DistributedSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose ``step`` first averages the gradients over ranks (one
    flattened all-reduce).

    Takes ``torch.optim.SGD``'s arguments plus the keyword ``world_size`` (divisor of the
    summed gradients; the group's size by default). Inside a machina ``train`` function the
    gradients are averaged once, before clipping. Without a process group it is plain SGD.
    """

    averages_gradients = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        world_size = kwargs.pop("world_size", None)
        super().__init__(*args, **kwargs)
        self.world_size = dist_utils.get_world_size() if world_size is None else world_size

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Average the gradients over ranks (unless already averaged), then SGD's step;
        returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        average_if_needed(self)
        super().step()
        return loss
