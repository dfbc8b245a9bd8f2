"""Plain-text tables: ``tabulate``, the table printer and ``csv2table``.

machina 0.x's logger module carried a copy of the ``tabulate`` package (from rllab) and
printed its rows with it; these are the same calls, written for the formats a terminal or a
Markdown file needs (``plain``, ``simple``, ``grid``, ``pipe``, ``tsv``, or any
:class:`TableFormat`, e.g. from :func:`simple_separated_format`).
"""

from __future__ import annotations

import csv
import numbers
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "Line",
    "DataRow",
    "TableFormat",
    "tabulate",
    "tabulate_formats",
    "simple_separated_format",
    "TerminalTablePrinter",
    "table_printer",
    "csv2table",
]


class Line(NamedTuple):
    """A horizontal rule: ``begin + hline * width + sep + ... + end``."""

    begin: str
    hline: str
    sep: str
    end: str


class DataRow(NamedTuple):
    """A row of cells: ``begin + cell + sep + cell + ... + end``."""

    begin: str
    sep: str
    end: str


class TableFormat(NamedTuple):
    """A table layout: rules (``Line`` or None), row layouts, padding around each cell, and
    the names of the rules left out when the table has a header."""

    lineabove: Line | None
    linebelowheader: Line | None
    linebetweenrows: Line | None
    linebelow: Line | None
    headerrow: DataRow
    datarow: DataRow
    padding: int
    with_header_hide: Sequence[str] | None


_FORMATS = {
    "plain": TableFormat(
        None, None, None, None, DataRow("", "  ", ""), DataRow("", "  ", ""), 0, None
    ),
    "simple": TableFormat(
        Line("", "-", "  ", ""),
        Line("", "-", "  ", ""),
        None,
        Line("", "-", "  ", ""),
        DataRow("", "  ", ""),
        DataRow("", "  ", ""),
        0,
        ("lineabove", "linebelow"),
    ),
    "grid": TableFormat(
        Line("+", "-", "+", "+"),
        Line("+", "=", "+", "+"),
        Line("+", "-", "+", "+"),
        Line("+", "-", "+", "+"),
        DataRow("|", "|", "|"),
        DataRow("|", "|", "|"),
        1,
        None,
    ),
    "pipe": TableFormat(
        Line("|", "-", "|", "|"),
        Line("|", "-", "|", "|"),
        None,
        None,
        DataRow("|", "|", "|"),
        DataRow("|", "|", "|"),
        1,
        ("lineabove",),
    ),
    "tsv": TableFormat(
        None, None, None, None, DataRow("", "\t", ""), DataRow("", "\t", ""), 0, None
    ),
}

#: names ``tabulate``'s ``tablefmt`` accepts.
tabulate_formats = sorted(_FORMATS)


def simple_separated_format(separator: str) -> TableFormat:
    """A format without rules whose cells are separated by ``separator`` (e.g. ``"\\t"``)."""
    row = DataRow("", separator, "")
    return TableFormat(None, None, None, None, row, row, 0, None)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Number):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _cell(value: Any, floatfmt: str, missingval: str) -> str:
    if value is None:
        return missingval
    if isinstance(value, str):
        return value
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0):
        try:
            return format(float(value), floatfmt)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _align(cells: list[str], how: str, width: int) -> list[str]:
    if how == "decimal":
        # Align the decimal points: pad every fraction part to the widest one.
        fracs = [len(c) - c.index(".") if "." in c else 0 for c in cells]
        widest = max(fracs, default=0)
        cells = [c + " " * (widest - f) for c, f in zip(cells, fracs)]
        width = max([width, *map(len, cells)])
        how = "right"
    if how == "right":
        return [c.rjust(width) for c in cells]
    if how == "center":
        return [c.center(width) for c in cells]
    return [c.ljust(width) for c in cells]


def _rows_and_headers(data: Any, headers: Any) -> tuple[list[list[Any]], list[str]]:
    if isinstance(data, Mapping):
        columns = [list(v) for v in data.values()]
        rows = [list(r) for r in zip(*columns)]
        keys = [str(k) for k in data.keys()]
    else:
        rows = [list(r) for r in data]
        keys = [str(i) for i in range(max((len(r) for r in rows), default=0))]
    if isinstance(headers, str) and headers == "keys":
        return rows, keys
    if isinstance(headers, str) and headers == "firstrow":
        return rows[1:], [str(h) for h in rows[0]] if rows else []
    return rows, [str(h) for h in headers]


