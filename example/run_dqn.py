"""Double DQN on any gymnasium task with a Discrete action space.

    python example/run_dqn.py --env_name CartPole-v1 --log runs/dqn_cartpole

Acts epsilon-greedily with respect to the Q function (``ArgmaxQfPol``), epsilon annealed
linearly from ``--eps_start`` to ``--eps_end`` over ``--explore_steps`` env steps. Each
iteration samples ``--steps_per_iter`` env steps into a bounded replay ``Traj`` and takes as
many double-DQN gradient steps on random batches of it. Trains until a greedy evaluation
reaches ``--solve_return`` (CartPole-v1: 475) or ``--max_steps`` env steps pass, and writes
progress.csv, TensorBoard events, learning_curve.png and the Q function (models/) into
``--log``.
"""

import argparse
import copy
import os

import numpy as np
import torch

from machina import logger
from machina.algos import dqn
from machina.envs import GymEnv
from machina.nets import QNet
from machina.pols import ArgmaxQfPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.vfuncs import DeterministicSAVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id, Discrete actions")
parser.add_argument("--log", default="runs/dqn", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--num_envs", type=int, default=4, help="environments sampled at once")
parser.add_argument("--max_steps", type=int, default=50_000, help="env-step budget")
parser.add_argument("--steps_per_iter", type=int, default=200, help="env steps per iteration")
parser.add_argument("--replay_size", type=int, default=50_000, help="replay Traj max_steps")
parser.add_argument("--batch_size", type=int, default=128)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--h_size", type=int, default=64, help="hidden units per layer")
parser.add_argument("--tau", type=float, default=0.005, help="target Polyak rate")
parser.add_argument("--gamma", type=float, default=0.99)
parser.add_argument("--eps_start", type=float, default=1.0)
parser.add_argument("--eps_end", type=float, default=0.04)
parser.add_argument("--explore_steps", type=int, default=5000, help="env steps of annealing")
parser.add_argument("--eval_interval", type=int, default=2000, help="env steps between evals")
parser.add_argument("--eval_epis", type=int, default=10, help="episodes per evaluation")
parser.add_argument("--solve_return", type=float, default=None, help="stop at this eval return")
parser.add_argument(
    "--num_threads", type=int, default=1, help="torch threads; small nets step fastest on one"
)
args = parser.parse_args()
torch.set_num_threads(args.num_threads)

score_file = logger.start_run(args.log)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
ob_space, ac_space = env.observation_space, env.action_space

qf = DeterministicSAVfunc(ob_space, ac_space, QNet(ob_space, ac_space, args.h_size, args.h_size))
targ_qf = copy.deepcopy(qf)
pol = ArgmaxQfPol(ob_space, ac_space, qf, eps=args.eps_start)
optim_qf = torch.optim.Adam(qf.parameters(), args.lr)
sampler = EpiSampler(env, pol, num_envs=args.num_envs, seed=args.seed)
off_traj = Traj(max_steps=args.replay_size)

total_epi, total_step, eval_return, next_eval = 0, 0, -np.inf, args.eval_interval
with logger.progress(total=args.max_steps, desc=args.env_name, disable=False) as bar:
    while total_step < args.max_steps:
        frac = min(total_step / max(args.explore_steps, 1), 1.0)
        pol.eps = args.eps_start + frac * (args.eps_end - args.eps_start)
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        traj.register_epis()
        off_traj.add_traj(traj)

        result_dict = dqn.train(
            off_traj,
            qf,
            targ_qf,
            optim_qf,
            epoch=traj.num_step,
            batch_size=min(args.batch_size, off_traj.num_step),
            tau=args.tau,
            gamma=args.gamma,
            log_enable=False,
        )
        result_dict["Eps"] = pol.eps

        total_epi += traj.num_epi
        total_step += traj.num_step
        if total_step >= next_eval or total_step >= args.max_steps:
            next_eval += args.eval_interval
            eval_epis = sampler.sample(pol, max_epis=args.eval_epis, deterministic=True)
            eval_return = float(np.mean([np.sum(epi["rews"]) for epi in eval_epis]))
            result_dict["EvalReturn"] = eval_return
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
        # the policy's only parameters are the Q function's
        logger.save_models(args.log, pol=pol, qf=qf)
        bar.update(traj.num_step)
        bar.set_postfix(train=f"{np.mean(rewards):.1f}", eval=f"{eval_return:.1f}")
        if solve_return is not None and eval_return >= solve_return:
            break

sampler.close()
logger.close()
solved = solve_return is not None and eval_return >= solve_return
status = "solved" if solved else "not solved" if solve_return is not None else "done"
print(f"{args.env_name}: {status} after {total_step} steps (eval return {eval_return:.1f});")
print(f"run folder: {os.path.abspath(args.log)}")
