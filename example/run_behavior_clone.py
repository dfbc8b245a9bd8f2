"""Behaviour cloning from saved expert episodes.

    python example/make_expert_epis.py --pol_path runs/ppo_cartpole/models/pol_last.pt
    python example/run_behavior_clone.py --expert_path runs/expert_epis/CartPole-v1_100epis.npz

Fits the policy to the expert's actions on ``--train_size`` of the episodes, reports the
likelihood loss on the rest (``TestPolLossAverage``) and the return of a deterministic
evaluation every ``--eval_interval`` epochs; writes progress.csv, TensorBoard events,
learning_curve.png and models/pol_last.pt into ``--log``.
"""

import argparse
import os

import numpy as np
import torch

from machina import logger
from machina.algos import behavior_clone
from machina.envs import C2DEnv, GymEnv
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id")
parser.add_argument("--expert_path", required=True, help=".npz from make_expert_epis.py")
parser.add_argument("--log", default="runs/behavior_clone", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--c2d", action="store_true", help="discretise a continuous action space")
parser.add_argument("--train_size", type=float, default=0.7, help="fraction of episodes")
parser.add_argument("--epoch", type=int, default=50, help="passes over the training episodes")
parser.add_argument("--batch_size", type=int, default=256)
parser.add_argument("--pol_lr", type=float, default=1e-3)
parser.add_argument("--h_size", type=int, default=64, help="hidden units per layer")
parser.add_argument("--eval_interval", type=int, default=10, help="epochs between evaluations")
parser.add_argument("--eval_epis", type=int, default=10, help="episodes per evaluation")
args = parser.parse_args()

score_file = logger.start_run(args.log)
torch.set_num_threads(1)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
if args.c2d:
    env = C2DEnv(env)
pol = make_pol(env.observation_space, env.action_space, h_size=args.h_size)
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
sampler = EpiSampler(env, pol, seed=args.seed)

expert_epis = Traj.load(args.expert_path).epis()
train_epis, test_epis = ef.train_test_split(expert_epis, train_size=args.train_size)
train_traj = Traj()
train_traj.add_epis(train_epis)
train_traj.register_epis()
test_traj = Traj()
test_traj.add_epis(test_epis)
test_traj.register_epis()
expert_return = float(np.mean([np.sum(epi["rews"]) for epi in expert_epis]))
logger.log(f"expert_score={expert_return}, num_train_epi={train_traj.num_epi}")

eval_return = -np.inf
for epoch in range(1, args.epoch + 1):
    result_dict = behavior_clone.train(train_traj, pol, optim_pol, args.batch_size)
    result_dict.update(behavior_clone.test(test_traj, pol))
    if epoch % args.eval_interval == 0 or epoch == args.epoch:
        eval_epis = sampler.sample(pol, max_epis=args.eval_epis, deterministic=True)
        rewards = [np.sum(epi["rews"]) for epi in eval_epis]
        eval_return = float(np.mean(rewards))
        result_dict["EvalReturn"] = eval_return
        result_dict["ExpertReturn"] = expert_return
        logger.record_results(
            args.log,
            result_dict,
            score_file,
            epoch,
            train_traj.num_step,
            epoch * train_traj.num_step,
            rewards,
            plot_title=args.env_name,
        )
        logger.save_models(args.log, pol=pol)

sampler.close()
logger.close()
print(f"{args.env_name}: eval return {eval_return:.1f} (expert {expert_return:.1f})")
print(f"run folder: {os.path.abspath(args.log)}")
