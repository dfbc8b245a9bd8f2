"""example/run_mpc.py runs end to end with worker processes."""

from conftest import run_example


def test_example_runs_with_worker_processes(tmp_path):
    run_example(
        "run_mpc.py",
        *("--log", tmp_path, "--num_random_rollouts", 4, "--max_epis", 4),
        *("--max_epis_per_iter", 2, "--n_samples", 50, "--horizon_of_samples", 5),
        *("--epoch_per_iter", 50, "--num_parallel", 2, "--num_envs", 1),
    )
    assert (tmp_path / "progress.csv").stat().st_size > 0
    assert (tmp_path / "models" / "dm_last.pt").stat().st_size > 0
