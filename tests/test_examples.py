"""Examples run end to end: the notebook top to bottom, scripts on tiny budgets."""

import csv
import math
import os
import subprocess

import nbformat
import pytest
from conftest import EXAMPLE_DIR, Prefetch, example_cmd
from nbclient import NotebookClient


def test_quickstart_notebook_executes(tmp_path):
    path = os.path.join(EXAMPLE_DIR, "quickstart", "ppo_acrobot.ipynb")
    nb = nbformat.read(path, as_version=4)
    # Top to bottom as written, on a smaller budget: the suite checks it runs, not how well.
    first = nb.cells[next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")]
    assert "TOTAL_STEPS = 60_000" in first.source
    # 2,000 steps: one iteration of the loop (2,048 steps each), so every cell still runs
    first.source = first.source.replace("TOTAL_STEPS = 60_000", "TOTAL_STEPS = 2_000")
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "deterministic evaluation:" in outputs


PPO_SMALL = ["--epoch_per_iter", "2", "--eval_epis", "2"]
SHORT_EVAL = ["--eval_interval", "200", "--eval_epis", "2"]

#: test id -> (script, arguments)
SCRIPT_RUNS = {
    # two iterations of 512 steps, two epochs, short evaluations: the loop runs twice
    "ppo-kl": ("run_ppo.py", ["--ppo_type", "kl", "--max_steps", "1024", *PPO_SMALL]),
    "ppo-rnn-workers": (
        "run_ppo.py",
        ["--rnn", "--max_steps", "1024", "--num_parallel", "2", "--num_envs", "2", *PPO_SMALL],
    ),
    "ppo-c2d": (
        "run_ppo.py",
        ["--env_name", "Pendulum-v1", "--c2d", "--max_steps", "1024", *PPO_SMALL],
    ),
    # iterations of ~256 steps, evaluations only past 1000 and 2000 steps and at the end
    "ppo-eval-interval": (
        "run_ppo.py",
        ["--max_steps", "2048", "--steps_per_iter", "256", "--eval_interval", "1000", *PPO_SMALL],
    ),
    "trpo": ("run_trpo.py", ["--max_steps", "2000", "--steps_per_iter", "1000"]),
    "vpg": ("run_vpg.py", ["--max_steps", "2000"]),
    "sac": ("run_sac.py", ["--max_steps", "400", *SHORT_EVAL]),
    "ddpg": ("run_ddpg.py", ["--max_steps", "400", *SHORT_EVAL]),
    "td3": ("run_td3.py", ["--max_steps", "400", *SHORT_EVAL]),
    "dqn": ("run_dqn.py", ["--max_steps", "600", *SHORT_EVAL]),
}


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    """The runs of SCRIPT_RUNS, two at a time, each logging to ``root / test id``."""
    root = tmp_path_factory.mktemp("example_runs")
    cmds = {
        key: example_cmd(script, "--log", root / key, *args)
        for key, (script, args) in SCRIPT_RUNS.items()
    }
    prefetch = Prefetch(cmds)
    yield prefetch, root
    prefetch.close()


@pytest.mark.parametrize("key", SCRIPT_RUNS)
def test_example_script_runs(script_runs, key):
    prefetch, root = script_runs
    prefetch.result(key)
    assert (root / key / "progress.csv").stat().st_size > 0
    assert (root / key / "models" / "pol_last.pt").stat().st_size > 0


@pytest.mark.parametrize("key", ["sac", "dqn"])
def test_policy_readers_refuse_the_runs_of_off_policy_scripts(script_runs, key, tmp_path):
    """make_pol does not rebuild their policies: SAC's TanhGaussianPol loaded into a
    GaussianPol without a word (other actions), DQN's Q net failed as a raw state dict."""
    prefetch, root = script_runs
    prefetch.result(key)
    cmd = example_cmd(
        "make_expert_epis.py", "--log", root / key, "--num_epis", 1, "--epis_path",
        tmp_path / "epis.npz",
    )  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    script = SCRIPT_RUNS[key][0]
    assert f"is a run of {script}, whose policy make_pol does not rebuild" in result.stderr
    assert not (tmp_path / "epis.npz").exists()


def test_ppo_evaluates_every_eval_interval_steps(script_runs):
    """An evaluation when the step count passes a multiple of --eval_interval, and at the
    end; the rows between have an empty EvalReturn cell."""
    prefetch, root = script_runs
    prefetch.result("ppo-eval-interval")
    with open(root / "ppo-eval-interval" / "progress.csv", newline="") as f:
        rows = [(int(r["TotalStep"]), r["EvalReturn"]) for r in csv.DictReader(f)]
    assert len(rows) >= 6 and rows[-1][0] >= 2048
    prev_step = 0
    for i, (step, ret) in enumerate(rows):
        evaluated = step // 1000 > prev_step // 1000 or i == len(rows) - 1
        if evaluated:
            assert math.isfinite(float(ret)), (step, ret)
        else:
            assert ret == "", (step, ret)
        prev_step = step
