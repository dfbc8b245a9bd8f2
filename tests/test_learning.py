"""Every on-policy algorithm learns: fixed seeds, small budgets, thresholds."""

import csv
import os
import subprocess
import sys

import gymnasium as gym
import pytest
import torch
from conftest import mean_return

from machina.algos import ppo_clip, ppo_kl, trpo, vpg
from machina.pols import RandomPol, make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_return(env_id, n_epi=20):
    env = gym.make(env_id)
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, seed=123, num_envs=4) as sampler:
        return mean_return(sampler.sample(pol, max_epis=n_epi))


def train_on_policy(
    env_id,
    train,
    total_steps,
    steps_per_iter,
    rnn=False,
    gamma=0.99,
    lam=0.95,
    h_size=32,
    seed=0,
    num_envs=8,
    sde_sample_freq=None,
):
    """The README's loop: sample, estimate, train; returns the final deterministic return."""
    torch.manual_seed(seed)
    env = gym.make(env_id)
    pol = make_pol(
        env.observation_space,
        env.action_space,
        rnn=rnn,
        h_size=h_size,
        sde_sample_freq=sde_sample_freq,
    )
    vf = make_vf(env.observation_space, rnn=rnn, h_size=h_size)
    state = dict(
        optim_pol=torch.optim.Adam(pol.parameters(), 1e-3),
        optim_vf=torch.optim.Adam(vf.parameters(), 1e-3),
    )
    with EpiSampler(env, pol, seed=seed, num_envs=num_envs) as sampler:
        step = 0
        while step < total_steps:
            traj = Traj()
            traj.add_epis(sampler.sample(pol, max_steps=steps_per_iter))
            traj = ef.compute_vs(traj, vf)
            traj = ef.compute_rets(traj, gamma)
            traj = ef.compute_advs(traj, gamma, lam)
            traj = ef.centerize_advs(traj)
            traj = ef.compute_h_masks(traj)
            traj.register_epis()
            train(traj, pol, vf, state)
            step += traj.num_step
        return mean_return(sampler.sample(pol, max_epis=10, deterministic=True))


def test_main_job_ppo_clip_solves_cartpole(tmp_path):
    """The README's main job: eval return >= 475 within 100k steps, run folder complete."""
    log = tmp_path / "run"
    cmd = [
        sys.executable,
        os.path.join(REPO, "example", "run_ppo.py"),
        "--env_name",
        "CartPole-v1",
        "--log",
        str(log),
        "--max_steps",
        "100000",
        "--seed",
        "0",
    ]
    subprocess.run(cmd, check=True, timeout=600, capture_output=True)
    with open(log / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["EvalReturn"]) >= 475
    assert int(rows[-1]["TotalStep"]) <= 100_000 + 1024
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(log))
    assert (log / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (log / "models" / "pol_last.pt").stat().st_size > 0


def _ppo_kl(traj, pol, vf, state):
    result = ppo_kl.train(
        traj,
        pol,
        vf,
        state.get("kl_beta", 1.0),
        0.01,
        state["optim_pol"],
        state["optim_vf"],
        epoch=10,
        batch_size=256,
        log_enable=False,
    )
    state["kl_beta"] = result["new_kl_beta"]


def _trpo(traj, pol, vf, state):
    trpo.train(
        traj, pol, vf, state["optim_vf"], epoch=5, batch_size=256, max_kl=0.02, log_enable=False
    )


def _vpg(traj, pol, vf, state):
    vpg.train(
        traj,
        pol,
        vf,
        state["optim_pol"],
        state["optim_vf"],
        epoch=1,
        batch_size=1024,
        log_enable=False,
    )


@pytest.mark.parametrize("train", [_ppo_kl, _trpo, _vpg], ids=["ppo_kl", "trpo", "vpg"])
def test_algorithm_doubles_cartpole_random_return(train):
    baseline = random_return("CartPole-v1")
    final = train_on_policy("CartPole-v1", train, total_steps=20_000, steps_per_iter=1024)
    assert final >= 2 * baseline, (final, baseline)


def _ppo_clip(traj, pol, vf, state, batch_size=256):
    ppo_clip.train(
        traj,
        pol,
        vf,
        state["optim_pol"],
        state["optim_vf"],
        epoch=10,
        batch_size=batch_size,
        log_enable=False,
    )


def test_recurrent_ppo_learns_cartpole():
    baseline = random_return("CartPole-v1")

    def train(traj, pol, vf, state):
        _ppo_clip(traj, pol, vf, state, batch_size=8)

    final = train_on_policy("CartPole-v1", train, total_steps=20_000, steps_per_iter=1024, rnn=True)
    assert final >= 3 * baseline, (final, baseline)


def test_ppo_improves_pendulum():
    baseline = random_return("Pendulum-v1", n_epi=8)
    final = train_on_policy(
        "Pendulum-v1", _ppo_clip, total_steps=40_000, steps_per_iter=2000, gamma=0.95, lam=0.9
    )
    assert final >= baseline + 300, (final, baseline)


def test_ppo_with_gsde_improves_pendulum():
    """gSDE (GaussianSDEPol, matrix redrawn every 8 steps) learns through the same loop."""
    baseline = random_return("Pendulum-v1", n_epi=8)
    final = train_on_policy(
        "Pendulum-v1",
        _ppo_clip,
        total_steps=40_000,
        steps_per_iter=2000,
        gamma=0.95,
        lam=0.9,
        sde_sample_freq=8,
    )
    assert final >= baseline + 300, (final, baseline)
