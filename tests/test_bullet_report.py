"""example/benchmarks/bullet_report.py: which attempt of a run counts, and the table's numbers."""

import csv
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "example", "benchmarks"))
import bullet_report  # noqa: E402

FIELDS = [
    "lib", "algo", "env", "seed", "budget", "attempt", "steps", "wall_s", "cpu_s", "eval_s",
    "eval_cpu_s", "eval_return", "eval_std", "final", "load1",
]  # fmt: skip


def write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for lib, seed, attempt, steps, wall, cpu, ret, final in rows:
            writer.writerow(dict(lib=lib, algo="ppo", env="HopperBulletEnv-v0", seed=seed,
                                 budget=100, attempt=attempt, steps=steps, wall_s=wall,
                                 cpu_s=cpu, eval_s=0, eval_cpu_s=0, eval_return=ret,
                                 eval_std=0, final=final, load1=0))  # fmt: skip


def write_machines(path, last_columns, rows):
    """A machines sidecar of PPO Hopper runs (budget 100): each row ``(lib, seed, attempt,
    first_eval_steps, *last_columns' values)``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lib", "algo", "env", "seed", "budget", "attempt", "first_eval_steps",
                         *last_columns])  # fmt: skip
        for lib, seed, attempt, steps, *values in rows:
            writer.writerow([lib, "ppo", "HopperBulletEnv-v0", seed, 100, attempt, steps, *values])


def test_finished_attempt_wins_over_a_later_partial_one_and_table_medians(tmp_path):
    path = tmp_path / "r.csv"
    write(path, [
        ("machina", 0, "a1", 0, 1.0, 1.0, 10.0, 0),
        ("machina", 0, "a1", 100, 10.0, 5.0, 30.0, 1),
        ("machina", 0, "a2", 0, 1.0, 1.0, 99.0, 0),   # a rerun that never finished
        ("machina", 1, "a1", 120, 20.0, 6.0, 50.0, 1),
        ("sb3", 0, "a1", 100, 20.0, 10.0, 20.0, 1),
        ("sb3", 1, "b1", 50, 5.0, 2.0, 7.0, 0),        # partial
        ("sb3", 1, "b2", 60, 6.0, 3.0, 8.0, 0),        # the furthest (and latest) is shown
        ("sb3", 2, "c1", 400, 5.0, 2.0, 7.0, 0),       # partial, further than
        ("sb3", 2, "c2", 100, 6.0, 3.0, 8.0, 0),       # a later restart: c1 is shown
    ])  # fmt: skip
    runs = bullet_report.load(str(path))
    assert [r["attempt"] for r in runs[("machina", "ppo", "HopperBulletEnv-v0", 0, 100)]] == [
        "a1",
        "a1",
    ]
    assert runs[("sb3", "ppo", "HopperBulletEnv-v0", 1, 100)][-1]["attempt"] == "b2"
    assert runs[("sb3", "ppo", "HopperBulletEnv-v0", 2, 100)][-1]["attempt"] == "c1"
    table = bullet_report.table(runs)
    machina = next(line for line in table.splitlines() if "| machina |" in line)
    sb3 = next(line for line in table.splitlines() if "| stable-baselines3 |" in line)
    # machina: finals 30, 50 -> median 40; wall 10, 20 -> 15; CPU 5, 6 -> 5.5; vs SB3 20, 10
    assert "| 2 (0) | 40.00 [30.00, 50.00] | 15.00 | 5.50 |" in machina
    assert machina.endswith("| 0.75x | 0.55x |")
    assert "| 1 (2) | 20.00 [20.00, 20.00] |" in sb3 and "8.00 @0k, 7.00 @0k" in sb3
    assert bullet_report.plots(runs, str(tmp_path)) == [str(tmp_path / "bullet_ppo_hopper.png")]


def test_machines_and_versions_of_the_runs_shown_from_the_sidecar(tmp_path):
    path = tmp_path / "r.csv"
    write(path, [
        ("machina", 0, "a1", 100, 10.0, 5.0, 30.0, 1),
        ("machina", 1, "a1", 100, 10.0, 5.0, 30.0, 1),
        ("machina", 2, "a1", 100, 10.0, 5.0, 30.0, 1),
        ("sb3", 0, "s1", 100, 20.0, 10.0, 20.0, 1),
        ("sb3", 0, "s2", 100, 20.0, 10.0, 20.0, 1),   # the later finished attempt counts
    ])  # fmt: skip
    # Versions are empty in the rows written before the sidecar recorded them.
    new, old = "torch 2.13.0+cpu, numpy 2.4.6, machina abc", "torch 2.13.0+cpu, numpy 2.3.0"
    amd, intel = "AMD EPYC x2, Python 3.11.7, torch 2.13.0+cpu", "Intel Xeon x2, Python 3.11.7"
    write_machines(tmp_path / "r_machines.csv", ["machine", "packages"], [
        ("machina", 0, "a1", 0, amd, ""),
        ("machina", 1, "a1", 0, amd, new),
        ("machina", 1, "a1", 50, intel, old),
        ("sb3", 0, "s1", 0, intel, ""),
        ("sb3", 0, "s2", 0, amd, new),
    ])  # fmt: skip
    runs = bullet_report.load(str(path))
    recorded = bullet_report.load_machines(str(path))
    assert recorded[("machina", "ppo", "HopperBulletEnv-v0", 1, 100, "a1")] == {
        "AMD EPYC x2",
        "Intel Xeon x2",
    }
    # Seed 1 was resumed on another machine; seed 2 has no row in the sidecar.
    assert bullet_report.machines(runs, recorded) == (
        "- PPO HopperBulletEnv-v0: machina: AMD EPYC x2 (1); AMD EPYC x2 + Intel Xeon x2 (1);"
        " not recorded (1), stable-baselines3: AMD EPYC x2 (1)"
    )
    versions = bullet_report.load_packages(str(path))
    assert set(versions) == {
        ("machina", "ppo", "HopperBulletEnv-v0", 1, 100, "a1"),
        ("sb3", "ppo", "HopperBulletEnv-v0", 0, 100, "s2"),
    }
    assert bullet_report.machines(runs, versions) == (
        f"- PPO HopperBulletEnv-v0: machina: not recorded (2); {old} + {new} (1),"
        f" stable-baselines3: {new} (1)"
    )
    assert bullet_report.load_machines(str(tmp_path / "none.csv")) == {}
    assert bullet_report.load_packages(str(tmp_path / "none.csv")) == {}


def test_same_machine_check_compares_the_segment_per_env_step(tmp_path):
    # Reported run (budget 100) and a short rerun (budget 30) of each library; the segment
    # is 10-20 steps: machina's evaluations land past the marks (12, 21), SB3's on them.
    path = tmp_path / "r.csv"
    write(path, [
        ("machina", 0, "a", 12, 0, 10.0, 0, 0),
        ("machina", 0, "a", 21, 0, 28.0, 0, 0),      # reported: 18 CPU s over 9 steps
        ("machina", 0, "a", 100, 0, 99.0, 0, 1),
        ("sb3", 0, "b", 10, 0, 10.0, 0, 0),
        ("sb3", 0, "b", 20, 0, 40.0, 0, 0),          # reported: 30 over 10
        ("sb3", 0, "b", 100, 0, 99.0, 0, 1),
    ])  # fmt: skip
    check = tmp_path / "r_check.csv"
    assert bullet_report.check_path(str(path)) == str(check)
    write(check, [
        ("machina", 0, "c", 12, 0, 10.0, 0, 0),
        ("machina", 0, "c", 21, 0, 37.0, 0, 1),      # rerun: 27 over 9
        ("sb3", 0, "d", 10, 0, 10.0, 0, 0),
        ("sb3", 0, "d", 20, 0, 40.0, 0, 1),          # rerun: 30 over 10
    ])  # fmt: skip
    runs, rerun = bullet_report.load(str(path)), bullet_report.load(str(check))
    key = ("machina", "ppo", "HopperBulletEnv-v0", 0, 100)
    assert bullet_report.segment_cpu(runs[key], 10, 20, slack=3) == 1e3 * 18 / 9
    # no evaluation within the slack past a mark: NaN
    assert math.isnan(bullet_report.segment_cpu(runs[key], 10, 20, slack=1))
    table = bullet_report.machine_check(runs, rerun, 10, 20, slack=3)
    row = table.splitlines()[-1]
    # machina 3000 vs 2000 ms/step, SB3 3000 vs 3000: ratios 1.00x (rerun), 0.67x (reported)
    assert row == ("| PPO | HopperBulletEnv-v0 | 0 | 3,000, 2,000 | 3,000, 3,000 | 1.00x, 0.67x |")


def test_the_script_writes_plots_beside_a_csv_other_than_the_committed_one(tmp_path):
    """``bullet_report.py other.csv`` (its docstring's usage) plots beside that CSV: the
    committed assets/ plots are never overwritten by a smoke run's (they were)."""
    import subprocess

    path = tmp_path / "smoke.csv"
    write(path, [("machina", 0, "a1", 0, 1.0, 1.0, 10.0, 0),
                 ("machina", 0, "a1", 1500, 9.0, 9.0, 20.0, 1)])  # fmt: skip
    committed = os.path.join(os.path.dirname(HERE), "assets", "bullet_ppo_hopper.png")
    before = os.stat(committed).st_mtime_ns
    script = os.path.join(os.path.dirname(HERE), "example", "benchmarks", "bullet_report.py")
    out = subprocess.run([sys.executable, script, str(path)], capture_output=True, text=True,
                         timeout=300, check=True).stdout  # fmt: skip
    assert f"wrote {tmp_path / 'bullet_ppo_hopper.png'}" in out
    assert os.stat(committed).st_mtime_ns == before
    assert bullet_report.default_out_dir(bullet_report.COMMITTED_CSV).endswith("assets")
    help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True,
                               text=True, timeout=300, check=True).stdout  # fmt: skip
    assert "--out_dir" in help_text
