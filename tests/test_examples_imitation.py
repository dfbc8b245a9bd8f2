"""Imitation example scripts run end to end on small budgets (the GAIL / AIRL / behaviour-cloning
examples stay in test_imitation.py, beside the expert fixture they share)."""

from conftest import check_examples_resume_after_crash, run_example


def test_example_runs(tmp_path):
    run_example(
        "run_teacher_distill.py",
        *("--log", tmp_path, "--teacher_steps", 1000, "--max_steps", 1000),
        *("--steps_per_iter", 500, "--eval_epis", 2),
        *("--batch_size", 100_000),  # capped at the steps of each iteration
    )
    assert (tmp_path / "progress.csv").stat().st_size > 0
    assert (tmp_path / "models" / "pol_last.pt").stat().st_size > 0


def test_teacher_distill_resumes_bit_for_bit(tmp_path):
    """A run killed after its first checkpoint resumes without training the teacher again and
    ends as the uninterrupted run (student, teacher, the teacher's return)."""
    # (never solved: a student solving at its first iteration would leave one checkpoint)
    args = ["--teacher_steps", 1000, "--max_steps", 1000, "--steps_per_iter", 500,
            "--eval_epis", 1, "--num_envs", 2, "--solve_fraction", 10]  # fmt: skip
    ((state, _),) = check_examples_resume_after_crash([("run_teacher_distill.py", args)], tmp_path)
    assert {"student", "teacher", "teacher_return"} <= set(state)
