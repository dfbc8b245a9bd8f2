"""RunningMeanStd: mean and variance of all samples seen, updated one batch at a time."""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Mean and (population) variance over every sample given to :meth:`update`.

    Batches are merged with the parallel formula of Chan, Golub and LeVeque (1979), so the
    result equals ``np.mean`` / ``np.var`` over the concatenation of all batches (up to
    float64 round-off) whatever their sizes, with no per-sample Python loop.

    Parameters
    ----------
    shape : tuple of int
        Shape of one sample.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.var = np.zeros(self.shape, dtype=np.float64)
        self.count = 0

    @property
    def std(self) -> np.ndarray:
        """Standard deviation, (*shape)."""
        return np.sqrt(self.var)

    def update(self, x: np.ndarray) -> None:
        """Fold a batch of samples into the statistics.

        Parameters
        ----------
        x : (N, *shape) array
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0 or x.shape[1:] != self.shape:
            raise ValueError(f"x: expected shape (N, *{self.shape}), given {x.shape}")
        if x.shape[0] == 0:
            return
        self.merge(x.mean(axis=0), x.var(axis=0), x.shape[0])

    def merge(self, mean: np.ndarray, var: np.ndarray, count: int) -> None:
        """Fold in the statistics of another set of ``count`` samples (e.g. another
        process's ``RunningMeanStd``): their ``mean`` and population ``var``, (*shape)."""
        # a Python int: a numpy int32 count would wrap around in self.count * count
        if int(count) != count:
            raise ValueError(f"count: expected a whole number of samples, given {count!r}")
        count = int(count)
        if count <= 0:
            return
        mean, var = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
        for name, value in (("mean", mean), ("var", var)):
            if value.shape != self.shape:
                raise ValueError(f"{name}: expected shape {self.shape}, given {value.shape}")
        total = self.count + count
        delta = mean - self.mean
        # M2 (sum of squared deviations) of the union: both parts' M2 plus the spread of
        # their means; new mean moves by delta weighted by the other part's share.
        m2 = self.var * self.count + var * count
        m2 = m2 + delta**2 * (self.count * count / total)
        self.mean = self.mean + delta * (count / total)
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, np.ndarray | int]:
        """The statistics.

        Returns
        -------
        dict
            ``mean`` and ``var`` (*shape) float64 copies and the sample ``count`` (int).
        """
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, np.ndarray | int]) -> None:
        """Restore the statistics of :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            ``mean`` and ``var`` of shape (*shape) and ``count``.
        """
        self.mean = np.array(state["mean"], dtype=np.float64).reshape(self.shape)
        self.var = np.array(state["var"], dtype=np.float64).reshape(self.shape)
        self.count = int(state["count"])

    def __repr__(self) -> str:
        return f"RunningMeanStd(shape={self.shape}, count={self.count})"
