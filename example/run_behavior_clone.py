"""Behaviour cloning from saved expert episodes.

    python example/make_expert_epis.py --deterministic \\
        --pol_path runs/ppo_cartpole/models/pol_last.pt
    python example/run_behavior_clone.py --expert_path runs/expert_epis/CartPole-v1_100epis.npz

Fits the policy to the expert's actions on ``--train_size`` of the episodes, reports the
likelihood loss on the rest (``TestPolLossAverage``) and the return of a deterministic
evaluation every ``--eval_interval`` epochs; writes progress.csv, TensorBoard events,
learning_curve.png (of ``EvalReturn``) and models/pol_last.pt into ``--log``.

Each epoch the whole run is saved in ``--log`` (``machina.checkpoint``); ``--resume RUN_DIR``
continues a stopped run from its newest checkpoint, with the same other arguments (see
run_ddpg.py).
"""

import argparse

import numpy as np
import torch
from flags import interval, positive_float, positive_int

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
parser.add_argument(
    "--epoch", type=positive_int, default=50, help="passes over the training episodes"
)
parser.add_argument("--batch_size", type=positive_int, default=256)
parser.add_argument("--pol_lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument(
    "--eval_interval", type=interval, default=10, help="epochs between evaluations (0: every epoch)"
)
parser.add_argument("--eval_epis", type=positive_int, default=10, help="episodes per evaluation")
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()

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
if not train_epis or not test_epis:  # register_epis failed on an empty side, unnamed
    side = "training" if not train_epis else "the held-out test loss"
    parser.error(
        f"--train_size {args.train_size}: of the {len(expert_epis)} episodes in "
        f"--expert_path, none is left for {side}; keep both sides non-empty"
    )
train_traj = Traj()
train_traj.add_epis(train_epis)
train_traj.register_epis()
test_traj = Traj()
test_traj.add_epis(test_epis)
test_traj.register_epis()
expert_return = float(np.mean([np.sum(epi["rews"]) for epi in expert_epis]))
print(f"expert return {expert_return:.1f} ({train_traj.num_epi} episodes for training)")

run = logger.Run(
    args.resume or args.log,
    args.epoch,
    args.env_name,
    args.eval_interval or None,
    unit="iteration",
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
    resumable=("epoch", "expert_path"),  # the budget; the same data may be moved
)


# the batch order and the evaluation sampler carry RNG state too: the training Traj's
# generator is saved, not its columns (the expert file's)
state = dict(pol=pol, optim_pol=optim_pol, batch_order=train_traj.generator, sampler=sampler)
with run:
    run.restore(**state)
    while not run.done:
        result_dict = behavior_clone.train(train_traj, pol, optim_pol, args.batch_size)
        result_dict.update(behavior_clone.test(test_traj, pol))
        result_dict["ExpertReturn"] = expert_return
        run.record(
            [],  # no episodes sampled for training: the learning curve shows EvalReturn
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol),
            num_step=train_traj.num_step,
            checkpoint=state,
        )

sampler.close()
