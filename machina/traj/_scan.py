"""Segment-aware reverse scans over flat, concatenated episodes."""

from __future__ import annotations

import numpy as np

# Steps per block of the blocked scan: the fastest size on 1M steps of short, long and mixed
# episodes (example/benchmarks/README.md, "Measurements behind the code").
_BLOCK = 32
# Below this many steps a plain loop over Python floats beats the blocked scan's fixed cost
# of about 4 * _BLOCK numpy calls (it mostly serves the scan's own recursion on the blocks).
_LOOP_MAX = 256
# Blocks transposed per copy (see _blocked_scan): 256 blocks of 32 float64 are 64 KiB.
_SLAB = 256


def reverse_discounted_sum(
    x: np.ndarray, decay: float, lengths: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``y[t] = x[t] + decay * y[t + 1]`` inside each episode, ``y`` past its end taken as 0.

    Parameters
    ----------
    x : np.ndarray
        Concatenated per-step values of all episodes, shape (N,).
    decay : float
        Per-step discount of the recursion (gamma for returns, gamma * lambda for GAE).
    lengths : np.ndarray
        Episode lengths, shape (n_epi,), summing to N.
    out : np.ndarray, optional
        Float64 array of shape (N,) to write the result into; may be ``x`` itself, which
        saves allocating (and the kernel zeroing) one more array of N floats.

    Returns
    -------
    np.ndarray
        Shape (N,), float64: ``out`` when given.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = int(lengths.sum())
    if np.shape(x) != (n,):
        raise ValueError(
            f"x: expected shape ({n},) for episodes of total length {n}, got {np.shape(x)}"
        )
    if out is None:
        out = np.empty(n)
    elif out.shape != (n,) or out.dtype != np.float64:
        raise ValueError(
            f"out: expected a float64 array of shape ({n},), got {out.dtype} {out.shape}"
        )
    if n == 0 or decay == 0.0 or lengths.max() == 1:
        out[...] = x
        return out
    return _blocked_scan(x, float(decay), np.cumsum(lengths) - 1, out)


def _blocked_scan(x: np.ndarray, decay: float, ends: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The recursion of ``reverse_discounted_sum``, cut after each index in ``ends``.

    The flat data is cut into blocks of ``_BLOCK`` steps, whatever the episodes, and laid
    out (block step, block) so that one Python iteration advances every block by a step:
    ``2 * _BLOCK`` array operations over all the data, plus a recursive call on the blocks'
    first values (``_BLOCK`` times shorter) to carry each block's result into the one before
    it. The cost is independent of the episode lengths, unlike recursive doubling
    (``log2(max length)`` passes over the data) or a loop over the steps
    of padded episodes (as many iterations as the longest episode).

    Memory matters as much as arithmetic here: on a busy machine each newly allocated
    array of N floats costs more than a pass over it (the kernel zeroes its pages), so the
    cuts are a boolean mask and the result goes straight into ``out``.

    Parameters
    ----------
    x : np.ndarray
        (N,) values.
    decay : float
        The recursion's factor.
    ends : np.ndarray
        Sorted flat indices after which the recursion is cut (episodes' last steps), (K,).
    out : np.ndarray
        (N,) float64 result; may be ``x``.
    """
    n = len(x)
    if decay == 0.0:  # decay ** _BLOCK underflows for decay < ~1e-10
        out[...] = x
        return out
    if n <= _LOOP_MAX:
        return _loop_scan(x, decay, ends, out)
    width = -(-n // _BLOCK)
    full = n // _BLOCK
    # y[i, k] is step i of block k, filled in one transposing pass; the padding past N is
    # zero, so it adds nothing.
    y = np.empty((_BLOCK, width))
    blocks = x[: full * _BLOCK].reshape(full, _BLOCK)
    # Transposed a slab of blocks at a time: one strided copy of all the data writes every
    # line of y in a different cache line order, 5x slower than slabs that stay in cache.
    for lo in range(0, full, _SLAB):
        hi = min(lo + _SLAB, full)
        y[:, lo:hi] = blocks[lo:hi].T
    if full < width:
        y[:, full] = 0.0
        y[: n - full * _BLOCK, full] = x[full * _BLOCK :]
    end_blocks, end_steps = np.divmod(ends, _BLOCK)
    cut = np.zeros((_BLOCK, width), dtype=bool)
    cut.reshape(-1)[end_steps * width + end_blocks] = True
    # Inside each block, as if the next block were all zeros.
    carried = np.empty(width)
    for i in range(_BLOCK - 2, -1, -1):
        np.multiply(y[i + 1], decay, out=carried)
        np.copyto(carried, 0.0, where=cut[i])
        y[i] += carried
    if width > 1:
        # The true value at each block's start obeys the same recursion over the blocks,
        # with factor decay ** _BLOCK, cut after every block that holds a cut.
        cut_blocks = np.zeros(width, dtype=bool)
        cut_blocks[end_blocks] = True
        starts = _blocked_scan(y[0], decay**_BLOCK, np.flatnonzero(cut_blocks), np.empty(width))
        # Add what flows in from the next block's start, step by step back through the block.
        carried[:-1] = starts[1:]
        carried[-1] = 0.0
        for i in range(_BLOCK - 1, -1, -1):
            carried *= decay
            np.copyto(carried, 0.0, where=cut[i])
            y[i] += carried
    out[: full * _BLOCK].reshape(full, _BLOCK)[...] = y.T[:full]
    if full < width:
        out[full * _BLOCK :] = y[: n - full * _BLOCK, full]
    return out


def _loop_scan(x: np.ndarray, decay: float, ends: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The same recursion, one step at a time, for short inputs."""
    values = np.asarray(x, dtype=np.float64).tolist()
    cut = set(ends.tolist())
    acc = 0.0
    for t in range(len(values) - 1, -1, -1):
        acc = values[t] + (0.0 if t in cut else decay * acc)
        values[t] = acc
    out[...] = values
    return out
