"""example/hyperparams.py: the per-task table of the examples, and flags overriding it."""

import argparse
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example")
sys.path.insert(0, EXAMPLES)
import hyperparams  # noqa: E402


def make_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--env_name", default="CartPole-v1")
    parser.add_argument("--pol_lr", type=float, default=3e-3)
    parser.add_argument("--steps_per_iter", type=int, default=512)
    parser.add_argument("--normalize_ob", action=argparse.BooleanOptionalAction, default=False)
    return parser


@pytest.fixture
def table(monkeypatch):
    entry = {"pol_lr": 1e-4, "steps_per_iter": 2048, "normalize_ob": True}
    monkeypatch.setitem(hyperparams.TABLE, "ppo", {"HopperBulletEnv-v0": entry})
    return entry


def test_entry_replaces_the_defaults_and_is_printed(table, capsys):
    args = hyperparams.parse_args(make_parser(), "ppo", ["--env_name", "HopperBulletEnv-v0"])
    assert (args.pol_lr, args.steps_per_iter, args.normalize_ob) == (1e-4, 2048, True)
    assert args.hyperparams == "ppo/HopperBulletEnv-v0"
    out = capsys.readouterr().out
    assert "entry ppo/HopperBulletEnv-v0" in out and "overridden" not in out


def test_every_flag_overrides_the_entry_even_with_the_entrys_value(table, capsys):
    argv = ["--env_name", "HopperBulletEnv-v0", "--pol_lr=1e-3", "--steps_per_iter", "2048"]
    argv += ["--no-normalize_ob"]
    args = hyperparams.parse_args(make_parser(), "ppo", argv)
    assert (args.pol_lr, args.steps_per_iter, args.normalize_ob) == (1e-3, 2048, False)
    out = capsys.readouterr().out
    assert "overridden by flags: pol_lr=0.001, steps_per_iter=2048, normalize_ob=False" in out


def test_an_abbreviated_flag_is_reported_as_overriding(table, capsys):
    """argparse takes a prefix of a flag (``--steps`` for ``--steps_per_iter``): it overrides
    the entry, and the printout says so."""
    argv = ["--env_name", "HopperBulletEnv-v0", "--steps", "64"]
    args = hyperparams.parse_args(make_parser(), "ppo", argv)
    assert args.steps_per_iter == 64 and args.pol_lr == 1e-4
    assert "overridden by flags: steps_per_iter=64" in capsys.readouterr().out


def test_task_without_entry_keeps_the_scripts_defaults(table, capsys):
    parser = make_parser()
    args = hyperparams.parse_args(parser, "ppo", [])
    assert (args.pol_lr, args.steps_per_iter, args.hyperparams) == (3e-3, 512, "defaults")
    assert "no entry for ppo/CartPole-v1" in capsys.readouterr().out
    # the parser's own defaults are restored after a lookup that used an entry
    hyperparams.parse_args(parser, "ppo", ["--env_name", "HopperBulletEnv-v0"])
    assert parser.get_default("pol_lr") == 3e-3


def test_bad_entry_and_algo_are_named(monkeypatch):
    monkeypatch.setitem(hyperparams.TABLE, "ppo", {"HopperBulletEnv-v0": {"polr": 1.0}})
    with pytest.raises(ValueError, match=r"unknown \['polr'\]"):
        hyperparams.parse_args(make_parser(), "ppo", ["--env_name", "HopperBulletEnv-v0"])
    with pytest.raises(ValueError, match="algo: expected one of"):
        hyperparams.lookup("a2c", "HopperBulletEnv-v0")


@pytest.mark.parametrize(
    "algo, script", [("ppo", "run_ppo.py"), ("sac", "run_sac.py"), ("td3", "run_td3.py")]
)
def test_every_table_key_is_a_flag_of_its_example(algo, script):
    out = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    for env_id, entry in hyperparams.TABLE[algo].items():
        for name in entry:
            assert f"--{name}" in out, f"{algo}/{env_id}: {name} is not a flag of {script}"


