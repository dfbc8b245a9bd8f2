"""Learning-curve plots drawn from a progress CSV, headless (matplotlib's Agg canvas)."""

from __future__ import annotations

import csv
import math
import os

__all__ = ["plot_learning_curve", "read_csv_columns"]


def read_csv_columns(csv_path: str | os.PathLike, columns: list[str]) -> dict[str, list[float]]:
    """Read numeric columns of a CSV file, keeping only rows where all of them are filled.

    Parameters
    ----------
    csv_path : str or os.PathLike
        A CSV file with a header row, such as the one ``Logger.add_tabular_output`` writes.
    columns : list of str
        Names of the columns to read.

    Returns
    -------
    dict of str to list of float
        For each name, its values (all lists have the same length). Rows with an empty cell
        in any requested column (e.g. rows written before that column existed) are skipped.

    Raises
    ------
    KeyError
        If a column is not in the header; the message lists the columns present.
    """
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise KeyError(
                f"column(s) {missing} not found in {os.fspath(csv_path)!r}; "
                f"its columns are {header}"
            )
        out: dict[str, list[float]] = {c: [] for c in columns}
        for row in reader:
            cells = [row.get(c) for c in columns]
            if any(cell in (None, "") for cell in cells):
                continue
            for c, cell in zip(columns, cells):
                out[c].append(float(cell))
    return out


def plot_learning_curve(
    csv_path: str | os.PathLike,
    png_path: str | os.PathLike,
    x: str = "TotalStep",
    y: str = "RewardAverage",
    title: str | None = None,
) -> str:
    """Draw column ``y`` against column ``x`` of a progress CSV and save it as a PNG.

    If ``y`` ends with ``Average`` and the matching ``Std`` column exists (as
    ``record_results`` writes for rewards), a band of one standard deviation is shaded
    around the curve.

    Parameters
    ----------
    csv_path : str or os.PathLike
        The progress CSV.
    png_path : str or os.PathLike
        Where to save the figure; parent directories are created. Overwritten if present.
    x, y : str
        Column names for the horizontal and vertical axes.
    title : str, optional
        Figure title.

    Returns
    -------
    str
        Absolute path of the saved PNG.

    Raises
    ------
    KeyError
        If ``x`` or ``y`` is not a column of the CSV.
    """
    # The object-oriented API with an explicit Agg canvas touches no pyplot global state,
    # needs no display, and leaves the user's chosen backend (e.g. in a notebook) alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    std_col = y[: -len("Average")] + "Std" if y.endswith("Average") else None
    columns = [x, y]
    with open(csv_path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None) or []
    if std_col is not None and std_col in header:
        columns.append(std_col)
    else:
        std_col = None
    data = read_csv_columns(csv_path, columns)

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs, ys = data[x], data[y]
    ax.plot(xs, ys, color="tab:blue", marker="." if len(xs) < 50 else None, label=y)
    if std_col is not None:
        lower = [m - s for m, s in zip(ys, data[std_col])]
        upper = [m + s for m, s in zip(ys, data[std_col])]
        ax.fill_between(xs, lower, upper, color="tab:blue", alpha=0.2, label=f"± {std_col}")
        ax.legend(loc="best")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if max((abs(v) for v in xs if math.isfinite(v)), default=0.0) >= 1e4:
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    fig.tight_layout()

    png_path = os.path.abspath(os.fspath(png_path))
    parent = os.path.dirname(png_path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    # Saved beside and renamed, so a viewer refreshing the file never sees half a PNG.
    tmp_path = png_path + ".tmp"
    fig.savefig(tmp_path, format="png")
    os.replace(tmp_path, png_path)
    return png_path
