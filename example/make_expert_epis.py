"""Sample expert episodes from a trained policy and save them for imitation learning.

    python example/run_ppo.py --env_name CartPole-v1 --log runs/ppo_cartpole
    python example/make_expert_epis.py --env_name CartPole-v1 \\
        --pol_path runs/ppo_cartpole/models/pol_last.pt --num_epis 100 --deterministic

``--deterministic`` acts by the policy's mode, as the runs' evaluations do: the quick
start's run stops at its first evaluation of 475 or more (about 1,200 steps on CartPole),
when its mode balances the pole (return 500) but its samples still fall early (about 57);
without the flag the episodes are those samples. The script prints their mean return. It
writes ``runs/expert_epis/CartPole-v1_100epis.npz`` (``--epis_path`` to choose): a ``Traj``
saved with ``Traj.save``, which ``Traj.load`` reads back without unpickling anything.

With ``--log RUN`` (the trained run's folder) the policy is rebuilt with that run's own
settings, read as take_movie.py reads them (RUN/args.json, else the settings its
checkpoints keep: run_trpo.py and the other logger.Run examples) (``env_name``, ``rnn``,
``c2d``, ``h_size``, ``activation``, a gSDE policy's ``sde_sample_freq``, ``squash_mean``,
``normalize_ob``), from RUN/models/pol_last.pt unless ``--pol_path``; a flag given on the
command line wins. So the PyBullet entries of example/hyperparams.py work as trained::

    python example/run_ppo.py --env_name HopperBulletEnv-v0 --log runs/ppo_hopper
    python example/make_expert_epis.py --log runs/ppo_hopper --num_epis 20 --deterministic

A run that normalised its observations (``normalize_ob``) acts on them through its
statistics (RUN/models/prepro_last.pt), and the expert episodes keep the environment's raw
observations, as an imitation learner with its own normalisation needs them: ``obs`` the
raw observation each step acted on (the sampler's ``e_is["raw_obs"]``), ``next_obs`` the one
each step returned, the final one included (a wrapper hands it to the sampler in the step's
info: the normalised final observation, clipped at ``ob_clip`` standard deviations when a
walker falls, cannot be mapped back).
Without ``--log`` the flags (``--h_size``, ``--activation``, ``--rnn``, ``--c2d``) describe
the policy, as in machina 0.x.
"""

import argparse
import os

import gymnasium as gym
import numpy as np
import torch
from flags import positive_int
from run_settings import add_policy_flags, describe, fill_from_run, load_run_prepro, make_run_pol

from machina.envs import C2DEnv, GymEnv
from machina.samplers import EpiSampler
from machina.traj import Traj

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument(
    "--env_name", default=None, help="any gymnasium id (default: the run's, else CartPole-v1)"
)
parser.add_argument("--log", default=None, help="the trained run's folder (args.json, models/)")
parser.add_argument(
    "--pol_path", default=None, help="state_dict of the expert policy (default: LOG's)"
)
parser.add_argument("--epis_path", default=None, help="output .npz (default under runs/)")
parser.add_argument("--num_epis", type=positive_int, default=100, help="expert episodes to save")
parser.add_argument("--deterministic", action="store_true", help="act by the policy's mode")
add_policy_flags(parser)
parser.add_argument(
    "--num_envs", type=positive_int, default=8, help="environments stepped together"
)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
if args.pol_path is None and args.log is None:
    parser.error("--pol_path: give the expert policy's file, or --log with the run's folder")
fill_from_run(args, args.log, "CartPole-v1")
print(f"policy settings: {describe(args)}")


class RawNextObs(gym.Wrapper):
    """Each step's observation also in its info as ``raw_next_obs``, which the sampler keeps
    in the episode's ``e_is`` before its prepro normalises the observation itself."""

    def step(self, action):
        ob, rew, terminated, truncated, info = self.env.step(action)
        return ob, rew, terminated, truncated, {**info, "raw_next_obs": np.array(ob)}


def raw_episodes(epis: list[dict]) -> list[dict]:
    """``epis`` sampled through a prepro with the environment's raw observations back in
    ``obs`` / ``next_obs`` (see the module's docstring)."""
    out = []
    for epi in epis:
        e_is = dict(epi["e_is"])
        obs, next_obs = e_is.pop("raw_obs"), e_is.pop("raw_next_obs")
        out.append({**epi, "obs": obs, "next_obs": next_obs.astype(obs.dtype), "e_is": e_is})
    return out


torch.set_num_threads(1)
env = GymEnv(args.env_name)
prepro = load_run_prepro(env.observation_space, args, args.log)
if prepro is not None:
    env = RawNextObs(env)
if args.c2d:
    env = C2DEnv(env)
pol_path = args.pol_path or os.path.join(args.log, "models", "pol_last.pt")
pol = make_run_pol(env.observation_space, env.action_space, args, pol_path)

with EpiSampler(env, pol, num_envs=args.num_envs, seed=args.seed, prepro=prepro) as sampler:
    epis = sampler.sample(pol, max_epis=args.num_epis, deterministic=args.deterministic)
if prepro is not None:
    epis = raw_episodes(epis)

path = args.epis_path or os.path.join("runs", "expert_epis", f"{args.env_name}_{len(epis)}epis.npz")
os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
traj = Traj()
traj.add_epis(epis)
traj.register_epis()
traj.save(path)
returns = [np.sum(epi["rews"]) for epi in epis]
print(f"{len(epis)} expert episodes, {traj.num_step} steps, return {np.mean(returns):.1f}")
print(f"saved to {os.path.abspath(path)}")
