"""Learning-curve plots drawn from a progress CSV, headless (matplotlib's Agg canvas)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["plot_learning_curve", "read_csv_columns", "plot_scores", "async_plot_scores"]


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
            cells = [row.get(c) or "" for c in columns]
            if any(cell == "" for cell in cells):
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


def plot_scores(
    filename: str | os.PathLike,
    key: str,
    x_key: str,
    scores: Mapping[str, Sequence[float]] | Any = None,
    label: str | None = None,
    title: str | None = None,
    color: str | None = None,
    result_directory: str | os.PathLike | None = None,
    plot_legend: bool = True,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    x_label: str = "steps",
    y_label: str | None = None,
) -> str:
    """Plot ``{key}Average`` with a band of ``{key}Std`` against ``x_key`` (machina 0.x).

    Parameters
    ----------
    filename : str or os.PathLike
        The progress CSV (read unless ``scores`` is given).
    key : str
        Column prefix, e.g. ``"Reward"`` or ``"PolLoss"``.
    x_key : str
        Column of the horizontal axis, e.g. ``"TotalStep"``.
    scores : mapping of column name to values, optional
        The columns already read (a dict or a pandas DataFrame).
    label : str, optional
        Legend entry and file name (default ``key``).
    title, color, x_label, y_label : str, optional
        Figure title, line colour, axis labels.
    result_directory : str or os.PathLike, optional
        Directory of the figure; by default the CSV's.
    plot_legend : bool
        Draw the legend.
    xlim, ylim : (float, float), optional
        Axis limits.

    Returns
    -------
    str
        Path of the figure, ``<label>.png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    label = key if label is None else label
    mean_col, std_col = key + "Average", key + "Std"
    if scores is None:
        scores = read_csv_columns(filename, [x_key, mean_col, std_col])
    xs = [float(v) for v in scores[x_key]]
    mean = [float(v) for v in scores[mean_col]]
    std = [float(v) for v in scores[std_col]]
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    (line,) = ax.plot(xs, mean, label=label, color=color)
    lower = [m - d for m, d in zip(mean, std)]
    upper = [m + d for m, d in zip(mean, std)]
    ax.fill_between(xs, lower, upper, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(x_label)
    if y_label is not None:
        ax.set_ylabel(y_label)
    if plot_legend:
        ax.legend(loc="best")
    if title is not None:
        ax.set_title(title)
    if xlim is not None:
        ax.set_xlim(xlim)
    if ylim is not None:
        ax.set_ylim(ylim)
    if result_directory is None:
        result_directory = os.path.dirname(os.path.abspath(os.fspath(filename)))
    os.makedirs(result_directory, exist_ok=True)
    path = os.path.join(os.fspath(result_directory), f"{label}.png")
    fig.savefig(path)
    return path


def async_plot_scores(
    filename: str | os.PathLike,
    title: str | None,
    result_dict: Mapping[str, Any],
    rewards: Sequence[float] | Any,
    x_key: str = "TotalStep",
    x_label: str = "steps",
) -> list[str]:
    """Draw :func:`plot_scores` for every list-valued entry of ``result_dict`` and, when
    ``rewards`` is given, for ``Reward`` (machina 0.x ran this in a worker process; it runs
    here, in the caller's).

    Returns
    -------
    list of str
        Paths of the figures.
    """
    keys = [k for k, v in result_dict.items() if hasattr(v, "__len__") and len(v) >= 1]
    if rewards is not None:
        keys.append("Reward")
    return [plot_scores(filename, k, x_key, title=title, x_label=x_label) for k in keys]
