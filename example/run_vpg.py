"""Vanilla policy gradient on any gymnasium task.

    python example/run_vpg.py --env_name CartPole-v1 --log runs/vpg_cartpole

Writes progress.csv, TensorBoard events, learning_curve.png and models/ into ``--log``.
"""

import argparse

import numpy as np
import torch

from machina import logger
from machina.algos import vpg
from machina.envs import GymEnv
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id")
parser.add_argument("--log", default="runs/vpg", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--rnn", action="store_true", help="LSTM policy and value function")
parser.add_argument("--num_parallel", type=int, default=1, help="sampler worker processes")
parser.add_argument("--num_envs", type=int, default=8, help="environments per worker")
parser.add_argument("--max_steps", type=int, default=100_000, help="env-step budget")
parser.add_argument("--steps_per_iter", type=int, default=2048)
parser.add_argument("--epoch_per_iter", type=int, default=1)
parser.add_argument("--batch_size", type=int, default=1024)
parser.add_argument("--vf_lr", type=float, default=1e-3)
parser.add_argument("--pol_lr", type=float, default=1e-3)
parser.add_argument("--h_size", type=int, default=64)
parser.add_argument("--gamma", type=float, default=0.99)
parser.add_argument("--lam", type=float, default=0.95)
args = parser.parse_args()

score_file = logger.start_run(args.log)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
pol = make_pol(env.observation_space, env.action_space, rnn=args.rnn, h_size=args.h_size)
vf = make_vf(env.observation_space, rnn=args.rnn, h_size=args.h_size)
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
optim_vf = torch.optim.Adam(vf.parameters(), args.vf_lr)
sampler = EpiSampler(
    env, pol, num_parallel=args.num_parallel, num_envs=args.num_envs, seed=args.seed
)

total_epi, total_step = 0, 0
with logger.progress(total=args.max_steps, desc=args.env_name, disable=False) as bar:
    while total_step < args.max_steps:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        traj = ef.compute_vs(traj, vf)
        traj = ef.compute_rets(traj, args.gamma)
        traj = ef.compute_advs(traj, args.gamma, args.lam)
        traj = ef.centerize_advs(traj)
        traj = ef.compute_h_masks(traj)
        traj.register_epis()
        batch_size = min(args.batch_size, traj.num_epi if args.rnn else traj.num_step)
        result_dict = vpg.train(
            traj,
            pol,
            vf,
            optim_pol,
            optim_vf,
            epoch=args.epoch_per_iter,
            batch_size=batch_size,
            log_enable=False,
        )

        total_epi += traj.num_epi
        total_step += traj.num_step
        rewards = [np.sum(epi["rews"]) for epi in epis]
        logger.record_results(
            args.log,
            result_dict,
            score_file,
            total_epi,
            traj.num_step,
            total_step,
            rewards,
            plot_title=args.env_name,
        )
        logger.save_models(args.log, pol=pol, vf=vf)
        bar.update(traj.num_step)
        bar.set_postfix(reward=f"{np.mean(rewards):.1f}")

sampler.close()
logger.close()
