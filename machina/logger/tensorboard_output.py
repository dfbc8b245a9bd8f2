"""One TensorBoard log directory that receives the scalars of each ``dump_tabular``."""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["TensorBoardOutput"]


class TensorBoardOutput:
    """Write rows of scalars to a TensorBoard event file.

    Each key becomes a scalar tag of the same name, recorded at the row's step. Values that
    are not numbers (strings, ``None``) are skipped: TensorBoard scalars are numeric.

    Parameters
    ----------
    log_dir : str or os.PathLike
        Directory for the event file (created if missing); point ``tensorboard --logdir``
        at it or at a parent.

    Attributes
    ----------
    log_dir : str
        Absolute path of the directory.
    """

    def __init__(self, log_dir: str | os.PathLike) -> None:
        # Imported here: pulling in tensorboard costs about a second, paid only when used.
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = os.path.abspath(os.fspath(log_dir))
        self._writer: SummaryWriter | None = SummaryWriter(log_dir=self.log_dir)

    @property
    def closed(self) -> bool:
        """Whether the writer has been closed."""
        return self._writer is None

    def write(self, row: Mapping[str, Any], step: int) -> None:
        """Add every numeric value of ``row`` as a scalar at ``step``, then flush.

        Parameters
        ----------
        row : mapping of str to scalar
            Tag to value.
        step : int
            Global step of the row (the x-axis in TensorBoard).
        """
        if self._writer is None:
            raise ValueError(f"TensorBoardOutput for {self.log_dir!r} is closed.")
        for key, value in row.items():
            # bool is a numbers.Real too, and is logged as 0.0 / 1.0.
            if isinstance(value, numbers.Real):
                self._writer.add_scalar(key, float(value), global_step=int(step))
        # Flush every row so the curves are visible (and readable by tests) at once,
        # instead of after SummaryWriter's default 120 s.
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file. Closing twice is harmless."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __repr__(self) -> str:
        return f"TensorBoardOutput({self.log_dir!r})"
