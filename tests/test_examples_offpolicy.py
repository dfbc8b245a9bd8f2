"""Example scripts of the off-policy algorithms run end to end on small budgets (two at a
time: conftest's ``Prefetch``)."""

import csv

import numpy as np
import pytest
from conftest import Prefetch, example_cmd

from machina import checkpoint
from machina.traj import Traj

EVAL = ["--max_steps", "400", "--eval_interval", "200", "--eval_epis", "2"]
#: test id -> (script, arguments), in the order of the tests below
RUNS = {
    "qtopt": ("run_qtopt.py", [*EVAL, "--lag", "200"]),
    "svg0": ("run_svg.py", [*EVAL, "--svg", "0"]),
    "svg1": ("run_svg.py", [*EVAL, "--svg", "1"]),
    "prioritized_ddpg": (
        "run_prioritized_ddpg.py",
        [*EVAL, "--nstep", "3", "--mode", "rank_based"],
    ),
    "r2d2_sac": (
        "run_r2d2_sac.py",
        [
            *EVAL,
            "--updates_per_iter",
            "3",
            "--seq_length",
            "8",
            "--burn_in_length",
            "2",
            "--hide_velocity",
        ],
    ),  # fmt: skip
    # warm-up actions from a random policy, on Pendulum (bounds +-2): 200 of 400 steps
    "sac_warm": ("run_sac.py", [*EVAL, "--random_steps", "200"]),
    "td3_warm": ("run_td3.py", [*EVAL, "--random_steps", "200"]),
    "ppo_sac": (
        "run_ppo_sac.py",
        [
            "--num_envs",
            "1",
            "--max_steps",
            "400",
            "--steps_per_iter",
            "200",
            "--eval_interval",
            "200",
            "--eval_epis",
            "2",
        ],
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Key -> (its log folder, a call that waits for its run and returns its stdout)."""
    root = tmp_path_factory.mktemp("offpolicy_runs")
    prefetch = Prefetch(
        {
            key: example_cmd(script, "--log", root / key, *args)
            for key, (script, args) in RUNS.items()
        }
    )
    yield lambda key: (root / key, prefetch.result(key).stdout)
    prefetch.close()


def logged(log):
    assert (log / "progress.csv").stat().st_size > 0
    assert (log / "models" / "pol_last.pt").stat().st_size > 0
    with open(log / "progress.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("key", ["qtopt", "svg0", "svg1"])
def test_qtopt_and_svg_examples_run(runs, key):
    rows = logged(runs(key)[0])
    assert len(rows) == 2 and np.isfinite(float(rows[-1]["EvalReturn"]))


@pytest.mark.parametrize("key", ["prioritized_ddpg", "r2d2_sac"])
def test_prioritized_ddpg_and_r2d2_sac_examples_run(runs, key):
    log, out = runs(key)
    logged(log)
    assert "eval return" in out


def test_run_ppo_sac_example_runs(runs):
    log, _ = runs("ppo_sac")
    rows = logged(log)
    assert len(rows) == 2
    # both algorithms reported their losses every iteration
    for key in ("PPOPolLossAverage", "PPOVfLossAverage", "SACQfLossAverage", "SACAlpha"):
        assert all(np.isfinite(float(row[key])) for row in rows)
    assert np.isfinite(float(rows[-1]["EvalReturn"]))
    for name in ("pol", "vf", "qf1", "qf2", "log_alpha"):
        assert (log / "models" / f"{name}_last.pt").stat().st_size > 0


@pytest.mark.parametrize("key", ["sac_warm", "td3_warm"])
def test_warm_up_actions_are_recorded_as_the_policy_records_its_own(runs, key):
    """The replay holds one action space: the policy's [-1, 1] (its actions scaled to the
    bounds), the random warm-up's included (they were in Pendulum's units, +-2)."""
    log, _ = runs(key)
    memory = Traj.load(checkpoint.latest_checkpoint(log) / "off_traj.npz")
    acs = memory.data_map["acs"].numpy()
    assert len(acs) == 400 and np.abs(acs).max() <= 1.0
    assert np.abs(acs[:200]).max() > 0.9  # the uniform warm-up reaches the bounds
