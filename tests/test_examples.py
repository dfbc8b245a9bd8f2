"""Examples run end to end: the notebook top to bottom, scripts on tiny budgets."""

import os

import nbformat
import pytest
from conftest import EXAMPLE_DIR, run_example
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


@pytest.mark.parametrize(
    "script, args",
    [
        # two iterations of 512 steps, two epochs, short evaluations: the loop runs twice
        ("run_ppo.py", ["--ppo_type", "kl", "--max_steps", "1024", *PPO_SMALL]),
        (
            "run_ppo.py",
            ["--rnn", "--max_steps", "1024", "--num_parallel", "2", "--num_envs", "2", *PPO_SMALL],
        ),
        ("run_ppo.py", ["--env_name", "Pendulum-v1", "--c2d", "--max_steps", "1024", *PPO_SMALL]),
        ("run_trpo.py", ["--max_steps", "2000", "--steps_per_iter", "1000"]),
        ("run_vpg.py", ["--max_steps", "2000"]),
        ("run_sac.py", ["--max_steps", "400", "--eval_interval", "200", "--eval_epis", "2"]),
        ("run_ddpg.py", ["--max_steps", "400", "--eval_interval", "200", "--eval_epis", "2"]),
        ("run_td3.py", ["--max_steps", "400", "--eval_interval", "200", "--eval_epis", "2"]),
        ("run_dqn.py", ["--max_steps", "600", "--eval_interval", "200", "--eval_epis", "2"]),
    ],
)
def test_example_script_runs(tmp_path, script, args):
    run_example(script, "--log", tmp_path, *args)
    assert (tmp_path / "progress.csv").stat().st_size > 0
    assert (tmp_path / "models" / "pol_last.pt").stat().st_size > 0
