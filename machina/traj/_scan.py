"""Segment-aware reverse scans over flat, concatenated episodes."""

from __future__ import annotations

import numpy as np


def reverse_discounted_sum(x: np.ndarray, decay: float, lengths: np.ndarray) -> np.ndarray:
    """``y[t] = x[t] + decay * y[t + 1]`` inside each episode, ``y`` past its end taken as 0.

    All episodes are scanned at once by recursive doubling: ``ceil(log2(max length))`` array
    passes over the whole data, so there is no Python loop over steps or episodes, and one
    very long episode costs no more than many short ones of the same total length.

    Parameters
    ----------
    x : np.ndarray
        Concatenated per-step values of all episodes, shape (N,).
    decay : float
        Per-step discount of the recursion (gamma for returns, gamma * lambda for GAE).
    lengths : np.ndarray
        Episode lengths, shape (n_epi,), summing to N.

    Returns
    -------
    np.ndarray
        Shape (N,), float64.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = int(lengths.sum())
    if x.shape != (n,):
        raise ValueError(
            f"x: expected shape ({n},) for episodes of total length {n}, got {x.shape}"
        )
    # Reverse time so the recursion runs forward: z[j] = b[j] + a[j] * z[j - 1].
    b = np.array(x[::-1], dtype=np.float64)
    a = np.full(n, decay, dtype=np.float64)
    # In reversed order an episode begins at its last step; the carry must not cross into it.
    seg_starts = np.cumsum(lengths[::-1])[:-1]
    a[seg_starts] = 0.0
    if n:
        a[0] = 0.0
    shift = 1
    max_len = int(lengths.max()) if len(lengths) else 0
    while shift < max_len:
        # After this pass z[j] sums its segment's terms back to j - 2 * shift + 1; a[j] holds
        # the product of the decays over that window (0 once it reaches a segment start).
        b[shift:] += a[shift:] * b[:-shift]
        a[shift:] = a[shift:] * a[:-shift]
        shift *= 2
    return b[::-1]