def test_run_ppo_log_std_init_and_linear_annealing(tmp_path):
    """run_ppo.py's --log_std_init sets the policy's initial log-std; --anneal_lr decays
    both learning rates linearly over --max_steps (read back from the run's checkpoint)."""
    import torch

    from machina import checkpoint

    log = tmp_path / "run"
    # Pendulum's episodes have 200 steps: 2 envs x 1 episode = 400 steps per iteration.
    args = ["--env_name", "Pendulum-v1", "--max_steps", "1000", "--steps_per_iter", "400",
            "--num_envs", "2", "--epoch_per_iter", "1", "--eval_epis", "1", "--log", str(log),
            "--anneal_lr", "--anneal_clip", "--pol_lr", "1e-3", "--vf_lr", "2e-3",
            "--log_std_init", "0.5", "--seed", "0"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.path.dirname(EXAMPLES))
    subprocess.run([sys.executable, os.path.join(EXAMPLES, "run_ppo.py"), *args], env=env,
                   capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
    state = torch.load(checkpoint.latest_checkpoint(log) / "state.pt", weights_only=True)
    # Third and last iteration started at 800 of 1000 steps: rates at 1 - 800 / 1000.
    assert state["optim_pol"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.2, rel=1e-12)
    assert state["optim_vf"]["param_groups"][0]["lr"] == pytest.approx(2e-3 * 0.2, rel=1e-12)
    # One epoch at lr <= 1e-3 with gradient clipping moves the log-std far less than 0.1.
    log_std = state["pol"]["net.head.log_std_param"]
    assert torch.all((log_std - 0.5).abs() < 0.1), log_std
    # calls into the run's folder that stop on a bad flag or setting leave its args.json
    # (what take_movie.py and make_expert_epis.py --log rebuild the policy from) as it was
    settings = (log / "args.json").read_bytes()
    for refused in (["--log", str(log), "--activation", "tanh", "--joint_step", "--ppo_type", "kl"],
                    ["--resume", str(log), "--activation", "tanh"]):  # fmt: skip
        stopped = subprocess.run(
            [sys.executable, os.path.join(EXAMPLES, "run_ppo.py"), "--env_name", "Pendulum-v1",
             *refused], env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert stopped.returncode != 0
        assert (log / "args.json").read_bytes() == settings

    bad = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "run_ppo.py"), "--env_name", "CartPole-v1",
         "--log_std_init", "0", "--log", str(tmp_path / "bad")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "--log_std_init: expected a Gaussian policy" in bad.stderr


@pytest.mark.parametrize("sde_flag, sde", [([], True), (["--sde_sample_freq", "0"], False)])
def test_run_ppo_hopper_entry_explores_with_gsde_unless_turned_off(tmp_path, sde_flag, sde):
    """The Hopper entry's policy is a GaussianSDEPol (its (k, d) log-std at the entry's -2);
    ``--sde_sample_freq 0`` gives the plain Gaussian policy instead."""
    pytest.importorskip("pybullet")
    import torch

    from machina import checkpoint

    log = tmp_path / "run"
    args = ["--env_name", "HopperBulletEnv-v0", "--max_steps", "200", "--steps_per_iter", "100",
            "--epoch_per_iter", "1", "--eval_epis", "1", "--log", str(log), "--seed", "0",
            *sde_flag]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.path.dirname(EXAMPLES))
    script = os.path.join(EXAMPLES, "run_ppo.py")
    run = subprocess.run(
        [sys.executable, script, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "sde_sample_freq=4" in out  # the entry, printed
    state = torch.load(checkpoint.latest_checkpoint(log) / "state.pt", weights_only=True)
    if sde:
        log_std = state["pol"]["log_std"]
        assert log_std.shape == (64, 3)  # features of the 64-unit hidden layer, 3 joints
        assert torch.all((log_std + 2.0).abs() < 0.1), log_std
    else:
        assert "log_std" not in state["pol"]
        assert "net.head.log_std_param" in state["pol"]
