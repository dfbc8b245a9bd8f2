"""A rank's share of a minibatch, and noise drawn for it as the single process draws it.

Under ``Traj(ddp=True)`` every rank computes the loss of its contiguous share of each
minibatch (``machina.traj``'s ``_ddp``). A loss that draws noise (SAC's actions, TD3's target
smoothing, QT-Opt's CEM search) would draw it for its share alone, from its own generator:
data-parallel training, but not the single-process run. So the Traj hands each rank its
share as a :class:`SharedBatch`, which says where the share lies in the minibatch, and makes
every rank's global torch generator rank 0's at the first minibatch of each batching call;
inside
:func:`drawing_for`, :func:`randn` and :func:`rand` (which machina's distributions and losses
draw with) draw the whole minibatch's noise and keep the rank's share. Rank 0 then draws what
the single process draws, every rank holds the same noise, and no draw needs a collective
(so ranks whose draws differ can never hang one another).

Outside :func:`drawing_for`, or for a batch that is not shared, they are ``torch.randn`` and
``torch.rand``: the same draws as always.

Example
-------
>>> def loss(pol, batch):
...     with drawing_for(batch):  # a no-op unless the batch is a rank's share
...         acs = pol.pd.sample(pol.pd_params(batch["obs"]))
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class BatchShare:
    """Where a rank's share lies in its minibatch.

    Attributes
    ----------
    start, stop : int
        The share is items ``[start, stop)`` of the minibatch.
    size : int
        The minibatch's number of items (steps, sequences or windows).
    axis : int
        The batch axis of the minibatch's tensors: 0 for steps ``(B, ...)``, 1 for
        time-major sequences ``(T, B, ...)``.
    """

    start: int
    stop: int
    size: int
    axis: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.stop <= self.size or self.axis < 0:
            raise ValueError(
                f"share: expected 0 <= start <= stop <= size and axis >= 0, got {self}"
            )


class SharedBatch(dict):
    """A rank's share of a minibatch: the dict of its tensors, plus ``share``
    (:class:`BatchShare`). Everything else treats it as the dict it is."""

    def __init__(self, columns: Mapping[str, Any], share: BatchShare) -> None:
        super().__init__(columns)
        self.share = share


def share_of(batch: Any) -> BatchShare | None:
    """The :class:`BatchShare` of ``batch`` (None: a whole minibatch, or not a batch)."""
    share = getattr(batch, "share", None)
    return share if isinstance(share, BatchShare) else None


def keep_share(new: Any, old: Any) -> Any:
    """``new`` (e.g. a transformed copy of ``old``) as a :class:`SharedBatch` with ``old``'s
    share, when ``old`` has one and ``new`` is a plain dict; else ``new`` as it is."""
    share = share_of(old)
    if share is None or share_of(new) is not None or not isinstance(new, dict):
        return new
    return SharedBatch(new, share)


_CURRENT: contextvars.ContextVar[BatchShare | None] = contextvars.ContextVar(
    "machina_batch_share", default=None
)


@contextlib.contextmanager
def drawing_for(batch: Any) -> Iterator[None]:
    """Inside the block, :func:`randn` / :func:`rand` draw the noise of ``batch``'s whole
    minibatch and keep its share (a no-op for a batch without a share)."""
    token = _CURRENT.set(share_of(batch))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _full_shape(shape: tuple[int, ...], lead: int) -> tuple[tuple[int, ...], BatchShare] | None:
    share = _CURRENT.get()
    if share is None:
        return None
    axis = lead + share.axis
    # a draw that is not over the batch's items (its axis is not the share's length) is a
    # plain draw: the same rule holds on every rank whatever its share
    if len(shape) <= axis or shape[axis] != share.stop - share.start:
        return None
    full = list(shape)
    full[axis] = share.size
    return tuple(full), share


def _draw(fn: Any, shape: Any, lead: int, **kwargs: Any) -> torch.Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(torch.Size(shape))
    plan = _full_shape(shape, lead)
    if plan is None:
        return fn(shape, **kwargs)
    full, share = plan
    return fn(full, **kwargs).narrow(lead + share.axis, share.start, share.stop - share.start)


def randn(
    shape: Any, *, lead: int = 0, dtype: torch.dtype | None = None, device: Any = None
) -> torch.Tensor:
    """``torch.randn(shape)``; inside :func:`drawing_for` a shared batch's share of the draw
    for its whole minibatch.

    Parameters
    ----------
    shape : int or sequence of int
        ``(*sample_shape, *batch_shape, ...)``: the batch's tensors' shape after ``lead``
        extra leading sample dims.
    lead : int
        Number of leading sample dims before the batch's own dims.
    """
    return _draw(torch.randn, shape, lead, dtype=dtype, device=device)


def randn_like(t: torch.Tensor, *, lead: int = 0) -> torch.Tensor:
    """:func:`randn` of ``t``'s shape, dtype and device."""
    return randn(t.shape, lead=lead, dtype=t.dtype, device=t.device)


def rand(
    shape: Any, *, lead: int = 0, dtype: torch.dtype | None = None, device: Any = None
) -> torch.Tensor:
    """``torch.rand(shape)`` (uniform on [0, 1)), shared as :func:`randn`."""
    return _draw(torch.rand, shape, lead, dtype=dtype, device=device)
