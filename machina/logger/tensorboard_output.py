"""One TensorBoard log directory that receives the scalars of each ``dump_tabular``."""

from __future__ import annotations

import glob
import numbers
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["TensorBoardOutput", "event_files", "truncate_events"]

#: The suffix of the event files TensorBoardOutput writes: the files machina may rewrite or
#: delete (a user's own SummaryWriter in the same folder is never touched).
SUFFIX = ".machina"
_PATTERN = "events.out.tfevents.*" + SUFFIX


def event_files(log_dir: str | os.PathLike) -> list[str]:
    """The event files :class:`TensorBoardOutput` wrote directly in ``log_dir``, by name."""
    return sorted(glob.glob(os.path.join(glob.escape(os.fspath(log_dir)), _PATTERN)))


def truncate_events(log_dir: str | os.PathLike, after: float) -> None:
    """Drop the scalars written after the wall-clock time ``after`` (seconds since the epoch,
    e.g. a resumed run's checkpoint: its later rows are written again) from the event files
    :class:`TensorBoardOutput` wrote in ``log_dir``, as progress.csv is cut back. By time, not
    step: a loop without env steps writes every row at step 0. Each file is rewritten only
    when it loses something."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    for path in event_files(log_dir):
        records = list(RawEventFileLoader(path).Load())
        kept = [
            r
            for r in records
            if not (
                (e := event_pb2.Event.FromString(r)).HasField("summary") and e.wall_time > after
            )
        ]
        if len(kept) == len(records):
            continue
        # a name TensorBoard does not read, replaced atomically
        tmp = os.path.join(os.path.dirname(path), f".machina-truncating-{os.getpid()}")
        with open(tmp, "wb") as f:
            writer = RecordWriter(f)
            for record in kept:
                writer.write(record)
        os.replace(tmp, path)


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
        self._writer: SummaryWriter | None = SummaryWriter(
            log_dir=self.log_dir, filename_suffix=SUFFIX
        )

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
