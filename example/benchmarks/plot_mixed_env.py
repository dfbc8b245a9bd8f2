"""Learning curve of ``example/run_mixed_env.py``: each task's return against env steps.

    python example/run_mixed_env.py --log runs/mixed_env --max_steps 600000
    python example/benchmarks/plot_mixed_env.py runs/mixed_env/progress.csv

The example trains one recurrent PPO policy on two PyBullet tasks at once and logs each
task's mean training return per iteration (``ReturnAverage_<env id>``). This draws both
against the total env steps (both tasks' steps together), the per-iteration values thin and
their moving average (``--window`` iterations) thick, into ``assets/mixed_env.png``. The
committed curve comes from ``assets/mixed_env_progress.csv`` (the run's progress.csv,
copied), so it redraws without rerunning: ``python example/benchmarks/plot_mixed_env.py``.
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np

from machina.logger.plot import read_csv_columns

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "assets")
PREFIX = "ReturnAverage_"


def task_columns(csv_path: str) -> list[str]:
    """The per-task return columns of a progress CSV, in order."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None) or []
    columns = [c for c in header if c.startswith(PREFIX)]
    if not columns:
        raise KeyError(f"{csv_path}: no {PREFIX}<task> column; is it run_mixed_env.py's?")
    return columns


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start), (n,)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot(csv_path: str, png_path: str, window: int) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = task_columns(csv_path)
    data = read_csv_columns(csv_path, ["TotalStep", *columns])
    steps = np.asarray(data["TotalStep"])
    fig = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for column, color in zip(columns, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        values = np.asarray(data[column])
        ax.plot(steps, values, color=color, alpha=0.3, linewidth=0.8)
        label = f"{column[len(PREFIX) :]} ({window}-iteration mean)"
        ax.plot(steps, moving_average(values, window), color=color, linewidth=2, label=label)
    ax.set_xlabel("env steps, both tasks")
    ax.set_ylabel("mean training return per iteration")
    ax.set_title("run_mixed_env.py: one recurrent PPO policy, two tasks")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(png_path, format="png")
    return os.path.abspath(png_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", nargs="?", default=os.path.join(ASSETS, "mixed_env_progress.csv"))
    parser.add_argument("--png", default=os.path.join(ASSETS, "mixed_env.png"))
    parser.add_argument("--window", type=int, default=10, help="iterations in the moving mean")
    args = parser.parse_args()
    if args.window < 1:
        raise SystemExit(f"--window: expected an int >= 1, given {args.window}")
    print(f"wrote {plot(args.csv, args.png, args.window)}")


if __name__ == "__main__":
    main()
