"""Imitation example scripts run end to end on small budgets (the GAIL / AIRL / behaviour-cloning
examples stay in test_imitation.py, beside the expert fixture they share)."""

from conftest import run_example


def test_example_runs(tmp_path):
    run_example(
        "run_teacher_distill.py",
        *("--log", tmp_path, "--teacher_steps", 1000, "--max_steps", 1000),
        *("--steps_per_iter", 500, "--eval_epis", 2),
        *("--batch_size", 100_000),  # capped at the steps of each iteration
    )
    assert (tmp_path / "progress.csv").stat().st_size > 0
    assert (tmp_path / "models" / "pol_last.pt").stat().st_size > 0
