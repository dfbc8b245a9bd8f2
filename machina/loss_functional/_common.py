"""Running a module over a flat or sequence batch, and masked means over its steps."""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable
from typing import Any, cast

import torch

from machina.utils import batch_share
from machina.utils.recurrent import RecurrentMixin

Batch = dict[str, torch.Tensor]


def masked_mean(x: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean of ``x`` over the batch's real steps.

    Flat batches (B,) average everything; sequence batches from ``Traj.iterate_rnn`` carry
    ``out_masks`` (T, B) and padding steps are left out — selected away, not multiplied by
    0, since a term of a padding step may be inf or NaN (zero-padded distribution parameters).

    For a rank's share of a ``Traj(ddp=True)`` minibatch the sum is divided by the whole
    minibatch's count per rank (``machina.utils.batch_share``): the ranks' averaged gradients
    are then the whole minibatch's mean's, whatever their shares' sizes and real steps, and
    the value is this rank's part of that mean (``batch_share.rank_mean`` gives the mean).
    """
    masks = batch.get("out_masks")
    if masks is None:
        return batch_share.share_mean(x, batch)
    return weighted_mean(x, masks, masks.sum(), batch)


def weighted_mean(
    x: torch.Tensor, masks: torch.Tensor, count: torch.Tensor, batch: Batch | None
) -> torch.Tensor:
    """``sum(x * masks) / count`` over the entries where ``masks > 0`` (the others are
    selected away, so a non-finite value there cannot leak in); ``count`` (a scalar) is
    this batch's, summed over the whole minibatch per rank for a rank's share of it."""
    total = torch.where(masks > 0, x * masks, torch.zeros_like(x)).sum()
    count = batch_share.whole_count_per_rank(count, batch)
    return total / torch.where(count > 0, count, torch.ones_like(count))


def mean_loss(loss_fn: Callable[..., torch.Tensor], *args: Any, batch: Batch) -> torch.Tensor:
    """``loss_fn(*args)``, a ``torch.nn.functional`` loss with its mean reduction; for a rank's
    share of a ``Traj(ddp=True)`` minibatch, :func:`batch_share.share_mean` of its per-item
    values (``reduction="none"``), so that unequal shares average as the whole minibatch."""
    if not batch_share.splits(batch):
        return loss_fn(*args)
    return batch_share.share_mean(loss_fn(*args, reduction="none"), batch)


def run(module: torch.nn.Module, batch: Batch) -> tuple:
    """``module(obs)`` for a flat batch, or over whole sequences from a fresh hidden state.

    Recurrent modules see ``h_masks`` so their state resets at every episode start; this is
    the one place where recurrence changes how a loss calls a network. A policy's forward
    draws an action; for a rank's share of a ``Traj(ddp=True)`` minibatch it draws the whole
    minibatch's (``batch_share.drawing_for``), so that rank 0's generator moves as one
    process's.
    """
    with batch_share.drawing_for(batch):
        if getattr(module, "rnn", False):
            if "h_masks" not in batch:
                raise KeyError("batch: a recurrent module needs 'h_masks'; use Traj.iterate_rnn")
            cast(RecurrentMixin, module).reset()  # recurrent modules are RecurrentMixin's
            return module(batch["obs"], h_masks=batch["h_masks"])
        return module(batch["obs"])


def expand_samples(obs: torch.Tensor, sampling: int) -> torch.Tensor:
    """``obs (B, ...)`` repeated for ``sampling`` actions per state: a ``(sampling, B, ...)``
    view, no copy."""
    return obs.unsqueeze(0).expand(sampling, *obs.shape)


def old_params(a_i: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    """The sampling policy's distribution parameters, recorded in the batch as ``a_is``."""
    missing = [k for k in a_i if k != "hs" and k not in batch]
    if missing:
        raise KeyError(
            f"batch: no {missing} recorded by the sampling policy (agent info 'a_is'); "
            "train on episodes sampled by EpiSampler with this kind of policy"
        )
    return {k: batch[k] for k in a_i if k != "hs"}


def new_params(a_i: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Distribution parameters from a policy's agent info, without the hidden state."""
    return {k: v for k, v in a_i.items() if k != "hs"}


class _CallableModule(types.ModuleType):
    """A module that can be called: ``module(*args)`` runs its ``__call_target__``."""

    __call_target__: Callable[..., Any]
    __signature__: inspect.Signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["__call_target__"](*args, **kwargs)


def make_module_callable(module_name: str, target: Callable[..., Any]) -> None:
    """Make the module ``module_name`` callable as ``target``, keeping all its attributes.

    ``lf.sac`` and ``lf.r2d2_sac`` were functions in machina 0.x and are modules of
    functions now; this keeps both ``lf.sac(pol, qfs, ...)`` and ``lf.sac.sac_targets``.
    """
    module = sys.modules[module_name]
    module.__class__ = _CallableModule
    callable_module = cast(_CallableModule, module)
    callable_module.__call_target__ = target
    # inspect.signature(lf.sac) and help() then show the function's parameters.
    callable_module.__signature__ = inspect.signature(target)
