"""One CSV file that receives one row per ``dump_tabular``.

The header is written with the first row. When a later row brings keys the header does not
have, the file is rewritten with the extended header: old rows keep their values and get
empty cells in the new columns, so no column is ever silently dropped.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["CsvOutput"]


class CsvOutput:
    """Append rows of scalars to a CSV file, extending the header when new keys appear.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file. Missing parent directories are created.
    append : bool, default False
        False starts a fresh file (an existing one is truncated, as machina 0.x did).
        True keeps an existing file and continues it, reading its header back, e.g. to
        resume a run.

    Attributes
    ----------
    path : str
        Absolute path of the file.
    fieldnames : list of str
        The current header, in first-seen order; empty before the first row.
    """

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        self.path = os.path.abspath(os.fspath(path))
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.fieldnames: list[str] = []
        if append and os.path.exists(self.path):
            _drop_cut_row(self.path)
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), None)
            self.fieldnames = list(header) if header else []
            self._file = open(self.path, "a", newline="", encoding="utf-8")
        else:
            self._file = open(self.path, "w", newline="", encoding="utf-8")

    @property
    def closed(self) -> bool:
        """Whether the file has been closed."""
        return self._file.closed

    def write(self, row: Mapping[str, Any], step: int | None = None) -> None:
        """Write one row; keys missing from ``row`` get an empty cell.

        Parameters
        ----------
        row : mapping of str to scalar
            Column name to value. Keys not yet in the header extend it, and the file is
            rewritten once with the new header before this row is appended.
        step : int, optional
            Ignored (a row carries its own step columns); accepted so that a ``CsvOutput``
            is a ``machina.logger.output.Output`` for ``Logger.add_output``.
        """
        if self._file.closed:
            raise ValueError(f"CsvOutput for {self.path!r} is closed; cannot write a row.")
        new_keys = [key for key in row if key not in self.fieldnames]
        if new_keys:
            if self.fieldnames:
                self._rewrite_with_header(self.fieldnames + new_keys)
            else:
                self.fieldnames = list(new_keys)
                csv.writer(self._file).writerow(self.fieldnames)
        writer = csv.DictWriter(self._file, fieldnames=self.fieldnames, restval="")
        writer.writerow(row)
        self._file.flush()

    def _rewrite_with_header(self, fieldnames: list[str]) -> None:
        # Rare (only when a new key appears), so re-reading the whole file is acceptable.
        # Written to a temporary file and renamed, so a crash mid-rewrite loses nothing.
        self._file.close()
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            next(reader, None)  # old header
            old_rows = list(reader)
        tmp_path = self.path + ".tmp"
        with open(tmp_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(fieldnames)
            pad = [""] * (len(fieldnames) - len(self.fieldnames))
            for old_row in old_rows:
                writer.writerow(old_row + pad)
        os.replace(tmp_path, self.path)
        self.fieldnames = list(fieldnames)
        self._file = open(self.path, "a", newline="", encoding="utf-8")

    def close(self) -> None:
        """Flush and close the file. Closing twice is harmless."""
        if not self._file.closed:
            self._file.close()

    def __repr__(self) -> str:
        return f"CsvOutput({self.path!r}, columns={len(self.fieldnames)})"


def _drop_cut_row(path: str) -> None:
    """Cut ``path`` after its last line break: a row cut short (a disk filled, a power loss
    mid-write) would have the next row glued onto it, its cells shifted."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - 4096)
            f.seek(start)
            chunk = f.read(pos - start)
            found = chunk.rfind(b"\n")
            if found >= 0:
                keep = start + found + 1
                break
            pos = start
        else:
            keep = 0
        if keep < end:
            f.truncate(keep)
