"""QT-Opt on Pendulum-v1 (or any task with a one-dimensional Box action space).

    python example/run_qtopt.py --log runs/qtopt_pendulum

No policy network: the policy acts greedily with respect to the Q function, maximised over
continuous actions by the cross-entropy method (``ArgmaxQfPol`` over a
``CEMDeterministicSAVfunc``), with probability ``--eps`` of a uniformly random action. The
Q function learns by clipped double Q-learning against two targets, one following it and one
following a lagged copy refreshed every ``--lag`` gradient steps. Each iteration samples
``--steps_per_iter`` env steps into a bounded replay ``Traj`` and takes as many gradient steps.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(the Q function, its lagged copy and targets, the optimiser, the replay ``Traj``, the
sampler's RNGs, the global RNGs and the gradient-step counters). A stopped run continues bit
for bit from its newest checkpoint, with the same other arguments (``--max_steps`` may grow)::

    python example/run_qtopt.py --resume runs/qtopt_pendulum
"""

import argparse
import copy

import torch
from flags import interval, polyak_rate, positive_float, positive_int, probability, unit_interval

from machina import logger
from machina.algos import qtopt
from machina.envs import GymEnv
from machina.nets import QNet
from machina.pols import ArgmaxQfPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.vfuncs import CEMDeterministicSAVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="any gymnasium id, Box actions")
parser.add_argument("--log", default="runs/qtopt", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--max_steps", type=positive_int, default=20_000, help="env-step budget")
parser.add_argument(
    "--steps_per_iter", type=positive_int, default=200, help="env steps per iteration"
)
parser.add_argument(
    "--replay_size", type=positive_int, default=1_000_000, help="replay Traj max_steps"
)
parser.add_argument("--batch_size", type=positive_int, default=128)
parser.add_argument("--qf_lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=32, help="hidden units per layer")
parser.add_argument("--tau", type=polyak_rate, default=0.005, help="target Polyak rate")
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument(
    "--lag", type=interval, default=1000, help="gradient steps between lagged copies"
)
parser.add_argument("--eps", type=probability, default=0.2, help="probability of a random action")
parser.add_argument("--num_sampling", type=positive_int, default=32, help="CEM actions per round")
parser.add_argument("--num_best_sampling", type=positive_int, default=4, help="CEM elite actions")
parser.add_argument("--num_iter", type=positive_int, default=1, help="CEM refits")
parser.add_argument("--loss_type", choices=["mse", "bce"], default="mse")
parser.add_argument(
    "--eval_interval",
    type=interval,
    default=2000,
    help="env steps between evals (0: every iteration)",
)
parser.add_argument("--eval_epis", type=positive_int, default=10, help="episodes per evaluation")
parser.add_argument("--solve_return", type=float, default=None, help="stop at this eval return")
parser.add_argument(
    "--num_threads",
    type=positive_int,
    default=1,
    help="torch threads; small nets step fastest on one",
)
parser.add_argument(
    "--checkpoint_interval", type=interval, default=2000, help="env steps between checkpoints"
)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()
torch.set_num_threads(args.num_threads)

torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
ob_space, ac_space = env.observation_space, env.action_space

# One CEM search setting for acting and for the targets' argmax (a diagonal Gaussian: 1-D
# actions gain nothing from a full covariance).
cem = dict(
    num_sampling=args.num_sampling,
    num_best_sampling=args.num_best_sampling,
    num_iter=args.num_iter,
    multivari=False,
)
qf = CEMDeterministicSAVfunc(
    ob_space, ac_space, QNet(ob_space, ac_space, args.h_size, args.h_size), **cem
)
lagged_qf = copy.deepcopy(qf)
targ_qf1 = copy.deepcopy(qf)
targ_qf2 = copy.deepcopy(qf)
pol = ArgmaxQfPol(ob_space, ac_space, qf, eps=args.eps)
optim_qf = torch.optim.Adam(qf.parameters(), args.qf_lr)
sampler = EpiSampler(env, pol, seed=args.seed)
off_traj = Traj(max_steps=args.replay_size)

# gradient steps taken, and the count at which the lagged copy is next refreshed
grad_steps = torch.tensor([0, args.lag], dtype=torch.int64)
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
state = dict(qf=qf, lagged_qf=lagged_qf, targ_qf1=targ_qf1, targ_qf2=targ_qf2)
state.update(optim_qf=optim_qf, off_traj=off_traj, sampler=sampler, grad_steps=grad_steps)
with run:
    run.restore(**state)
    while not run.done:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        traj.register_epis()
        off_traj.add_traj(traj)

        result_dict = qtopt.train(
            off_traj,
            qf,
            lagged_qf,
            targ_qf1,
            targ_qf2,
            optim_qf,
            epoch=traj.num_step,
            batch_size=min(args.batch_size, off_traj.num_step),
            tau=args.tau,
            gamma=args.gamma,
            loss_type=args.loss_type,
            log_enable=False,
        )
        grad_steps[0] += result_dict.pop("grad_step")
        if grad_steps[0] >= grad_steps[1]:
            grad_steps[1] += args.lag
            lagged_qf.load_state_dict(qf.state_dict())

        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol, qf=qf, lagged_qf=lagged_qf),
            checkpoint=state,
        )

sampler.close()
