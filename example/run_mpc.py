"""Model-based RL: random-shooting MPC with a learned dynamics model, on Pendulum.

    python example/run_mpc.py --log runs/mpc_pendulum

Random episodes train a first dynamics model (``mpc.train_dm``); then each iteration the
MPC policy samples episodes with the model, they join the data set, and the model trains
again on all of it (Nagabandi et al., 2018, arXiv:1708.02596). MPC needs the task's reward
as a function of (next_obs, acs): ``rew_func`` below approximates Pendulum-v1's (gymnasium
charges the cost on the state *before* the step, which a function of next_obs cannot see).
Writes progress.csv, TensorBoard events, learning_curve.png and the model
(models/dm_last.pt) into ``--log``.

Each iteration the whole run (model, optimiser, data set, global RNGs, counters) is saved in
``--log`` (``machina.checkpoint``); ``--resume RUN_DIR`` continues a stopped run from its
newest checkpoint, with the same other arguments (see run_ddpg.py).
"""

import argparse

import numpy as np
import torch
from flags import positive_float, positive_int

from machina import logger
from machina.algos import mpc
from machina.envs import GymEnv
from machina.models import DeterministicSModel
from machina.nets.model import ModelNet
from machina.pols import RandomPol
from machina.pols.mpc_pol import MPCPol
from machina.samplers import EpiSampler
from machina.traj import Traj


def rew_func(next_obs, acs):
    """Pendulum-v1's cost on the state after the step, batched in torch: next_obs = (cos, sin,
    thetadot), acs = torque. An approximation: gymnasium charges the cost of the state before
    the step, one step earlier along the same trajectory."""
    theta = torch.atan2(next_obs[:, 1], next_obs[:, 0])
    thetadot = next_obs[:, 2].clamp(-8.0, 8.0)
    return -(theta**2 + 0.1 * thetadot**2 + 0.001 * acs[:, 0] ** 2)


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="a task rew_func describes")
parser.add_argument("--log", default="runs/mpc", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--num_parallel", type=positive_int, default=1, help="sampler worker processes")
parser.add_argument("--num_envs", type=positive_int, default=4, help="environments per worker")
parser.add_argument("--num_random_rollouts", type=positive_int, default=20, help="warm-up episodes")
parser.add_argument("--max_epis", type=positive_int, default=40, help="MPC episode budget")
parser.add_argument("--max_epis_per_iter", type=positive_int, default=4)
parser.add_argument("--n_samples", type=positive_int, default=500, help="action sequences per step")
parser.add_argument(
    "--horizon_of_samples", type=positive_int, default=15, help="steps per sequence"
)
parser.add_argument("--epoch_per_iter", type=positive_int, default=500, help="model gradient steps")
parser.add_argument("--batch_size", type=positive_int, default=256)
parser.add_argument("--dm_lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=64, help="model hidden units per layer")
parser.add_argument("--num_threads", type=positive_int, default=1, help="torch threads")
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()
if args.env_name.split("-")[0] != "Pendulum":  # it would plan with Pendulum's reward
    parser.error("--env_name: rew_func above writes out Pendulum's reward; write your task's own")

torch.set_num_threads(args.num_threads)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
ob_space, ac_space = env.observation_space, env.action_space

# ---- warm-up data from random actions (in real units, like MPCPol's) ----
random_pol = RandomPol(ob_space, ac_space)
with EpiSampler(env, random_pol, num_envs=args.num_envs, seed=args.seed) as rand_sampler:
    epis = rand_sampler.sample(random_pol, max_epis=args.num_random_rollouts)
traj = Traj()
traj.add_epis(epis)
traj.register_epis()
random_return = float(np.mean([np.sum(epi["rews"]) for epi in epis]))
print(f"random actions: mean return {random_return:.1f}")

dm = DeterministicSModel(ob_space, ac_space, ModelNet(ob_space, ac_space, args.h_size, args.h_size))
optim_dm = torch.optim.Adam(dm.parameters(), args.dm_lr)
mpc_pol = MPCPol(ob_space, ac_space, dm, rew_func, args.n_samples, args.horizon_of_samples)
sampler = EpiSampler(
    env, mpc_pol, num_parallel=args.num_parallel, num_envs=args.num_envs, seed=args.seed
)

run = logger.Run(
    args.resume or args.log,
    args.max_epis,
    args.env_name,
    unit="episode",
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
    resumable=("max_epis",),  # the budget
)
state = dict(sampler=sampler, dm=dm, optim_dm=optim_dm, traj=traj)
with run:
    run.restore(**state)
    while not run.done:
        # the model's statistics and weights follow all the data gathered so far
        result_dict = mpc.train_dm(
            traj, dm, optim_dm, args.epoch_per_iter, args.batch_size, log_enable=False
        )
        epis = sampler.sample(mpc_pol, max_epis=args.max_epis_per_iter)
        curr_traj = Traj()
        curr_traj.add_epis(epis)
        curr_traj.register_epis()
        traj.add_traj(curr_traj)

        result_dict["RandomReturn"] = random_return
        run.record(epis, result_dict, models=dict(dm=dm), checkpoint=state, random=random_return)

sampler.close()
