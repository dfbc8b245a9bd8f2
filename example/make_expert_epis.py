"""Sample expert episodes from a trained policy and save them for imitation learning.

    python example/run_ppo.py --env_name CartPole-v1 --log runs/ppo_cartpole
    python example/make_expert_epis.py --env_name CartPole-v1 \\
        --pol_path runs/ppo_cartpole/models/pol_last.pt --num_epis 100 --deterministic

``--deterministic`` acts by the policy's mode, as the runs' evaluations do: the quick
start's run stops at its first evaluation of 475 or more (about 1,200 steps on CartPole),
when its mode balances the pole (return 500) but its samples still fall early (about 57);
without the flag the episodes are those samples. The script prints their mean return. It
writes ``runs/expert_epis/CartPole-v1_100epis.npz`` (``--epis_path`` to choose): a ``Traj``
saved with ``Traj.save``, which ``Traj.load`` reads back without unpickling anything. The
policy is rebuilt with ``make_pol`` and the same ``--h_size`` / ``--activation`` / ``--rnn`` /
``--c2d`` as the run that trained it.
"""

import argparse
import os

import numpy as np
import torch
from flags import positive_int

from machina.envs import C2DEnv, GymEnv
from machina.nets import HIDDEN_ACTIVATIONS
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id")
parser.add_argument("--pol_path", required=True, help="state_dict of the expert policy (.pt)")
parser.add_argument("--epis_path", default=None, help="output .npz (default under runs/)")
parser.add_argument("--num_epis", type=positive_int, default=100, help="expert episodes to save")
parser.add_argument("--deterministic", action="store_true", help="act by the policy's mode")
parser.add_argument("--rnn", action="store_true", help="the policy is an LSTM one")
parser.add_argument("--c2d", action="store_true", help="discretise a continuous action space")
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units, as when trained")
parser.add_argument(
    "--activation", choices=sorted(HIDDEN_ACTIVATIONS), default="relu", help="as when trained"
)
parser.add_argument(
    "--num_envs", type=positive_int, default=8, help="environments stepped together"
)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.set_num_threads(1)
env = GymEnv(args.env_name)
if args.c2d:
    env = C2DEnv(env)
pol = make_pol(
    env.observation_space,
    env.action_space,
    rnn=args.rnn,
    h_size=args.h_size,
    activation=args.activation,
)
pol.load_state_dict(torch.load(args.pol_path, map_location="cpu"))

with EpiSampler(env, pol, num_envs=args.num_envs, seed=args.seed) as sampler:
    epis = sampler.sample(pol, max_epis=args.num_epis, deterministic=args.deterministic)

path = args.epis_path or os.path.join("runs", "expert_epis", f"{args.env_name}_{len(epis)}epis.npz")
os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
traj = Traj()
traj.add_epis(epis)
traj.register_epis()
traj.save(path)
returns = [np.sum(epi["rews"]) for epi in epis]
print(f"{len(epis)} expert episodes, {traj.num_step} steps, return {np.mean(returns):.1f}")
print(f"saved to {os.path.abspath(path)}")
