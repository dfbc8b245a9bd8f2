"""Example scripts of the off-policy algorithms run end to end on small budgets."""

import csv

import numpy as np
import pytest
from conftest import run_example


@pytest.mark.parametrize(
    "script, args",
    [
        ("run_qtopt.py", ["--lag", "200"]),
        ("run_svg.py", ["--svg", "0"]),
        ("run_svg.py", ["--svg", "1"]),
    ],
)
def test_qtopt_and_svg_examples_run(tmp_path, script, args):
    budget = ["--max_steps", "400", "--eval_interval", "200", "--eval_epis", "2"]
    run_example(script, "--log", tmp_path, *budget, *args)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and np.isfinite(float(rows[-1]["EvalReturn"]))
    assert (tmp_path / "models" / "pol_last.pt").stat().st_size > 0


def run_logged_example(tmp_path, script, args):
    out = run_example(script, "--log", tmp_path, *args).stdout
    assert (tmp_path / "progress.csv").stat().st_size > 0
    assert (tmp_path / "models" / "pol_last.pt").stat().st_size > 0
    return out


def test_run_prioritized_ddpg_example(tmp_path):
    args = ["--max_steps", "400", "--eval_interval", "200", "--eval_epis", "2", "--nstep", "3"]
    out = run_logged_example(tmp_path, "run_prioritized_ddpg.py", [*args, "--mode", "rank_based"])
    assert "eval return" in out


def test_run_r2d2_sac_example(tmp_path):
    args = ["--max_steps", "400", "--eval_interval", "200", "--eval_epis", "2"]
    small = ["--updates_per_iter", "3", "--seq_length", "8", "--burn_in_length", "2"]
    out = run_logged_example(tmp_path, "run_r2d2_sac.py", [*args, *small, "--hide_velocity"])
    assert "eval return" in out


def test_run_ppo_sac_example_runs(tmp_path):
    run_example(
        "run_ppo_sac.py",
        "--log",
        tmp_path,
        "--num_envs",
        1,
        "--max_steps",
        400,
        "--steps_per_iter",
        200,
        "--eval_interval",
        200,
        "--eval_epis",
        2,
    )
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    # both algorithms reported their losses every iteration
    for key in ("PPOPolLossAverage", "PPOVfLossAverage", "SACQfLossAverage", "SACAlpha"):
        assert all(np.isfinite(float(row[key])) for row in rows)
    assert np.isfinite(float(rows[-1]["EvalReturn"]))
    for name in ("pol", "vf", "qf1", "qf2", "log_alpha"):
        assert (tmp_path / "models" / f"{name}_last.pt").stat().st_size > 0