def tabulate(
    tabular_data: Iterable[Iterable[Any]] | Mapping[str, Iterable[Any]],
    headers: Sequence[str] | str = (),
    tablefmt: str | TableFormat = "simple",
    floatfmt: str = "g",
    numalign: str = "decimal",
    stralign: str = "left",
    missingval: str = "",
) -> str:
    """Format rows as a fixed-width text table.

    Parameters
    ----------
    tabular_data : iterable of rows, or mapping of column name to column
        Rows (lists, tuples, a 2-D numpy array) or a dict of columns.
    headers : sequence of str, ``"firstrow"`` or ``"keys"``
        Column headers; ``"firstrow"`` takes the first row, ``"keys"`` the dict's keys (or
        column indices). With fewer headers than columns they name the last columns.
    tablefmt : str or TableFormat
        One of :data:`tabulate_formats` or a :class:`TableFormat`.
    floatfmt : str
        ``format`` spec of floats.
    numalign, stralign : str
        ``"left"``, ``"right"``, ``"center"``, or (numbers) ``"decimal"`` points aligned.
    missingval : str
        Text of ``None`` cells.

    Returns
    -------
    str
        The table, lines joined by ``"\\n"``.

    Examples
    --------
    >>> print(tabulate([["Loss", 0.5], ["Step", 10]], headers=["key", "value"]))
    key     value
    -----  ------
    Loss      0.5
    Step     10
    """
    if isinstance(tablefmt, str):
        if tablefmt not in _FORMATS:
            raise ValueError(f"tablefmt: expected one of {tabulate_formats}, got {tablefmt!r}")
        fmt = _FORMATS[tablefmt]
    else:
        fmt = tablefmt
    rows, head = _rows_and_headers(tabular_data, headers)
    ncols = max([len(head), *(len(r) for r in rows)], default=0)
    head = [""] * (ncols - len(head)) + head if head else []
    rows = [r + [None] * (ncols - len(r)) for r in rows]
    columns = []
    for j in range(ncols):
        raw = [r[j] for r in rows]
        numeric = bool(raw) and all(v is None or _is_number(v) for v in raw)
        cells = [_cell(v, floatfmt, missingval) for v in raw]
        width = max([len(head[j]) if head else 0, *map(len, cells)], default=0)
        cells = _align(cells, numalign if numeric else stralign, width)
        width = max([width, *map(len, cells)])  # decimal alignment may widen the column
        columns.append((cells, width, numeric))
    pad = " " * fmt.padding
    widths = [w + 2 * fmt.padding for _, w, _ in columns]

    def line(rule: Line | None) -> list[str]:
        if rule is None:
            return []
        return [rule.begin + rule.sep.join(rule.hline * w for w in widths) + rule.end]

    def row(layout: DataRow, cells: list[str]) -> str:
        return (layout.begin + layout.sep.join(pad + c + pad for c in cells) + layout.end).rstrip()

    hide = set(fmt.with_header_hide or ()) if head else set()
    out = line(fmt.lineabove) if "lineabove" not in hide else []
    if head:
        aligned = [
            h.rjust(w) if numeric else h.ljust(w) for h, (_, w, numeric) in zip(head, columns)
        ]
        out.append(row(fmt.headerrow, aligned))
        out += line(fmt.linebelowheader)
    for i in range(len(rows)):
        if i and fmt.linebetweenrows is not None:
            out += line(fmt.linebetweenrows)
        out.append(row(fmt.datarow, [cells[i] for cells, _, _ in columns]))
    if "linebelow" not in hide:
        out += line(fmt.linebelow)
    return "\n".join(out)


class TerminalTablePrinter:
    """Print the rows dumped so far as one table, redrawn in place on a terminal.

    ``print_tabular(row)`` takes a row as ``[(key, value), ...]``; the first row's keys are
    the headers and later rows must have as many entries.
    """

    def __init__(self) -> None:
        self.headers: list[str] | None = None
        self.tabulars: list[list[Any]] = []

    def print_tabular(self, new_tabular: Sequence[tuple[str, Any]]) -> None:
        """Append a row and redraw the table."""
        if self.headers is None:
            self.headers = [str(k) for k, _ in new_tabular]
        elif len(self.headers) != len(new_tabular):
            raise ValueError(
                f"new_tabular: expected {len(self.headers)} entries (the first row's keys "
                f"{self.headers}), got {len(new_tabular)}"
            )
        self.tabulars.append([v for _, v in new_tabular])
        self.refresh()

    def refresh(self) -> None:
        """Clear the terminal and print the last rows that fit on it."""
        lines = shutil.get_terminal_size().lines
        rows = self.tabulars[-max(lines - 3, 1) :]
        sys.stdout.write("\x1b[2J\x1b[H")
        sys.stdout.write(tabulate(rows, self.headers or ()) + "\n")
        sys.stdout.flush()


table_printer = TerminalTablePrinter()


def csv2table(
    filename: str | os.PathLike,
    save_dir: str | os.PathLike | None = None,
    output_filename: str = "scores-table.txt",
    tablefmt: str | TableFormat = "pipe",
) -> str:
    """Write a CSV file (e.g. a progress CSV) as a text table.

    Parameters
    ----------
    filename : str or os.PathLike
        The CSV file; its first row is the header.
    save_dir : str or os.PathLike, optional
        Directory of the table; by default the CSV's.
    output_filename : str
        File name of the table.
    tablefmt : str or TableFormat
        Layout (default ``"pipe"``, a Markdown table).

    Returns
    -------
    str
        Path of the written table.
    """
    with open(filename, newline="", encoding="utf-8") as f:
        data = list(csv.reader(f))
    table = tabulate(data, headers="firstrow", tablefmt=tablefmt) if data else ""
    if save_dir is None:
        save_dir = os.path.dirname(os.path.abspath(os.fspath(filename)))
    path = os.path.join(os.fspath(save_dir), output_filename)
    with open(path, "w", encoding="utf-8") as f:
        f.write(table)
    return path
