"""Imitation example scripts run end to end on small budgets (the GAIL / AIRL / behaviour-cloning
examples stay in test_imitation.py, beside the expert fixture they share)."""

import subprocess

import torch
from conftest import check_examples_resume_after_crash, example_cmd, run_example, run_examples


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


def test_teacher_distill_builds_the_teacher_of_its_run(tmp_path):
    """--teacher_path in a run_ppo.py run folder: the teacher is built with that run's
    settings (--h_size 16 --activation tanh failed on the state dict's shapes), and a teacher
    trained on normalised observations is refused (it was fed raw ones without a word)."""
    small = ["--max_steps", 256, "--steps_per_iter", 256, "--epoch_per_iter", 1, "--eval_epis", 1]
    tanh, normalised = tmp_path / "tanh", tmp_path / "normalised"
    run_examples(
        [
            ("run_ppo.py", [*small, "--log", tanh, "--h_size", 16, "--activation", "tanh"]),
            ("run_ppo.py", [*small, "--log", normalised, "--normalize_ob"]),
        ]
    )
    log = tmp_path / "distill"
    out = run_example(
        "run_teacher_distill.py",
        *("--teacher_path", tanh / "models" / "pol_last.pt", "--log", log),
        *("--max_steps", 200, "--steps_per_iter", 200, "--eval_epis", 1, "--num_envs", 2),
    ).stdout
    assert "teacher deterministic return" in out
    teacher = torch.load(tanh / "models" / "pol_last.pt")
    saved = torch.load(sorted(log.glob("ckpt-*"))[-1] / "state.pt", weights_only=True)["teacher"]
    assert all(torch.equal(saved[k], v) for k, v in teacher.items())
    cmd = example_cmd(
        "run_teacher_distill.py", "--teacher_path", normalised / "models" / "pol_last.pt",
        "--log", tmp_path / "refused",
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "used --normalize_ob; this script gives the teacher the student's raw" in proc.stderr
    assert not (tmp_path / "refused").exists()
