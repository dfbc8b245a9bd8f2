"""AdamW with the weight decay not scaled by the learning rate (Loshchilov & Hutter, "Fixing
Weight Decay Regularization in Adam", arXiv:1711.05101, the form of its first version)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.optimizer import Optimizer

__all__ = ["AdamW"]


class AdamW(Optimizer):
    """Adam with decoupled weight decay, not scaled by ``lr``.

    Per step, for each parameter ``p`` with gradient ``g`` (``t`` counts its steps)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - weight_decay * p                      # not scaled by lr
        p = p - lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)

    Two differences from ``torch.optim.AdamW``, so that machina 0.x's scripts train as
    they did: the weight decay is not multiplied by ``lr``, and ``eps`` is added before the
    bias correction. Use ``torch.optim.AdamW`` for torch's convention.

    Parameters
    ----------
    params : iterable
        Parameters or parameter-group dicts.
    lr : float
        Learning rate, >= 0.
    betas : tuple of float
        Decay rates of the first and second moment averages, each in [0, 1).
    eps : float
        Added to the denominator, >= 0.
    weight_decay : float
        Fraction of each parameter removed per step, >= 0.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"AdamW: lr: expected a float >= 0, got {lr!r}")
        if not (len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas)):
            raise ValueError(f"AdamW: betas: expected two floats in [0, 1), got {betas!r}")
        if not eps >= 0.0:
            raise ValueError(f"AdamW: eps: expected a float >= 0, got {eps!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"AdamW: weight_decay: expected a float >= 0, got {weight_decay!r}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                if group["weight_decay"] != 0:
                    p.mul_(1 - group["weight_decay"])
                p.addcdiv_(exp_avg, denom, value=-step_size)
        return loss
