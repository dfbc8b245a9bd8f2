"""A run resumed in a new process equals the uninterrupted run bit for bit (issue 11 item 5).

PPO and SAC improve one policy from one sampler (as example/run_ppo_sac.py): PPO on the fresh
episodes, SAC on a replay ``Traj`` whose priorities are drawn and rewritten
(``prioritized_random_batch`` / ``update_pris``, so ``pris`` and ``pri_beta`` carry state).
6 iterations, ``machina.checkpoint.save_run``, then a new process builds everything afresh,
``load_run`` and 6 more: every saved tensor (parameters, optimiser states, the sampler's RNGs,
the global RNGs) and every replay column equal those of 12 uninterrupted iterations.

This file is also the script the test runs: ``python tests/test_resume.py MODE DIR NUM_PARALLEL``.
"""

import copy
import io
import os
import random
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch

ITERS = 6


def build(num_parallel: int) -> dict:
    """Every object of the run, from fixed seeds (tiny nets and budgets)."""
    from machina.envs import GymEnv
    from machina.nets import PolNet, QNet, VNet
    from machina.pols import TanhGaussianPol
    from machina.samplers import EpiSampler
    from machina.traj import Traj
    from machina.vfuncs import DeterministicSAVfunc, DeterministicSVfunc

    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 (the global RNG is part of a run)
    random.seed(0)
    env = GymEnv("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac, 8, 8))
    vf = DeterministicSVfunc(ob, VNet(ob, 8, 8))
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac, 8, 8)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = torch.zeros((), requires_grad=True)
    objs = dict(
        pol=pol,
        vf=vf,
        qf1=qfs[0],
        qf2=qfs[1],
        targ_qf1=targ_qfs[0],
        targ_qf2=targ_qfs[1],
        log_alpha=log_alpha,
        optim_ppo_pol=torch.optim.Adam(pol.parameters(), 3e-4),
        optim_vf=torch.optim.Adam(vf.parameters(), 1e-3),
        optim_sac_pol=torch.optim.Adam(pol.parameters(), 1e-3),
        optim_qf1=torch.optim.Adam(qfs[0].parameters(), 1e-3),
        optim_qf2=torch.optim.Adam(qfs[1].parameters(), 1e-3),
        optim_alpha=torch.optim.Adam([log_alpha], 1e-3),
        off_traj=Traj(max_steps=1000),
        # short episodes (cut, truncated) keep every iteration small
        sampler=EpiSampler(
            env, pol, num_parallel=num_parallel, num_envs=2, seed=5, max_episode_steps=25
        ),
    )
    return objs


def iterate(o: dict, iters: int) -> None:
    from machina.algos import ppo_clip, sac
    from machina.traj import Traj
    from machina.traj import epi_functional as ef
    from machina.traj import traj_functional as tf

    for _ in range(iters):
        epis = o["sampler"].sample(o["pol"], max_steps=50)
        traj = Traj()
        traj.add_epis(epis)
        traj = ef.compute_vs(traj, o["vf"])
        traj = ef.compute_rets(traj, 0.99)
        traj = ef.compute_advs(traj, 0.99, 0.95)
        traj = ef.centerize_advs(traj)
        traj = ef.compute_h_masks(traj)
        traj.register_epis()
        ppo_clip.train(
            traj=traj,
            pol=o["pol"],
            vf=o["vf"],
            optim_pol=o["optim_ppo_pol"],
            optim_vf=o["optim_vf"],
            epoch=2,
            batch_size=25,
            clip_param=0.2,
            max_grad_norm=0.5,
            log_enable=False,
        )
        new = Traj()
        new.add_epis([{k: e[k] for k in sac.OFF_POLICY_KEYS} for e in epis])
        new = ef.set_all_pris(new, o["off_traj"].get_max_pri() if o["off_traj"].num_step else 1.0)
        new.register_epis()
        o["off_traj"].add_traj(new)
        qfs, targ_qfs = [o["qf1"], o["qf2"]], [o["targ_qf1"], o["targ_qf2"]]
        sac.train(
            o["off_traj"],
            o["pol"],
            qfs,
            targ_qfs,
            o["log_alpha"],
            o["optim_sac_pol"],
            [o["optim_qf1"], o["optim_qf2"]],
            o["optim_alpha"],
            epoch=4,
            batch_size=16,
            tau=0.01,
            gamma=0.99,
            log_enable=False,
        )
        # Priorities drawn and rewritten: the replay's pris and pri_beta carry state.
        for batch, idx in o["off_traj"].prioritized_random_batch(16, 2, return_indices=True):
            with torch.no_grad():
                td = qfs[0](batch["obs"], batch["acs"])[0] - batch["rews"]
            tf.update_pris(o["off_traj"], td, idx)
        # The global RNGs are part of a run as well.
        rngs = torch.rand(()) + np.random.random() + random.random()  # noqa: NPY002
        o["log_alpha"].data += 0.0 * rngs


