"""example/benchmarks/bench_bullet.py: a run killed mid-way continues from its checkpoint.

A real benchmark process (machina PPO on HopperBulletEnv-v0, a tiny budget) is killed with
SIGKILL right after its second checkpoint is saved and before that checkpoint's CSV row is
written; a second process continues it. The CSV must then hold one attempt with every
evaluation exactly once (the row saved in the checkpoint included), continuing steps and
cumulative clocks. (Not compared with an uninterrupted run: pybullet's robots draw their
initial states from a RandomState that ``BulletEnv`` seeds only at its first reset, which
no sampler state holds, so the continuation is not bit for bit on these tasks.)
"""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("pybullet")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BENCH = os.path.join(REPO, "example", "benchmarks", "bench_bullet.py")
sys.path.insert(0, os.path.dirname(BENCH))
from _harness import machine, packages  # noqa: E402

# 4 iterations of 256 steps, an evaluation (and a checkpoint) after each.
ARGS = ["--algos", "ppo", "--envs", "HopperBulletEnv-v0", "--libs", "machina", "--seeds", "100",
        "--budget", "1024", "--set", "steps_per_iter=256", "num_envs=2"]  # fmt: skip


def bench(csv_path, ckpt_dir, kill_after=None):
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("BENCH_BULLET_KILL_AFTER_CKPT", None)
    if kill_after is not None:
        env["BENCH_BULLET_KILL_AFTER_CKPT"] = str(kill_after)
    cmd = [sys.executable, BENCH, *ARGS, "--csv", str(csv_path), "--ckpt_dir", str(ckpt_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode()


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_killed_run_continues_its_attempt(tmp_path):
    ckpt = tmp_path / "ckpt"
    code, out = bench(tmp_path / "run.csv", ckpt, kill_after=2)
    assert code == -signal.SIGKILL, out
    before = rows(tmp_path / "run.csv")
    assert [int(r["final"]) for r in before] == [0, 0]  # step 0 and the 1st evaluation
    (run,) = os.listdir(ckpt)  # the run's checkpoint folder
    latest = (ckpt / run / "latest").read_text()
    saved = json.loads((ckpt / run / latest / "meta.json").read_text())["extra"]
    (pending,) = saved["pending"]  # the 2nd evaluation's row, saved but not yet written
    assert pending["attempt"] == before[0]["attempt"]

    code, out = bench(tmp_path / "run.csv", ckpt)
    assert code == 0, out
    assert "resumed attempt" in out
    got = rows(tmp_path / "run.csv")
    assert len({r["attempt"] for r in got}) == 1
    assert len(got) == 5  # step 0, after each of 4 iterations; the last final
    assert got[:2] == before
    # The third written when the run was restored, from its checkpoint.
    assert {k: str(v) for k, v in pending.items()} == got[2]
    steps = [int(r["steps"]) for r in got]
    assert steps == sorted(set(steps)) and steps[-1] >= 1024
    assert [r["final"] for r in got] == ["0", "0", "0", "0", "1"]
    for key in ("wall_s", "cpu_s", "eval_s", "eval_cpu_s"):
        values = [float(r[key]) for r in got]
        assert values == sorted(values), key  # cumulative over the two processes
    assert not os.listdir(ckpt)  # a finished run drops its checkpoints
    # The machines sidecar: one row per process, at its first evaluation (the second
    # process's first is the one after the checkpoint it continued from).
    noted = rows(tmp_path / "run_machines.csv")
    assert [(r["attempt"], r["first_eval_steps"]) for r in noted] == [
        (got[0]["attempt"], got[0]["steps"]),
        (got[0]["attempt"], got[3]["steps"]),
    ]
    assert {r["machine"] for r in noted} == {machine()}
    assert {r["packages"] for r in noted} == {packages()}


def test_unknown_setting_is_refused(tmp_path):
    # a misspelt --set name would otherwise run the entry unchanged under a tuning label
    env = dict(os.environ, PYTHONPATH=REPO)
    cmd = [sys.executable, BENCH, *ARGS[:-2], "--set", "anneal_clp=True",
           "--csv", str(tmp_path / "r.csv"), "--ckpt_dir", ""]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "--set: unknown setting(s) ['anneal_clp']" in proc.stderr
    rows = []
    if os.path.exists(tmp_path / "r.csv"):
        with open(tmp_path / "r.csv") as f:
            rows = list(csv.DictReader(f))
    assert rows == []  # refused before the first evaluation


@pytest.mark.parametrize(
    "algo, overrides, message",
    [
        ("td3", {"sde_sample_freq": 8}, "not used by td3"),
        ("ppo", {"state_std": True}, "state_std is SAC's policy option"),
        ("sac", {"state_std": True, "sde_sample_freq": 8}, "two policies; give one"),
        ("sac", {"log_std_init": -2.0}, "only for its gSDE policy"),
    ],
)
def test_settings_the_run_would_not_read_are_refused(algo, overrides, message):
    import bench_bullet

    with pytest.raises(ValueError, match=message):
        bench_bullet.machina_hp(algo, "HopperBulletEnv-v0", overrides)
    if algo == "sac" and "state_std" not in overrides:  # with gSDE, both are read
        hp = bench_bullet.machina_hp(
            algo, "HopperBulletEnv-v0", {**overrides, "sde_sample_freq": 8}
        )
        assert hp["sde_sample_freq"] == 8 and hp["log_std_init"] == -2.0


def test_sidecar_written_before_a_column_was_added_is_upgraded(tmp_path):
    import bench_bullet

    old_fields = bench_bullet.MACHINE_FIELDS[:-1]  # the sidecar before "packages"
    path = str(tmp_path / "r_machines.csv")
    old = dict(lib="sb3", algo="td3", env="HopperBulletEnv-v0", seed="0", budget="100",
               attempt="a", first_eval_steps="0", machine="AMD EPYC x2")  # fmt: skip
    bench_bullet.append_row(path, old, old_fields)
    bench_bullet.append_row(path, dict(old, attempt="b", packages="numpy 2.4.6"),
                            bench_bullet.MACHINE_FIELDS)  # fmt: skip
    with open(path, newline="") as f:
        assert next(csv.reader(f)) == bench_bullet.MACHINE_FIELDS
    assert rows(path) == [dict(old, packages=""), dict(old, attempt="b", packages="numpy 2.4.6")]
    # A header that is not a prefix of the fields is someone else's file: refused, untouched.
    other = str(tmp_path / "other.csv")
    with open(other, "w", newline="") as f:
        f.write("lib,machine\nsb3,x\n")
    with pytest.raises(ValueError, match="other.csv: expected the columns"):
        bench_bullet.append_row(other, dict(old, packages=""), bench_bullet.MACHINE_FIELDS)
    with open(other, newline="") as f:
        assert f.read() == "lib,machine\nsb3,x\n"
