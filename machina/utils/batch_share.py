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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


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


def share_bounds(size: int, world: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s items ``[start, stop)`` of a minibatch of ``size`` items shared by
    ``world`` ranks: contiguous, disjoint, near-equal (the smaller shares first)."""
    return rank * size // world, (rank + 1) * size // world


class SharedBatch(dict):
    """A rank's share of a minibatch: the dict of its tensors, plus ``share``
    (:class:`BatchShare`). Everything else treats it as the dict it is; rebuilt from its
    items alone (``type(batch)(items)``, as torch's DistributedDataParallel does when it
    moves a forward's inputs) it has no share: a plain batch."""

    def __init__(self, columns: Any = (), share: BatchShare | None = None) -> None:
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


def current() -> BatchShare | None:
    """The share :func:`drawing_for` set for the draws running now (None: plain draws)."""
    return _CURRENT.get()


def _full_shape(shape: tuple[int, ...], lead: int) -> tuple[tuple[int, ...], BatchShare] | None:
    share = _CURRENT.get()
    if share is None:
        return None
    axis = lead + share.axis
    # a draw that is not over the batch's items (its axis is not the share's length) is a
    # plain draw. machina's losses draw only over the items, so every rank takes the same
    # branch; a draw of another kind whose axis happened to match one rank's share length
    # (16 of shares 15/16) would be enlarged on that rank only and part the generators
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
    """``torch.randn_like(t)`` (its strides too: the same values as ever for a permuted
    ``t``); inside :func:`drawing_for`, as :func:`randn` of ``t``'s shape."""
    if _full_shape(tuple(t.shape), lead) is None:
        return torch.randn_like(t)
    return randn(t.shape, lead=lead, dtype=t.dtype, device=t.device)


def rand(
    shape: Any, *, lead: int = 0, dtype: torch.dtype | None = None, device: Any = None
) -> torch.Tensor:
    """``torch.rand(shape)`` (uniform on [0, 1)), shared as :func:`randn`."""
    return _draw(torch.rand, shape, lead, dtype=dtype, device=device)


# ---- whole-minibatch values and statistics from the ranks' shares (collectives: every rank
# of the group calls them for the same minibatch, as it computes the same loss)


def _split(batch: Any) -> tuple[BatchShare, int] | None:
    share = share_of(batch)
    if share is None or not (dist.is_available() and dist.is_initialized()):
        return None
    return share, dist.get_world_size()


def gather(*ts: torch.Tensor, batch: Any, axis: int | None = None) -> tuple[torch.Tensor, ...]:
    """The whole minibatch's ``ts`` from every rank's share of them, e.g. the TD errors and
    step indices whose priorities every rank writes (``traj_functional.update_pris``), in
    one all-gather. Without a share, ``ts`` as they are.

    Parameters
    ----------
    *ts : torch.Tensor
        This rank's values, all of one shape, ``stop - start`` items along ``axis`` (any
        dtype whose values float64 holds exactly: floats, bools, integers below 2 ** 53).
    batch : mapping
        The rank's batch (a :class:`SharedBatch` under ``Traj(ddp=True)``).
    axis : int, optional
        The items' axis of ``ts``; default the share's (0 steps, 1 time-major sequences).

    Returns
    -------
    tuple of torch.Tensor
        Each of ``ts`` with ``size`` items along ``axis``, the ranks' shares in rank order
        (the single-process minibatch's values), in its own dtype.
    """
    split = _split(batch)
    if split is None:
        return ts
    share, world = split
    axis = share.axis if axis is None else axis
    shape = ts[0].shape
    if any(t.shape != shape for t in ts) or shape[axis] != share.stop - share.start:
        raise ValueError(
            f"ts: expected tensors of one shape with this rank's {share.stop - share.start} "
            f"items along axis {axis}, got shapes {[tuple(t.shape) for t in ts]}"
        )
    counts = [hi - lo for lo, hi in (share_bounds(share.size, world, r) for r in range(world))]
    # one wire for all of them (float64: gloo moves no bool), padded to the largest share
    wire = torch.stack([t.to(torch.float64) for t in ts])
    axis += 1
    width = max(counts)
    if wire.shape[axis] < width:
        pad = list(wire.shape)
        pad[axis] = width - wire.shape[axis]
        wire = torch.cat([wire, wire.new_zeros(pad)], dim=axis)
    wire = wire.contiguous()
    parts = [torch.empty_like(wire) for _ in range(world)]
    dist.all_gather(parts, wire)
    whole = torch.cat([p.narrow(axis, 0, c) for p, c in zip(parts, counts)], dim=axis)
    return tuple(w.to(t.dtype) for w, t in zip(whole.unbind(0), ts))


def _sums(batch: Any, *values: torch.Tensor) -> list[torch.Tensor] | None:
    """The values summed over the ranks (one all-reduce), None without a share."""
    split = _split(batch)
    if split is None:
        return None
    wire = torch.stack([v.detach().to(torch.float64) for v in values])
    dist.all_reduce(wire)
    return list(wire.unbind())


def whole_mean(t: torch.Tensor, batch: Any) -> torch.Tensor:
    """``t.mean()`` over the whole minibatch (``t``: this rank's values), detached under a
    share; ``t.mean()`` itself without one."""
    sums = _sums(batch, t.sum(), torch.tensor(float(t.numel()), device=t.device))
    if sums is None:
        return t.mean()
    return (sums[0] / sums[1].clamp_min(1.0)).to(t.dtype)


def whole_moments(t: torch.Tensor, batch: Any) -> tuple[int, torch.Tensor, torch.Tensor]:
    """``(n, mean, std)`` of ``t``'s values over the whole minibatch (std Bessel-corrected;
    one all-reduce, detached) under a share; ``(t.numel(), t.mean(), t.std())`` without
    one (std NaN below 2 values, without torch's warning)."""
    if _split(batch) is None:
        if t.numel() < 2:  # no spread, and torch.std would warn
            return t.numel(), t.mean(), torch.full_like(t.mean(), float("nan"))
        return t.numel(), t.mean(), t.std()
    x = t.detach().to(torch.float64)
    sums = _sums(batch, x.sum(), (x * x).sum(), torch.tensor(float(t.numel()), device=t.device))
    assert sums is not None
    total, squares, n = sums
    mean = total / n.clamp_min(1.0)
    var = (squares - n * mean * mean).clamp_min(0.0) / (n - 1.0).clamp_min(1.0)
    return int(n), mean.to(t.dtype), var.sqrt().to(t.dtype)


def whole_mean_std(t: torch.Tensor, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t.mean(), t.std())`` (Bessel-corrected) over the whole minibatch, detached under a
    share; torch's own without one."""
    _, mean, std = whole_moments(t, batch)
    return mean, std


def share_mean(x: torch.Tensor, batch: Any, axis: int | None = None) -> torch.Tensor:
    """``x.mean()``; for a rank's share of a minibatch (``x`` over its items), its sum over
    the whole minibatch's number of values per rank, so that the ranks' averaged gradients
    are those of the whole minibatch's mean even when the shares differ in size (a minibatch
    of an odd number of steps). No communication: the share knows the minibatch's size.
    ``axis`` is the items' axis of ``x``, default the share's (e.g. 1 for the ``(sampling,
    B)`` log-likelihoods of actions drawn per state)."""
    split = _split(batch)
    if split is None:
        return x.mean()
    share, world = split
    rows = share.stop - share.start
    axis = share.axis if axis is None else (axis + x.dim() if axis < 0 else axis)
    if rows == 0:  # an empty share (a last minibatch of fewer items than ranks): adds 0
        return x.sum()
    if x.dim() <= axis or x.shape[axis] != rows:
        # a plain mean here would weigh this share as much as larger ones: wrong, silently
        raise ValueError(
            f"x: expected this rank's {rows} items along axis {axis} (its share of the "
            f"minibatch), got shape {tuple(x.shape)}; pass the items' axis"
        )
    return x.sum() / (x.numel() // rows * share.size / world)


def splits(batch: Any) -> bool:
    """Whether ``batch`` is a rank's share of a minibatch under an initialised process group:
    what :func:`share_mean` and :func:`share_sum` weigh by the whole minibatch."""
    return _split(batch) is not None


def share_sum(x: torch.Tensor, batch: Any) -> torch.Tensor:
    """``x.sum()``; for a rank's share of a minibatch, times the number of ranks, so that
    the ranks' averaged gradients are those of the whole minibatch's sum."""
    split = _split(batch)
    return x.sum() if split is None else x.sum() * split[1]


def rank_mean(value: torch.Tensor, batch: Any) -> torch.Tensor:
    """The mean over the ranks of a per-rank ``value`` (detached; one all-reduce) under a
    share, e.g. a loss computed on a share with :func:`share_mean` or ``masked_mean``, whose
    mean over the ranks is the whole minibatch's; ``value`` without one."""
    split = _split(batch)
    if split is None:
        return value
    sums = _sums(batch, value)
    assert sums is not None
    return (sums[0] / split[1]).to(value.dtype)


def whole_count_per_rank(count: torch.Tensor, batch: Any) -> torch.Tensor:
    """A count of this rank's share (a scalar, e.g. a mask's real steps) summed over the
    whole minibatch and divided by the number of ranks, as float32, under a share; ``count``
    itself without one. Dividing this rank's sum by it, the ranks' averaged gradients are
    those of the whole minibatch's mean, whatever the shares' counts (``r2d2_sac``'s masked
    means)."""
    if _split(batch) is None:
        return count
    return rank_mean(count.to(torch.float32), batch)


# Whether a batching call handed this process a share of a minibatch since the last step
_SHARED = [False]


def note_share() -> None:
    """Record that a batching call handed out a rank's share of a minibatch."""
    _SHARED[0] = True


def take_share_note() -> bool:
    """Whether a share was handed out since the last call; resets the note."""
    shared, _SHARED[0] = _SHARED[0], False
    return shared