def main(mode: str, run_dir: str, num_parallel: int) -> None:
    """One run: ``full`` (12 iterations), ``half`` (6) or ``resumed`` (``half`` loaded, 6 more),
    saved in ``run_dir/<mode>``."""
    from machina.checkpoint import load_run, save_run

    torch.set_num_threads(1)
    objs = build(num_parallel)
    try:
        if mode == "full":
            iterate(objs, 2 * ITERS)
        elif mode == "half":
            iterate(objs, ITERS)
        else:
            load_run(os.path.join(run_dir, "half"), objs)
            iterate(objs, ITERS)
        save_run(os.path.join(run_dir, mode), objs)
    finally:
        objs["sampler"].close()


# ---------------------------------------------------------------- the test
def _run(*runs: tuple[str, str, int]) -> None:
    """The runs, one after another, in one new process (each builds its objects afresh)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [str(x) for run in runs for x in run]
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ppo_sac_resumed_in_a_new_process_equals_the_uninterrupted_run(tmp_path):
    import pytest
    from conftest import assert_same_state

    from machina.checkpoint import latest_checkpoint

    dirs = {n: str(tmp_path / f"np{n}") for n in (1, 2)}
    # The uninterrupted and the first half in one process, the second half in another.
    _run(*[(mode, dirs[n], n) for n in (1, 2) for mode in ("full", "half")])
    _run(*[("resumed", dirs[n], n) for n in (1, 2)])
    for num_parallel, run_dir in dirs.items():
        full = latest_checkpoint(os.path.join(run_dir, "full"))
        resumed = latest_checkpoint(os.path.join(run_dir, "resumed"))
        half = latest_checkpoint(os.path.join(run_dir, "half"))
        states = [torch.load(p / "state.pt", weights_only=True) for p in (full, resumed, half)]
        assert_same_state(states[0], states[1], f"num_parallel={num_parallel}: state")
        with np.load(full / "off_traj.npz") as f, np.load(resumed / "off_traj.npz") as g:
            assert set(f.files) == set(g.files) and "col:pris" in f.files
            assert any("pri_beta" in key for key in f.files)
            assert "rng_state" in f.files  # the replay's batch generator (compared below)
            for key in f.files:
                np.testing.assert_array_equal(f[key], g[key], err_msg=key)
        # and the comparison has teeth: the half-way run differs
        with pytest.raises(AssertionError):
            assert_same_state(states[0]["pol"], states[2]["pol"], "pol")


if __name__ == "__main__":
    for i in range(1, len(sys.argv), 3):
        main(sys.argv[i], sys.argv[i + 1], int(sys.argv[i + 2]))


def _same_epis(a, b) -> bool:
    keys = ("obs", "acs", "rews", "next_obs", "terms", "truncs")
    return len(a) == len(b) and all(
        all(np.array_equal(x[k], y[k]) for k in keys) for x, y in zip(a, b)
    )


def test_sampler_state_across_processes_layouts_and_the_ray_backend():
    """A state from one engine continues exactly in another: a worker process's, this
    process's and a Ray actor's (the same engine behind three transports)."""
    import gymnasium as gym
    import pytest

    from machina.pols import make_pol
    from machina.samplers import EpiSampler

    pytest.importorskip("ray")
    env = gym.make("Pendulum-v1")
    torch.manual_seed(0)
    pol = make_pol(env.observation_space, env.action_space, h_size=8)
    # process backend, 2 workers: state -> a new sampler continues exactly
    with EpiSampler(env, pol, num_parallel=2, seed=3, max_episode_steps=20) as a:
        a.sample(pol, max_steps=40)
        state = a.state_dict()
        ref = a.sample(pol, max_steps=40)
    # through torch.save and a weights-only torch.load (torch's default), as a module's
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    with EpiSampler(env, pol, num_parallel=2, seed=3, max_episode_steps=20) as b:
        b.load_state_dict(state)
        assert _same_epis(b.sample(pol, max_steps=40), ref)
        with pytest.raises(ValueError, match=r"saved with num_parallel=2.*num_parallel=1"):
            EpiSampler(env, pol, seed=3).load_state_dict(state)
    # Ray actor -> this process -> Ray actor
    with EpiSampler(env, pol, seed=3, backend="ray", max_episode_steps=20) as r:
        with EpiSampler(env, pol, seed=3, max_episode_steps=20) as local:
            r.sample(pol, max_steps=40)
            local.load_state_dict(r.state_dict())
            assert _same_epis(local.sample(pol, max_steps=40), r.sample(pol, max_steps=40))
            local.sample(pol, max_steps=40)
            r.load_state_dict(local.state_dict())
            assert _same_epis(r.sample(pol, max_steps=40), local.sample(pol, max_steps=40))


_PPO_ARGS = [
    "--env_name",
    "Pendulum-v1",
    "--steps_per_iter",
    100,
    "--num_envs",
    1,
    "--epoch_per_iter",
    2,
    "--batch_size",
    50,
    "--h_size",
    8,
    "--eval_epis",
    1,
]
# (run_ppo.py checkpoints every iteration, the off-policy scripts every --checkpoint_interval)
_OFF_ARGS = ["--steps_per_iter", 100, "--batch_size", 16, "--h_size", 8, "--eval_interval", 200,
             "--eval_epis", 1, "--checkpoint_interval", 200]  # fmt: skip
#: stopped at 200 steps, then resumed with the budget grown to 400 (a halves run)
GROWN_RUNS = [
    # tiny budgets: one 200-step Pendulum episode per iteration, 1 + 1 iterations
    ("run_ppo.py", _PPO_ARGS),
    ("run_sac.py", _OFF_ARGS),
]
#: killed after 200 of 400 steps, then resumed from the checkpoint at 200
CRASHED_RUNS = [
    # gSDE: the exploration matrix (drawn mid-window: 200 is not a multiple of 7) is
    # in the checkpoint too
    ("run_ppo.py", [*_PPO_ARGS, "--sde_sample_freq", 7]),
    # one matrix per environment: a (1, k, d) stack in the checkpoint
    ("run_ppo.py", [*_PPO_ARGS, "--sde_sample_freq", 7, "--sde_per_env_noise"]),
    # ppo_kl's adaptive penalty (kl_beta) is in the checkpoint too
    ("run_ppo.py", [*_PPO_ARGS, "--ppo_type", "kl"]),
    # one optimiser over both networks, annealed lr, per-minibatch advantage standardisation,
    # stable-baselines3's Adam epsilon and a value network of its own width
    (
        "run_ppo.py",
        [
            *_PPO_ARGS,
            "--joint_step",
            "--anneal_lr",
            "--minibatch_norm_advs",
            "--adam_eps",
            1e-5,
            "--vf_h_size",
            12,
        ],
    ),
    # the Ornstein-Uhlenbeck noise's state is in the checkpoint too
    ("run_ddpg.py", [*_OFF_ARGS, "--noise", "ou"]),
    # random warm-up steps on both sides of the checkpoint
    ("run_td3.py", [*_OFF_ARGS, "--random_steps", 300]),
    # the learning rates' linear decay continues from the step count; a state-dependent
    # log-std (the torch sampling path)
    ("run_sac.py", [*_OFF_ARGS, "--anneal_lr", "--pol_lr", 1e-3, "--state_std"]),
    # the lagged copy is refreshed after the checkpoint (at 250 gradient steps): the
    # gradient-step counters are in the checkpoint too
    ("run_qtopt.py", [*_OFF_ARGS, "--lag", 250, "--num_sampling", 8]),
]


def test_examples_resume_bit_for_bit(tmp_path):
    """run_ppo.py (plain) and run_sac.py: 200 steps, then --resume to 400, equal the 400-step
    run. run_ppo.py (gSDE with one or per-environment matrices, ppo_kl, joint step),
    run_ddpg.py (OU noise), run_td3.py, run_sac.py (annealed lr, state-dependent log-std)
    and run_qtopt.py: a 400-step run killed after its checkpoint at 200, resumed, equals
    the uninterrupted one. (run_sac.py's gSDE policy keeps its exploration matrix the way
    run_ppo.py's does, GaussianSDEPol's extra state: test_pols_tanh_gaussian_sde.py checks
    its state_dict; a crash-resume run of it, ~30 s, does not fit the suite's time.)"""
    from conftest import (
        check_examples_resume_after_crash,
        check_examples_resume_with_a_larger_budget,
    )

    grown = tmp_path / "grown"
    grown.mkdir()
    states = check_examples_resume_with_a_larger_budget(GROWN_RUNS, grown, (200, 400))
    # header + one row per 200-step iteration (a progress.csv continued, no row twice)
    assert all(len((grown / f"{i}-halves" / "progress.csv").read_text().splitlines()) == 3
               for i in range(len(states)))  # fmt: skip

    crashed = tmp_path / "crashed"
    crashed.mkdir()
    states = check_examples_resume_after_crash(
        [(s, ["--max_steps", 400, *a]) for s, a in CRASHED_RUNS],
        crashed,
    )
    for (_, args), (a, _) in zip(CRASHED_RUNS, states):
        if "--adam_eps" in args:  # the flag reaches the optimiser (saved with the run)
            assert {g["eps"] for g in a["optim_pol"]["param_groups"]} == {1e-5}
        if "--anneal_lr" in args and "--pol_lr" in args:
            # two 200-step episodes: the last batch's updates at the rate of step 300 of 400
            lrs = [g["lr"] for g in a["optim_pol"]["param_groups"]]
            assert lrs == [pytest.approx(1e-3 * (1 - 300 / 400), rel=1e-12)]
        if "--state_std" in args:
            assert "net.head.log_std_layer.weight" in a["pol"]
        if "--vf_h_size" in args:  # hidden layers of 12 units in the value network only
            widths = {t.shape[0] for t in a["vf"].values() if t.ndim == 2}
            assert widths == {12, 1}, widths


class TerrainEnv(gymnasium.Env):
    """Draws a terrain at its first reset only and keeps it in every later episode (as
    pybullet_envs' walkers keep the parts their first reset added): a restored sampler must
    replay that reset, with the saved run's seed, for its episodes to be the saved run's."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.terrain, self.t = None, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.terrain is None:
            self.terrain = float(self.np_random.normal())
        self.t = 0
        return np.array([self.terrain], np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.terrain + self.np_random.normal()], np.float32)
        return obs, self.terrain * float(action[0]), False, self.t >= 5, {}


class CountResets(gymnasium.Wrapper):
    resets = 0  # every instance's, in this process

    def reset(self, **kwargs):
        type(self).resets += 1
        return self.env.reset(**kwargs)


def make_terrain_env() -> gymnasium.Env:
    return CountResets(TerrainEnv())


class HoldsTerrain(gymnasium.Env):
    """An environment (not a wrapper) holding another in ``env`` and drawing a first-reset
    offset of its own: the replayed first reset must be its, not only the inner one's (the
    inner one only keeps its terrain; every draw after the first reset is the outer's)."""

    observation_space = TerrainEnv.observation_space
    action_space = TerrainEnv.action_space

    def __init__(self):
        self.env, self.offset = TerrainEnv(), None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.offset is None:
            self.offset = float(self.np_random.normal())
        obs, info = self.env.reset(seed=None if seed is None else seed + 1000)
        return obs + np.float32(self.offset), info

    def step(self, action):
        self.env.t += 1
        level = self.env.terrain + self.offset
        obs = np.array([level + self.np_random.normal()], np.float32)
        return obs, level * float(action[0]), False, self.env.t >= 5, {}


@pytest.mark.parametrize("make_env", [make_terrain_env, lambda: CountResets(HoldsTerrain())])
def test_a_restored_sampler_replays_the_saved_first_resets_unseen_by_wrappers(make_env):
    """Restored into a sampler of another seed, the episodes are the saved run's, and the
    replayed first resets go to the innermost environments (a video recorder would otherwise
    write a one-frame clip of them)."""
    from machina.pols import RandomPol
    from machina.samplers import EpiSampler

    pol = RandomPol(TerrainEnv.observation_space, TerrainEnv.action_space)
    with EpiSampler(make_env, pol, num_envs=2, seed=3) as first:
        first.sample(pol, max_epis=4)
        state = first.state_dict()
        torch.manual_seed(0)
        want = first.sample(pol, max_epis=4)
    with EpiSampler(make_env, pol, num_envs=2, seed=9) as second:
        before = CountResets.resets
        second.load_state_dict(state)
        assert CountResets.resets == before  # no wrapper saw the replayed resets
        torch.manual_seed(0)
        got = second.sample(pol, max_epis=4)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a["obs"], b["obs"])
        np.testing.assert_array_equal(a["rews"], b["rews"])
