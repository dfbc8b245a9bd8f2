"""Double DQN on any gymnasium task with a Discrete action space.

    python example/run_dqn.py --env_name CartPole-v1 --log runs/dqn_cartpole

Acts epsilon-greedily with respect to the Q function (``ArgmaxQfPol``), epsilon annealed
linearly from ``--eps_start`` to ``--eps_end`` over ``--explore_steps`` env steps. Each
iteration samples ``--steps_per_iter`` env steps into a bounded replay ``Traj`` and takes as
many double-DQN gradient steps on random batches of it. Trains until a greedy evaluation
reaches ``--solve_return`` (CartPole-v1: 475) or ``--max_steps`` env steps pass, and writes
progress.csv, TensorBoard events, learning_curve.png and the Q function (models/) into
``--log``.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(``machina.checkpoint``); ``--resume RUN_DIR`` continues a stopped run from its newest
checkpoint, with the same other arguments (see run_ddpg.py).
"""

import argparse
import copy

import torch
from flags import (
    interval,
    nonneg_int,
    polyak_rate,
    positive_float,
    positive_int,
    probability,
    unit_interval,
)

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
parser.add_argument("--num_envs", type=positive_int, default=4, help="environments sampled at once")
parser.add_argument("--max_steps", type=positive_int, default=50_000, help="env-step budget")
parser.add_argument(
    "--steps_per_iter", type=positive_int, default=200, help="env steps per iteration"
)
parser.add_argument(
    "--replay_size", type=positive_int, default=50_000, help="replay Traj max_steps"
)
parser.add_argument("--batch_size", type=positive_int, default=128)
parser.add_argument("--lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument("--tau", type=polyak_rate, default=0.005, help="target Polyak rate")
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument("--eps_start", type=probability, default=1.0)
parser.add_argument("--eps_end", type=probability, default=0.04)
parser.add_argument("--explore_steps", type=nonneg_int, default=5000, help="env steps of annealing")
parser.add_argument(
    "--eval_interval",
    type=interval,
    default=2000,
    help="env steps between evals (0: every iteration)",
)
parser.add_argument("--eval_epis", type=positive_int, default=10, help="episodes per evaluation")
parser.add_argument("--solve_return", type=float, default=None, help="stop at this eval return")
parser.add_argument(
    "--checkpoint_interval", type=interval, default=2000, help="env steps between checkpoints"
)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
parser.add_argument(
    "--num_threads",
    type=positive_int,
    default=1,
    help="torch threads; small nets step fastest on one",
)
args = parser.parse_args()
torch.set_num_threads(args.num_threads)

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

run = logger.Run(
    args.resume or args.log,
    args.max_steps,
    args.env_name,
    args.eval_interval or None,
    solve_return,
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
    checkpoint_interval=args.checkpoint_interval or None,
)
state = dict(sampler=sampler, qf=qf, targ_qf=targ_qf, optim_qf=optim_qf, off_traj=off_traj)
with run:
    run.restore(**state)
    while not run.done:
        frac = min(run.total_step / max(args.explore_steps, 1), 1.0)
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

        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            # the policy's only parameters are the Q function's
            models=dict(pol=pol, qf=qf),
            checkpoint=state,
        )
sampler.close()
