"""example/benchmarks/plot_mixed_env.py: the per-task curves of run_mixed_env.py's progress."""

import csv
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "example", "benchmarks"))
import plot_mixed_env  # noqa: E402


def test_moving_average_equals_a_loop():
    values = np.random.default_rng(0).normal(size=23)
    for window in (1, 4, 30):
        expected = [values[max(0, i + 1 - window) : i + 1].mean() for i in range(len(values))]
        # cumulative sums against per-window means of N(0, 1) values: float64 rounding,
        # a few ulps of sums below 30
        np.testing.assert_allclose(
            plot_mixed_env.moving_average(values, window), expected, rtol=0, atol=1e-12
        )


def test_plots_every_task_column(tmp_path):
    path = tmp_path / "progress.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ReturnAverage_A-v0", "RewardAverage", "ReturnAverage_B-v0", "TotalStep"])
        for i in range(12):
            writer.writerow([i, i, -i, 100 * (i + 1)])
    assert plot_mixed_env.task_columns(str(path)) == ["ReturnAverage_A-v0", "ReturnAverage_B-v0"]
    png = plot_mixed_env.plot(str(path), str(tmp_path / "curve.png"), window=3)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    other = tmp_path / "other.csv"
    other.write_text("RewardAverage,TotalStep\n1,2\n")
    with pytest.raises(KeyError, match="no ReturnAverage_<task> column"):
        plot_mixed_env.task_columns(str(other))
