"""Prioritised replay samplers: O(log N) draws and priority updates (Schaul et al., 2016).

A sampler holds float64 sampling weights over a population of N items (steps, or window
starts) and draws i.i.d. positions with ``P(i) = w_i / sum_j w_j``:

- ``ProportionalSampler``: ``w_i`` is the stored priority, kept in a ``SumTree`` updated in
  place: O(B log N) per batch of B draws or B updates;
- ``RankSampler``: ``w_i = rank(i) ** -alpha`` (rank 1 for the highest priority, ties share
  their average rank), from one sort of the priorities. Updates do not move an item's rank
  until the order is rebuilt, which happens lazily once the priorities updated since the sort
  reach ``RANK_REBUILD_FRACTION`` of N: the k moved items are sorted alone and merged into
  the rest of the last order, O(N + k log k) per rebuild (O(N log N) for the first sort),
  i.e. amortised O(log N) per updated priority, and O(B log N) per batch. New items (steps
  appended to a replay memory, its oldest evicted) are merged into the last order the same
  way, so adding an episode to a full memory costs O(N + k log k), not a sort of N.

Everything is vectorised over the batch: no Python loop per sample.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import torch

from machina.utils.tensors import to_numpy

# Nodes of the tree level searched in one call through its running sums (or all the leaves,
# when fewer): a draw descends the log2(N / TOP) levels below it one numpy call per level for
# the whole batch; an update recomputes those levels and one cumulative sum of TOP values.
# 4096 balances the two at N = 1e6, B = 256 (example/benchmarks/README.md, replay).
TOP = 4096
# Rank order rebuilt once this fraction of N priorities was updated since the last sort.
RANK_REBUILD_FRACTION = 1 / 16
# SumTree's attributes that are views of its arrays (see SumTree.__getstate__)
_VIEWS = ("_left", "_right", "_level_t", "_running_t")


class SumTree:
    """Non-negative float64 weights with O(B log N) batched draws and updates.

    A binary sum tree in one heap-ordered array (node ``i`` has the children ``2i`` and
    ``2i + 1``; the P >= N leaves at ``[P, 2P)``, padded with zeros), whose level of ``TOP``
    nodes is also kept as running sums. A batch of B draws finds its nodes of that level by
    one binary search in the running sums, then descends the ``log2(P / TOP)`` levels below
    together, six numpy calls per level for the whole batch, never a Python loop per draw.
    An update writes the leaves, recomputes their ancestors level by level (each the sum of
    its two children, never adjusted by differences, so that no rounding error accumulates
    however many updates are made) and the running sums (one cumulative sum of ``TOP``
    values). Only the levels from ``TOP`` nodes down are stored or kept up to date.

    ``min``, the smallest positive leaf (for importance weights), is kept exact without a
    min-tree: a lower new weight replaces it; a write over a leaf holding it lowers a count
    of its holders (never an overestimate), and the leaves are scanned again only when that
    count reaches 0, which draws by priority, rarely hitting the lowest leaf, seldom cause.
    """

    def __init__(self, weights: torch.Tensor | np.ndarray, top: int = TOP):
        if isinstance(weights, torch.Tensor):
            weights = weights.detach().to("cpu", torch.float64).numpy()
        weights = np.asarray(weights, dtype=np.float64)
        self.n = len(weights)
        self._first = 1 << max(0, self.n - 1).bit_length()  # P, the first leaf: 2**k >= n
        self._top = min(self._first, 1 << max(0, int(top) - 1).bit_length())
        self._depth = (self._first // self._top).bit_length() - 1  # levels below the top
        self._tree = np.zeros(2 * self._first, dtype=np.float64)
        self._tree[self._first : self._first + self.n] = weights
        self._running = np.zeros(self._top + 1, dtype=np.float64)  # with a leading 0
        self._make_views()
        size = self._first // 2
        while size >= self._top:
            np.add(
                self._left[size : 2 * size], self._right[size : 2 * size],
                out=self._tree[size : 2 * size],
            )  # fmt: skip
            size //= 2
        self._update_running()
        self._rescan_min()

    def _make_views(self) -> None:
        # heap views: the left and the right child of node i are _left[i] and _right[i]
        self._left, self._right = self._tree[0::2], self._tree[1::2]
        # torch's cumulative sum on the same memory: a third of numpy's time here; the
        # tensors made once (each from_numpy costs a few us between gradient steps)
        self._level_t = torch.from_numpy(self._tree[self._top : 2 * self._top])
        self._running_t = torch.from_numpy(self._running[1:])

    def __getstate__(self) -> dict:
        # A pickled (or deep-copied) view is an array of its own: updates would then write
        # the tree and sum stale copies of it. The views are made again on unpickling.
        state = self.__dict__.copy()
        for name in _VIEWS:
            del state[name]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._make_views()

    def _update_running(self) -> None:
        torch.cumsum(self._level_t, 0, out=self._running_t)

    def _rescan_min(self) -> None:
        leaves = self._tree[self._first : self._first + self.n]
        low = leaves.min(initial=np.inf)
        if not low > 0.0:  # zeros among the weights: the least positive one, more slowly
            low = leaves.min(initial=np.inf, where=leaves > 0.0)
        self.min = float(low)
        self._min_count = int(np.count_nonzero(leaves == self.min))

    def copy(self) -> SumTree:
        """An independent copy (O(N) memory copies, no sums recomputed)."""
        new = object.__new__(SumTree)
        new.__dict__.update(self.__dict__)
        new._tree = self._tree.copy()
        new._running = self._running.copy()
        new._make_views()
        return new

    @property
    def total(self) -> float:
        return float(self._running[-1])

    def values(self, positions: np.ndarray) -> np.ndarray:
        return self._tree[self._first + positions]

    def leaves(self) -> np.ndarray:
        """A copy of the N weights (N,) float64."""
        return self._tree[self._first : self._first + self.n].copy()

    def find(self, mass: np.ndarray, with_weights: bool = False):
        """The leaf holding each cumulative ``mass`` (B,) float64 in ``[0, total)``: leaf i
        for masses in ``[sum(w[:i]), sum(w[:i + 1]))``; leaves of weight 0 are never found.

        Returns the leaves (B,) int64, and with ``with_weights`` also their weights (B,).
        """
        running = self._running
        total = np.minimum(mass, np.nextafter(running[-1], 0.0))
        # the top-level node: running[j] <= mass < running[j + 1], so a positive one
        node = np.searchsorted(running, total, side="right")
        node -= 1
        mass = total - running[node]
        np.maximum(mass, 0.0, out=mass)
        node += self._top
        left = self._left
        for _ in range(self._depth):  # one level of the whole batch per iteration
            weight = left[node]
            node <<= 1
            go_right = mass >= weight
            weight *= go_right
            mass -= weight
            node += go_right
        weights = self._tree[node]
        if not weights.min() > 0.0:
            # Rounding let a mass run past the end of a subtree and the descent reach a zero
            # weight (padding, or a zero leaf): redo those draws going right only into
            # positive subtrees, which ends on the last positive leaf the mass ran past.
            bad = np.flatnonzero(~(weights > 0.0))
            top = node[bad] >> self._depth
            start = np.maximum(total[bad] - running[top - self._top], 0.0)
            node[bad] = self._descend_positive(start, top)
            weights = self._tree[node]
        node -= self._first
        return (node, weights) if with_weights else node

    def _descend_positive(self, mass: np.ndarray, node: np.ndarray) -> np.ndarray:
        """``find``'s descent from the top-level ``node`` (k,) with its ``mass`` (k,), going
        right only when the right subtree is positive."""
        tree, left = self._tree, self._left
        for _ in range(self._depth):
            weight = left[node]
            node <<= 1
            go_right = (mass >= weight) & (tree[node + 1] > 0.0)
            weight *= go_right
            mass -= weight
            node += go_right
        return node

    def update(self, positions: np.ndarray, weights: np.ndarray) -> None:
        """Set the leaves ``positions`` (B,) int64 to ``weights`` (B,); a repeated position
        must carry one weight."""
        if len(positions) == 0:
            return
        node = positions + self._first
        tree = self._tree
        old = tree[node]
        tree[node] = weights
        left, right = self._left, self._right
        for _ in range(self._depth):  # one level of the whole batch per iteration
            node >>= 1
            tree[node] = left[node] + right[node]
        self._update_running()
        low = weights.min()
        if not low > 0.0:  # zeros (or NaN) among the weights: the least positive one
            low = weights.min(initial=np.inf, where=weights > 0.0)
        if low < self.min:
            self.min, self._min_count = float(low), 1  # at least one holder: never more
            return
        if old.min() <= self.min:  # some holders overwritten; repeats count twice: safe
            self._min_count -= int(np.count_nonzero(old == self.min))
        if low == self.min:
            self._min_count = max(self._min_count, 1)  # a new weight holds it
        elif self._min_count <= 0:
            self._rescan_min()


class _Uniforms:
    """U[0, 1) float64 draws into one reused tensor per thread: the numbers of
    ``torch.rand(n, dtype=torch.float64, generator=generator)`` (``rand`` is ``uniform_`` on a
    new tensor), without its allocation and conversion, several us per call between gradient
    steps. The array returned is overwritten by the thread's next draw. Per thread, as shallow
    copies of a Traj share its samplers and may draw from two threads."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __reduce__(self):
        # the buffers are not state: a copy or unpickled one makes its own (any protocol)
        return (_Uniforms, ())

    def draw(self, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        """``n`` draws (n,) from ``generator`` (a Traj's), else torch's global one."""
        local = self._local
        array = getattr(local, "array", None)
        if array is None or len(array) != n:
            local.tensor = torch.empty(n, dtype=torch.float64)
            local.array = array = local.tensor.numpy()
        local.tensor.uniform_(generator=generator)
        return array


def _uniforms_of(sampler) -> _Uniforms:
    """The sampler's draw buffer, made at its first draw (also for one pickled before it
    had one)."""
    uniforms = sampler.__dict__.get("_uniforms")
    if uniforms is None:
        uniforms = sampler._uniforms = _Uniforms()
    return uniforms


def _draw(
    tree: SumTree,
    uniforms: _Uniforms,
    batch_size: int,
    beta: float,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (B,) int64 drawn with P(i) = w_i / sum_j w_j, and importance weights
    ``(P(i) / min_j P(j)) ** -beta`` (B,) float32 (the largest over the population is 1)."""
    mass = uniforms.draw(batch_size, generator) * tree.total
    positions, weights = tree.find(mass, with_weights=True)
    weights /= tree.min
    return positions, np.power(weights, -float(beta), out=weights).astype(np.float32)


class ProportionalSampler:
    """``P(i) = p_i / sum_j p_j`` over the priorities themselves."""

    def __init__(self, pris: torch.Tensor):
        self.tree = SumTree(pris)
        self.n = self.tree.n
        self.stale = False  # exact after every update

    def draw(
        self, batch_size: int, beta: float, generator: torch.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return _draw(self.tree, _uniforms_of(self), batch_size, beta, generator)

    def update(self, positions: np.ndarray, pris: np.ndarray) -> None:
        self.tree.update(positions, pris)


def _insert_sorted(
    kept: np.ndarray, kept_values: np.ndarray, moved: np.ndarray, moved_values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Items ``kept`` (K,) by decreasing ``kept_values`` with ``moved`` (M,) of
    ``moved_values`` merged in: the order of all and their values in it. The M are sorted
    alone, O(K + M log M)."""
    by_value = np.argsort(-moved_values)
    moved, moved_values = moved[by_value], moved_values[by_value]
    # kept_values decrease: their negatives increase, as searchsorted wants
    at = np.searchsorted(-kept_values, -moved_values, side="right")
    return np.insert(kept, at, moved), np.insert(kept_values, at, moved_values)


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

    def __init__(
        self,
        pris: torch.Tensor,
        alpha: float,
        previous: RankSampler | None = None,
        shift: int | None = None,
    ):
        """``previous``: a sampler over the same items whose priorities changed only through
        its ``update`` since (its order is reused as is); or, with ``shift``, one over items
        of which the first ``shift`` left and the rest are the first of ``pris``, followed
        by new ones (FIFO): its order is reused for those whose value it knows."""
        values = to_numpy(pris, bfloat16_as_float32=True)
        self.n = len(values)
        self.alpha = float(alpha)
        merged = None
        if previous is not None and shift is None and previous.n == self.n:
            merged = previous._merged_order(values)
        elif previous is not None and shift is not None:
            merged = previous._shifted_order(values, shift)
        if merged is None:
            order = np.argsort(-values)  # numpy's vectorised sort: about 3x torch.sort here
            merged = order, values[order]
        self._build(*merged)
        self.values = values.copy()  # the items' current priorities, for a shifted reuse
        self._updates = 0
        self._moved = np.zeros(self.n, dtype=bool)  # items updated since the sort
        self.stale = False

    def state(self) -> dict[str, np.ndarray]:
        """What the draws depend on besides the priorities (``Traj.save`` keeps it): the
        last order (N,) int64, the values it sorted (N,), the items updated since (N,) bool
        and their count () int64."""
        return dict(
            order=self.order,
            ordered=self._ordered,
            moved=self._moved,
            updates=np.array(self._updates, dtype=np.int64),
        )

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray], alpha: float, pris: torch.Tensor
    ) -> RankSampler:
        """The sampler whose ``state()`` was ``state`` (checked by the caller), over the
        items' current priorities ``pris`` (N,)."""
        new = object.__new__(cls)
        new.n, new.alpha = len(state["order"]), float(alpha)
        new._build(state["order"].astype(np.int64), state["ordered"])
        new.values = to_numpy(pris, bfloat16_as_float32=True).copy()
        new._updates = int(state["updates"])
        new._moved = state["moved"].astype(bool)
        new.stale = new._updates >= max(1, int(new.n * RANK_REBUILD_FRACTION))
        return new

    def _build(self, order: np.ndarray, ordered: np.ndarray) -> None:
        """The rank weights' tree for the items in ``order`` (N,), whose values by
        decreasing value are ``ordered`` (N,)."""
        alpha = self.alpha
        self.order = order
        self._ordered = ordered  # values by decreasing value, for the next merge
        new_value = np.empty(self.n, dtype=bool)  # True where a run of equal values starts
        new_value[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new_value[1:])
        starts = np.flatnonzero(new_value)
        self.tree = _distinct_rank_tree(self.n, float(alpha))
        if len(starts) < self.n:  # ties: their weights averaged
            # c ties at 0-based positions [p, p + c) have ranks p + 1 .. p + c: mean p + (c + 1) / 2
            counts = np.diff(starts, append=self.n)
            if np.count_nonzero(counts > 1) * 64 < len(counts):  # few: update a copy, O(k log N)
                tied = counts > 1
                starts, counts = starts[tied], counts[tied]
                weights = np.repeat((starts + (counts + 1) / 2.0) ** -float(alpha), counts)
                positions = np.repeat(starts - (np.cumsum(counts) - counts), counts)
                positions += np.arange(len(positions))
                self.tree = self.tree.copy()
                self.tree.update(positions, weights)
            else:  # many (new steps enter at the maximum priority): a new tree, O(N)
                group_weights = (starts + (counts + 1) / 2.0) ** -float(alpha)
                group = np.cumsum(new_value, dtype=np.int64)
                group -= 1
                self.tree = SumTree(group_weights[group])

    def _merged_order(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The order of ``values`` (N,) by decreasing value and the values in that order,
        from this sampler's, when only the items given to ``update`` changed since: the
        others stay in order, so the k moved ones are sorted alone and merged in, O(N + k
        log k) sequential work instead of a sort of N. (Ties may come out in another order
        than a full sort's; they share one weight.)"""
        moved = np.flatnonzero(self._moved)
        if len(moved) == 0:
            return self.order, self._ordered
        keep = ~self._moved[self.order]
        kept, kept_values = self.order[keep], self._ordered[keep]
        return _insert_sorted(kept, kept_values, moved, values[moved])

    def _shifted_order(
        self, values: np.ndarray, shift: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """As :meth:`_merged_order` for ``values`` (M,) whose first ``n - shift`` items are
        this sampler's items from ``shift`` on and the rest new (a FIFO's add; ``shift`` 0:
        the same items). Those whose value differs from this sampler's copy (written behind
        its back) are merged in as moved ones. None (sort anew) for a ``shift`` that does
        not fit, or another dtype (old values in a widened column's order would round)."""
        kept_n = self.n - shift
        if not 0 <= shift <= self.n or kept_n > len(values) or values.dtype != self.values.dtype:
            return None
        moved_old = self._moved.copy()
        moved_old[shift:] |= values[:kept_n] != self.values[shift:]
        keep = self.order >= shift
        keep &= ~moved_old[self.order]
        kept, kept_values = self.order[keep], self._ordered[keep]
        kept -= shift
        moved = np.concatenate([np.flatnonzero(moved_old[shift:]), np.arange(kept_n, len(values))])
        return _insert_sorted(kept, kept_values, moved, values[moved])

    def draw(
        self, batch_size: int, beta: float, generator: torch.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        positions, is_weights = _draw(self.tree, _uniforms_of(self), batch_size, beta, generator)
        return self.order[positions], is_weights

    def update(self, positions: np.ndarray, pris: np.ndarray) -> None:
        """Note ``positions`` (B,) as updated; their ranks change at the next rebuild."""
        self._updates += len(positions)
        self._moved[positions] = True
        self.values[positions] = pris
        self.stale = self._updates >= max(1, int(self.n * RANK_REBUILD_FRACTION))

    def weights(self) -> np.ndarray:
        """The sampling weight of every item, in item order (N,) float64."""
        out = np.empty(self.n, dtype=np.float64)
        out[self.order] = self.tree.leaves()
        return out


def make_sampler(
    pris: torch.Tensor, mode: str, alpha: float, previous=None, shift: int | None = None
):
    """A sampler of ``mode`` over ``pris`` (N,), which must be finite and positive.

    ``previous``, ``shift``: a rank sampler whose order may be reused (see ``RankSampler``).
    """
    if mode == "proportional":
        return ProportionalSampler(pris)
    return RankSampler(pris, alpha, previous, shift)
