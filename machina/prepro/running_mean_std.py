"""RunningMeanStd: mean and variance of all samples seen, updated one batch at a time."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from machina.utils.tensors import to_numpy


def tensor_state(state: dict[str, np.ndarray | int]) -> dict[str, torch.Tensor | int]:
    """A :meth:`RunningMeanStd.state_dict` with float64 tensors for ``mean`` and ``var``: what
    ``torch.save`` writes and ``torch.load``'s default (``weights_only=True``) reads back,
    as a policy's state dict (numpy arrays it refuses)."""
    return {
        "mean": torch.from_numpy(np.asarray(state["mean"])),
        "var": torch.from_numpy(np.asarray(state["var"])),
        "count": int(state["count"]),
    }


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
            Finite values.

        Raises
        ------
        ValueError
            When ``x`` has a NaN or inf, or its values would make the mean or variance
            overflow float64; the statistics are then unchanged.
        """
        self._update(x, "x")

    def _update(self, x: np.ndarray, name: str) -> None:
        """:meth:`update`, its errors naming the caller's argument ``name``."""
        x = to_numpy(x, bfloat16_as_float32=True).astype(np.float64, copy=False)
        if x.ndim == 0 or x.shape[1:] != self.shape:
            raise ValueError(f"{name}: expected shape (N, *{self.shape}), given {x.shape}")
        if x.shape[0] == 0:
            return
        check_finite(x, name)
        # ~1e200 values: var overflows to inf; _fold refuses it before any state changes
        with np.errstate(over="ignore", invalid="ignore"):
            mean, var = x.mean(axis=0), x.var(axis=0)
        self._fold(mean, var, x.shape[0], name)

    def merge(self, mean: np.ndarray, var: np.ndarray, count: int) -> None:
        """Fold in the statistics of another set of ``count`` samples (e.g. another
        process's ``RunningMeanStd``): their finite ``mean`` and population ``var``,
        (*shape). Refused (ValueError, statistics unchanged) when the merged mean or variance
        would overflow float64."""
        # a Python int: a numpy int32 count would wrap around in self.count * count
        if not (np.isfinite(count) and int(count) == count):
            raise ValueError(f"count: expected a whole number of samples, given {count!r}")
        count = int(count)
        if count <= 0:
            return
        mean, var = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
        for name, value in (("mean", mean), ("var", var)):
            if value.shape != self.shape:
                raise ValueError(f"{name}: expected shape {self.shape}, given {value.shape}")
            check_finite(value, name)
        if (var < 0).any():  # a variance below 0 would give NaN scales later
            raise ValueError(f"var: expected values >= 0, given min {float(var.min())}")
        self._fold(mean, var, count, "mean, var")

    def _fold(self, mean: np.ndarray, var: np.ndarray, count: int, name: str) -> None:
        """Merge ``count`` samples' ``mean`` and ``var`` in, or raise (naming ``name``) with
        nothing changed when the result would not be finite."""
        total = self.count + count
        with np.errstate(over="ignore", invalid="ignore"):
            delta = mean - self.mean
            # M2 (sum of squared deviations) of the union: both parts' M2 plus the spread of
            # their means; new mean moves by delta weighted by the other part's share.
            m2 = self.var * self.count + var * count
            m2 = m2 + delta**2 * (self.count * count / total)
            new_mean = self.mean + delta * (count / total)
            new_var = m2 / total
        if not (np.isfinite(new_mean).all() and np.isfinite(new_var).all()):
            raise ValueError(
                f"{name}: expected values whose running mean and variance fit in float64, "
                f"given {count} samples that make them overflow (with the {self.count} "
                "already folded in); the statistics are unchanged"
            )
        self.mean, self.var, self.count = new_mean, new_var, total

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
            ``mean`` (finite) and ``var`` (finite, >= 0) of shape exactly (*shape), and a
            whole ``count`` >= 0; numpy arrays or tensors.

        Raises
        ------
        KeyError, ValueError
            When a key is missing or a value is not as above; the statistics are then
            unchanged.
        """
        missing = [key for key in ("mean", "var", "count") if key not in state]
        if missing:
            raise KeyError(f"state: expected keys 'mean', 'var' and 'count', missing {missing}")
        mean = self._loaded_array(state, "mean")
        var = self._loaded_array(state, "var")
        if (var < 0).any():
            raise ValueError(f"state['var']: expected values >= 0, given min {float(var.min())}")
        count = _whole_count(state["count"])
        if count is None:
            raise ValueError(
                f"state['count']: expected a whole number >= 0, given {state['count']!r}"
            )
        self.mean, self.var, self.count = mean, var, count

    def _loaded_array(self, state: dict[str, np.ndarray | int], key: str) -> np.ndarray:
        """``state[key]`` as a float64 copy, checked to be finite and of shape (*shape)
        exactly (a reshape would accept a transposed (3, 2) state into a (2, 3) one)."""
        # via to_numpy: np.array(tensor) warns (torch's __array__ takes no copy keyword)
        value = to_numpy(state[key], bfloat16_as_float32=True).astype(np.float64)
        if self.shape == () and value.shape == (1,):  # checkpoints before session 35 saved so
            value = value.reshape(())
        if value.shape != self.shape:
            raise ValueError(f"state[{key!r}]: expected shape {self.shape}, given {value.shape}")
        check_finite(value, f"state[{key!r}]")
        return value

    def __repr__(self) -> str:
        return f"RunningMeanStd(shape={self.shape}, count={self.count})"


def check_finite(x: np.ndarray, name: str, what: str = "values") -> None:
    """Raise a ValueError naming ``name`` when ``x`` has a NaN or inf: running statistics
    that fold one in stay NaN forever.

    Parameters
    ----------
    x : array
    name : str
        The argument, for the message.
    what : str
        What ``x`` holds, for the message (e.g. ``"rewards"``).
    """
    finite = np.isfinite(x)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"{name}: expected finite {what}, given {x[where]} at index {where} "
            f"({int((~finite).sum())} non-finite of {x.size})"
        )


def _whole_count(value: Any) -> int | None:
    """``value`` as an exact int >= 0 (an int of any size, a 0-d integer array or tensor, a
    whole float); None for anything else."""
    try:
        array = to_numpy(value, bfloat16_as_float32=True)
    except (TypeError, ValueError):
        return None
    if array.ndim != 0:
        return None
    item = array.item()  # int, float or (past int64) an object holding a Python int
    if isinstance(item, bool) or not isinstance(item, int | float):
        return None
    if isinstance(item, float) and not (np.isfinite(item) and item.is_integer()):
        return None
    return int(item) if item >= 0 else None
