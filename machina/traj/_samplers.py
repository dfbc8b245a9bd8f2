"""Prioritised replay samplers: O(log N) draws and priority updates (Schaul et al., 2016).

A sampler holds float64 sampling weights over a population of N items (steps, or window
starts) and draws i.i.d. positions with ``P(i) = w_i / sum_j w_j``:

- ``ProportionalSampler``: ``w_i`` is the stored priority, kept in a ``SumTree`` updated in
  place: O(B log N) per batch of B draws or B updates;
- ``RankSampler``: ``w_i = rank(i) ** -alpha`` (rank 1 for the highest priority, ties share
  their average rank), from one sort of the priorities. Updates do not move an item's rank
  until the order is rebuilt, which happens lazily once the priorities updated since the sort
  reach ``RANK_REBUILD_FRACTION`` of N: O(N log N) per rebuild, i.e. amortised O(log N) per
  updated priority, and O(B log N) per batch.

Everything is vectorised over the batch: no Python loop per sample.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

# Leaves per block of the two-level sum tree. Each draw or update touches B blocks of this
# many leaves plus the N / BLOCK block sums; 64 balances the two at N = 1e6, B = 256.
BLOCK = 64
# Rank order rebuilt once this fraction of N priorities was updated since the last sort.
RANK_REBUILD_FRACTION = 1 / 16


class SumTree:
    """Non-negative float64 weights with O(B log N) batched draws and updates.

    A two-level sum tree: the leaves in blocks of ``BLOCK``, each block holding the running
    sums of its leaves, and the block totals with their running sum on top. A draw finds a
    block by binary search in the block sums, then the leaf by binary search in that block;
    an update recomputes the running sums of the touched blocks and of the block totals
    (N / BLOCK additions, in one vectorised call). Two wide levels mean few calls per batch,
    which is what costs from Python, where a binary tree would need log2(N) of them. Sums are
    recomputed from the leaves on update, never adjusted by differences, so no rounding error
    accumulates however many updates are made.

    numpy for the small per-batch operations (a fraction of torch's per-call cost), torch
    (on the same memory) for the cumulative sums, which numpy does not vectorise.
    """

    def __init__(self, weights: torch.Tensor):
        weights = weights.detach().to("cpu", torch.float64).numpy()
        self.n = len(weights)
        self._blocks = max(1, -(-self.n // BLOCK))
        self._leaves = np.zeros(self._blocks * BLOCK, dtype=np.float64)
        self._leaves[: self.n] = weights
        self._grid = self._leaves.reshape(self._blocks, BLOCK)
        self._running = torch.cumsum(torch.from_numpy(self._grid), 1).numpy()  # in each block
        self._block_sums = self._running[:, -1].copy()
        self._block_cdf = torch.cumsum(torch.from_numpy(self._block_sums), 0).numpy()
        # minimum over the positive leaves, for the importance weights
        self._block_mins = np.where(self._grid > 0, self._grid, np.inf).min(1)
        self.min = float(self._block_mins.min())

    def copy(self) -> SumTree:
        """An independent copy (O(N) memory copies, no sums recomputed)."""
        new = object.__new__(SumTree)
        new.n, new._blocks, new.min = self.n, self._blocks, self.min
        new._leaves = self._leaves.copy()
        new._grid = new._leaves.reshape(self._blocks, BLOCK)
        new._running = self._running.copy()
        new._block_sums = self._block_sums.copy()
        new._block_cdf = self._block_cdf.copy()
        new._block_mins = self._block_mins.copy()
        return new

    @property
    def total(self) -> float:
        return float(self._block_cdf[-1])

    def values(self, positions: np.ndarray) -> np.ndarray:
        return self._leaves[positions]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """The leaf holding each cumulative ``mass`` (B,) float64 in ``[0, total)``: leaf i
        for masses in ``[sum(w[:i]), sum(w[:i + 1]))``; leaves of weight 0 are never found."""
        # Masses are kept in [0, total) and each block's rest in [0, block total), whatever
        # the rounding: a binary search (first running sum > mass) then never stops on a
        # weight of 0, whose running sum equals the one before it.
        mass = np.minimum(mass, np.nextafter(self._block_cdf[-1], 0.0))
        block = np.searchsorted(self._block_cdf, mass, side="right")
        np.minimum(block, self._blocks - 1, out=block)
        rest = mass - self._block_cdf[block] + self._block_sums[block]
        running = self._running[block]
        np.maximum(rest, 0.0, out=rest)
        np.minimum(rest, np.nextafter(running[:, -1], 0.0), out=rest)
        leaf = torch.searchsorted(
            torch.from_numpy(running), torch.from_numpy(rest[:, None]), right=True
        ).numpy()[:, 0]
        np.minimum(leaf, BLOCK - 1, out=leaf)
        return block * BLOCK + leaf

    def update(self, positions: np.ndarray, weights: np.ndarray) -> None:
        """Set the leaves ``positions`` (B,) int64 to ``weights`` (B,); a repeated position
        must carry one weight."""
        self._leaves[positions] = weights
        block = positions // BLOCK  # repeats recompute the same block: harmless
        rows = self._grid[block]
        running = torch.cumsum(torch.from_numpy(rows), 1).numpy()
        self._running[block] = running
        self._block_sums[block] = running[:, -1]
        old_mins = self._block_mins[block]
        new_mins = np.where(rows > 0, rows, np.inf).min(1)
        self._block_mins[block] = new_mins
        torch.cumsum(torch.from_numpy(self._block_sums), 0, out=torch.from_numpy(self._block_cdf))
        # The minimum over all blocks is searched again only when a block that held it rose.
        low = float(new_mins.min())
        if low <= self.min:
            self.min = low
        elif (old_mins == self.min).any():
            self.min = float(self._block_mins.min())


def _uniform(batch_size: int, generator: torch.Generator | None = None) -> np.ndarray:
    """U[0, 1) float64 draws from ``generator`` (a Traj's), else torch's global one."""
    return torch.rand(batch_size, dtype=torch.float64, generator=generator).numpy()


def _draw(
    tree: SumTree, batch_size: int, beta: float, generator: torch.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (B,) int64 drawn with P(i) = w_i / sum_j w_j, and importance weights
    ``(P(i) / min_j P(j)) ** -beta`` (B,) float32 (the largest over the population is 1)."""
    positions = tree.find(_uniform(batch_size, generator) * tree.total)
    ratio = tree.values(positions) / tree.min
    return positions, (ratio ** -float(beta)).astype(np.float32)


class ProportionalSampler:
    """``P(i) = p_i / sum_j p_j`` over the priorities themselves."""

    def __init__(self, pris: torch.Tensor):
        self.tree = SumTree(pris)
        self.n = self.tree.n
        self.stale = False  # exact after every update

    def draw(
        self, batch_size: int, beta: float, generator: torch.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return _draw(self.tree, batch_size, beta, generator)

    def update(self, positions: np.ndarray, pris: np.ndarray) -> None:
        self.tree.update(positions, pris)


@functools.lru_cache(maxsize=2)
def _distinct_rank_tree(n: int, alpha: float) -> SumTree:
    """The tree of ``rank ** -alpha`` for ranks 1..n in rank order: the same for every set
    of n distinct priorities, so a rebuild without ties reuses it (it is never updated)."""
    return SumTree(torch.arange(1, n + 1, dtype=torch.float64).pow_(-alpha))


class RankSampler:
    """``P(i) ∝ rank(i) ** -alpha`` with the ranks of the last sort (see the module).

    The tree holds the weights in rank order (decreasing); a drawn position p is the step
    ``order[p]``, so a rebuild is one sort, without scattering weights back to steps.
    """

    def __init__(self, pris: torch.Tensor, alpha: float):
        values = pris.detach().cpu().numpy()
        self.n = len(values)
        self.order = np.argsort(-values)  # numpy's vectorised sort: about 3x torch.sort here
        ordered = values[self.order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.tree = _distinct_rank_tree(self.n, float(alpha))
        if len(starts) < self.n:  # ties: a copy of the tree with their weights averaged
            # c ties at 0-based positions [p, p + c) have ranks p + 1 .. p + c: mean p + (c + 1) / 2
            counts = np.diff(np.r_[starts, self.n])
            tied = counts > 1
            starts, counts = starts[tied], counts[tied]
            weights = np.repeat((starts + (counts + 1) / 2.0) ** -float(alpha), counts)
            group_of = np.repeat(np.arange(len(counts)), counts)
            positions = (
                starts[group_of]
                + np.arange(len(group_of))
                - np.repeat(np.cumsum(counts) - counts, counts)
            )
            if len(positions) * BLOCK < self.n:  # few: update a copy, O(k log N)
                self.tree = self.tree.copy()
                self.tree.update(positions, weights)
            else:  # many (new steps enter at the maximum priority): a new tree, O(N)
                leaves = self.tree.values(np.arange(self.n))
                leaves[positions] = weights
                self.tree = SumTree(torch.from_numpy(leaves))
        self._updates = 0
        self.stale = False

    def draw(
        self, batch_size: int, beta: float, generator: torch.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        positions, is_weights = _draw(self.tree, batch_size, beta, generator)
        return self.order[positions], is_weights

    def update(self, positions: np.ndarray, pris: np.ndarray) -> None:
        self._updates += len(positions)
        self.stale = self._updates >= max(1, int(self.n * RANK_REBUILD_FRACTION))

    def weights(self) -> np.ndarray:
        """The sampling weight of every item, in item order (N,) float64."""
        out = np.empty(self.n, dtype=np.float64)
        out[self.order] = self.tree.values(np.arange(self.n))
        return out


def make_sampler(pris: torch.Tensor, mode: str, alpha: float):
    """A sampler of ``mode`` over ``pris`` (N,), which must be finite and positive."""
    if mode == "proportional":
        return ProportionalSampler(pris)
    return RankSampler(pris, alpha)
