"""Optimisers: ``AdamW`` (weight decay not scaled by the learning rate) and ``DistributedAdamW`` /
``DistributedSGD``, which average gradients over ``torch.distributed`` ranks in ``step``."""

from machina.optims.adamw import AdamW
from machina.optims.distributed_adamw import DistributedAdamW
from machina.optims.distributed_sgd import DistributedSGD

__all__ = ["AdamW", "DistributedAdamW", "DistributedSGD"]
