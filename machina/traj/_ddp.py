"""How a Traj's batch generators cooperate with torch.distributed.

Two situations, read at every batching call (a Traj can be built, saved or loaded before
``torch.distributed.init_process_group``):

- ``Traj(ddp=True)`` with a process group of W > 1 ranks that hold the same steps: every rank
  draws the same minibatch (rank 0 draws it from its Traj's generator, exactly as the
  single-process code would, and broadcasts the indices) and keeps its own share, ranks
  taking disjoint contiguous slices of near-equal size, ``[r * B // W, (r + 1) * B // W)``.
  The orders never come from torch's global generator (see ``_rng``): every epoch is the
  single-process one. Before the first minibatch of each call every rank's global generator
  is made rank 0's (``Group.sync_rng``), and the rank's share comes as a ``SharedBatch``, so
  the noise a loss draws is the single process's (``machina.utils.batch_share``).
- any process group of W > 1 ranks (``ddp`` or not; without ``ddp`` each rank batches its own
  data): the number of minibatches a call yields is the minimum over the ranks, so that a rank
  with fewer steps never leaves the others waiting in a gradient all-reduce. A rank whose call
  fails (batch size too large, no steps) makes every rank raise instead of hanging. So every
  rank makes the same batching calls; inside ``machina.distributed.rank_local()`` a rank
  batches alone, as without a process group.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from machina.utils.batch_share import share_bounds
from machina.utils.distributed import collective_device, is_rank_local

# Columns that come from sampling alone, the same bits on every rank given the same episodes.
_SAMPLED = ("acs", "terms", "truncs", "dones")


class Group:
    """This process's place in the default process group, for one batching call.

    Attributes
    ----------
    world : int
        Number of ranks, 1 without an initialised process group or inside
        ``machina.distributed.rank_local()``.
    rank : int
        This process's rank, 0 without one.
    split : bool
        Whether minibatches are shared out between the ranks (``ddp`` and ``world > 1``).
    """

    def __init__(self, ddp: bool):
        on = dist.is_available() and dist.is_initialized() and not is_rank_local()
        self.world = dist.get_world_size() if on else 1
        self.rank = dist.get_rank() if on else 0
        self.split = bool(ddp) and self.world > 1
        self._rng_synced = False

    @property
    def _device(self) -> torch.device:
        return collective_device()

    def agree(
        self,
        count: int,
        num_step: int,
        error: Exception | None,
        fingerprint: int = 0,
        size: int = 0,
    ) -> int:
        """The number of minibatches every rank yields: the minimum of ``count`` over ranks.

        One all-reduce. With ``error`` on any rank, every rank raises (its own error, or one
        saying which rank failed) instead of leaving the others blocked in a collective. With
        ``split``, the ranks must also hold the same number of steps and the same
        ``fingerprint`` of their data (:func:`fingerprint`) and, when given, the same
        minibatch ``size`` (the shares of different sizes overlapped and left steps out).
        """
        if self.world == 1:
            if error is not None:
                raise error
            return count
        failed = -1 if error is None else self.rank
        # MIN of each entry: count, -num_step (its MAX), num_step, -(failed rank + 1),
        # fingerprint, -fingerprint (its MAX), size, -size (its MAX)
        local = [count if error is None else 0, -num_step, num_step, -(failed + 1)]
        local += [fingerprint, -fingerprint, size, -size]
        values = torch.tensor(local, dtype=torch.int64, device=self._device)
        dist.all_reduce(values, op=dist.ReduceOp.MIN)
        count, high, low, failed, fp_low, fp_high, size_low, size_high = (
            int(v) for v in values.tolist()
        )
        if error is not None:
            raise error
        if failed < 0:
            raise RuntimeError(
                f"rank {-failed - 1} of {self.world} could not build its batches (its error "
                f"is raised there); this rank ({self.rank}) stops too rather than wait for it"
            )
        if self.split and low != -high:
            raise ValueError(
                f"ddp: Traj(ddp=True) needs the same steps on every rank, got between {low} "
                f"and {-high} steps (rank {self.rank} holds {num_step}); give each rank the "
                "same episodes, or use ddp=False for per-rank data"
            )
        if self.split and fp_low != -fp_high:
            raise ValueError(
                f"ddp: Traj(ddp=True) needs the same episodes on every rank; the ranks hold "
                f"{num_step} steps each, but their episode boundaries or values differ; give "
                "each rank rank 0's episodes (machina.distributed.broadcast_object, or "
                "traj_functional.sync), or use ddp=False for per-rank data"
            )
        if self.split and size_low != -size_high:
            raise ValueError(
                f"batch_size: Traj(ddp=True) shares each minibatch out between the ranks, so "
                f"every rank must ask for the same size; got between {size_low} and "
                f"{-size_high} (rank {self.rank} asked for {size})"
            )
        return count

    def fingerprint(self, epis_index: np.ndarray, columns: dict[str, torch.Tensor]) -> int:
        """With ``split``, a checksum (CRC-32) of the episode boundaries and of three steps
        (first, middle, last) of the sampled columns ``_SAMPLED``, so that ranks holding
        different episodes of the same size are told apart, at O(1) cost; 0 otherwise.
        Columns the ranks compute themselves (values, returns, normalised rewards) are left
        out: on unlike CPUs or GPUs their last bits may differ."""
        if not self.split:
            return 0
        crc = zlib.crc32(np.asarray(epis_index, dtype=np.int64).tobytes())
        num_step = int(epis_index[-1]) if len(epis_index) else 0
        if num_step:
            rows = torch.tensor(sorted({0, num_step // 2, num_step - 1}))
            for key in _SAMPLED:
                if key not in columns:
                    continue
                col = columns[key].detach()
                picked = col.index_select(0, rows.to(col.device)).cpu().contiguous()
                crc = zlib.crc32(key.encode(), crc)
                crc = zlib.crc32(picked.view(torch.uint8).numpy().tobytes(), crc)
        return crc

    def check_share(self, batch_size: int) -> None:
        """A ValueError when a minibatch of ``batch_size`` would leave a rank an empty share:
        asked of the whole minibatch size (a last, smaller one may leave ranks empty)."""
        if self.split and batch_size < self.world:
            raise ValueError(
                f"batch_size: Traj(ddp=True) shares each minibatch between {self.world} ranks; "
                f"expected at least {self.world}, got {batch_size}"
            )

    def same(
        self, make: Callable[[], torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype
    ) -> torch.Tensor:
        """``make()`` on rank 0, broadcast to the others, with ``split``; else ``make()``.

        ``make`` must return a tensor of ``shape`` and ``dtype`` (integers below 2 ** 53: the
        wire is float64). Only rank 0 runs it, so only rank 0's generator is used and the
        ranks need no common generator state. When it raises on rank 0, the other ranks raise too.
        """
        if not self.split:
            return make()
        numel = math.prod(shape)
        # wire[0] says whether rank 0 succeeded, so that no rank waits for a failed draw
        wire = torch.zeros(numel + 1, dtype=torch.float64, device=self._device)
        value, error = None, None
        if self.rank == 0:
            try:
                value = make()
                wire[1:] = value.reshape(-1).to(wire.device, torch.float64)
            except Exception as e:  # re-raised below, after the others are told
                error = e
                wire[0] = 1.0
        dist.broadcast(wire, src=0)
        if error is not None:
            raise error
        if wire[0] != 0.0:
            raise RuntimeError(
                f"rank 0 could not draw the minibatch (its error is raised there); this rank "
                f"({self.rank}) stops too"
            )
        if value is not None:
            return value
        return wire[1:].to(dtype).reshape(shape)

    def sync_rng(self) -> None:
        """With ``split``, make this rank's global torch generator rank 0's (and, on nccl, the
        current CUDA device's), once per batching call: the losses then draw a minibatch's
        noise alike on every rank (``machina.utils.batch_share``; each draws the whole
        minibatch's, so the generators stay together through the call) and rank 0 keeps
        drawing what one process draws. One broadcast of the generator's state (5 KB for the
        CPU's, ~0.1-0.3 ms on gloo), not one per minibatch."""
        if not self.split or self._rng_synced:
            return
        self._rng_synced = True
        pairs = [(torch.get_rng_state, torch.set_rng_state)]
        if self._device.type == "cuda":
            pairs.append((torch.cuda.get_rng_state, torch.cuda.set_rng_state))
        for get, put in pairs:
            wire = get().to(self._device)
            dist.broadcast(wire, src=0)
            if self.rank != 0:
                put(wire.cpu())

    def bounds(self, size: int) -> tuple[int, int]:
        """This rank's slice ``[lo, hi)`` of a minibatch of ``size`` items."""
        if not self.split:
            return 0, size
        return share_bounds(size, self.world, self.rank)

    def share(self, items: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of ``items`` along its first axis."""
        lo, hi = self.bounds(len(items))
        return items[lo:hi]
