"""example/run_diayn.py runs end to end on a small budget."""

from conftest import run_example


# ----------------------------------------------------------------------- example
def test_run_diayn_example_runs(tmp_path):
    out = run_example(
        "run_diayn.py",
        *("--log", tmp_path, "--max_steps", 200, "--eval_interval", 200),
        *("--eval_epis", 2, "--max_episode_steps", 100),
    )
    assert "discriminator accuracy on fresh episodes" in out.stdout
    header = (tmp_path / "progress.csv").read_text().splitlines()[0]
    assert "DiaynRew" in header and "DiscrimLossAverage" in header and "EvalDiscrimAcc" in header
    for name in ("pol", "qf1", "qf2", "discrim"):
        assert (tmp_path / "models" / f"{name}_last.pt").stat().st_size > 0
