"""Deep deterministic policy gradient on any gymnasium task with a Box action space.

    python example/run_ddpg.py --env_name Pendulum-v1 --log runs/ddpg_pendulum
    python example/run_ddpg.py --prioritized --mode rank_based --nstep 3   # prioritised replay

Each iteration samples ``--steps_per_iter`` env steps with exploration noise into a bounded
replay ``Traj`` and takes as many DDPG gradient steps on random batches of it. With
``--prioritized`` (``run_prioritized_ddpg.py`` is this script with it) the new episodes get
the replay memory's highest priority (optionally as n-step transitions), batches are drawn by
priority and each writes its TD errors back as priorities (Schaul et al., 2016,
arXiv:1511.05952). Trains until a
deterministic evaluation reaches ``--solve_return`` or ``--max_steps`` env steps pass, and
writes progress.csv, TensorBoard events, learning_curve.png and the trained networks (models/)
into ``--log``.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(``machina.checkpoint``: networks, targets, optimisers, the replay ``Traj``, the noise, the
global RNGs and the counters). A stopped run continues from its newest checkpoint, with the
same other arguments (``--max_steps`` may grow)::

    python example/run_ddpg.py --resume runs/ddpg_pendulum

progress.csv is continued from that checkpoint's row. The sampler's environment and policy RNGs
and the Ornstein-Uhlenbeck noise process's state are saved too, so the run continues bit for
bit.
"""

import argparse
import copy

import torch
from flags import interval, nonneg_float, polyak_rate, positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import ddpg, prioritized_ddpg
from machina.envs import GymEnv
from machina.nets import PolNet, QNet
from machina.noise import GaussianActionNoise, OUActionNoise
from machina.pols import DeterministicActionNoisePol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import DeterministicSAVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="any gymnasium id, Box actions")
parser.add_argument("--log", default="runs/ddpg", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--noise",
    choices=["ou", "gaussian"],
    default="ou",
    help="Ornstein-Uhlenbeck (the DDPG paper's) or independent Gaussian noise",
)
parser.add_argument(
    "--noise_scale",
    type=nonneg_float,
    default=None,
    help="OU sigma (default 0.2) or Gaussian std (default 0.1), in [-1, 1] units",
)
parser.add_argument("--num_envs", type=positive_int, default=1, help="environments sampled at once")
parser.add_argument("--max_steps", type=positive_int, default=20_000, help="env-step budget")
parser.add_argument(
    "--steps_per_iter", type=positive_int, default=200, help="env steps per iteration"
)
parser.add_argument(
    "--replay_size", type=positive_int, default=1_000_000, help="replay Traj max_steps"
)
parser.add_argument("--batch_size", type=positive_int, default=256)
parser.add_argument("--pol_lr", type=positive_float, default=1e-3)
parser.add_argument("--qf_lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument("--tau", type=polyak_rate, default=0.005, help="target Polyak rate")
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument(
    "--prioritized", action="store_true", help="prioritised replay (the flags below)"
)
parser.add_argument(
    "--mode", choices=["proportional", "rank_based"], default="proportional", help="priorities"
)
parser.add_argument("--alpha", type=nonneg_float, default=0.6, help="priority exponent")
parser.add_argument("--init_beta", type=unit_interval, default=0.4, help="first IS-weight exponent")
parser.add_argument(
    "--beta_step", type=nonneg_float, default=1e-4, help="IS exponent step per batch"
)
parser.add_argument("--nstep", type=positive_int, default=1, help="n-step targets when > 1")
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
if args.nstep > 1 and not args.prioritized:
    parser.error(
        f"--nstep: n-step targets need --prioritized (prioritized_ddpg), given {args.nstep}"
    )
torch.set_num_threads(args.num_threads)

torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
ob_space, ac_space = env.observation_space, env.action_space

if args.noise == "ou":
    noise = OUActionNoise(ac_space, sigma=0.2 if args.noise_scale is None else args.noise_scale)
else:
    noise = GaussianActionNoise(ac_space, std=0.1 if args.noise_scale is None else args.noise_scale)
pol_net = PolNet(ob_space, ac_space, args.h_size, args.h_size, deterministic=True)
pol = DeterministicActionNoisePol(ob_space, ac_space, pol_net, noise=noise)
qf = DeterministicSAVfunc(ob_space, ac_space, QNet(ob_space, ac_space, args.h_size, args.h_size))
targ_pol, targ_qf = copy.deepcopy(pol), copy.deepcopy(qf)
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
optim_qf = torch.optim.Adam(qf.parameters(), args.qf_lr)
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
state = dict(
    sampler=sampler,
    pol=pol,
    qf=qf,
    targ_pol=targ_pol,
    targ_qf=targ_qf,
    optim_pol=optim_pol,
    optim_qf=optim_qf,
    off_traj=off_traj,
    noise=noise,  # the Ornstein-Uhlenbeck process's state (Gaussian noise has none)
)
with run:
    run.restore(**state)
    while not run.done:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        if args.prioritized:
            traj = ef.set_all_pris(traj, off_traj.get_max_pri())
            if args.nstep > 1:
                traj = ef.compute_nstep(traj, args.gamma, args.nstep)
        traj.register_epis()
        off_traj.add_traj(traj)

        common = dict(
            epoch=traj.num_step,
            batch_size=min(args.batch_size, off_traj.num_step),
            tau=args.tau,
            gamma=args.gamma,
            log_enable=False,
        )
        if args.prioritized:
            result_dict = prioritized_ddpg.train(
                off_traj,
                pol,
                targ_pol,
                qf,
                targ_qf,
                optim_pol,
                optim_qf,
                mode=args.mode,
                alpha=args.alpha,
                init_beta=args.init_beta,
                beta_step=args.beta_step,
                nstep=args.nstep > 1,
                **common,
            )
        else:
            result_dict = ddpg.train(
                off_traj, pol, qf, targ_pol, targ_qf, optim_pol, optim_qf, **common
            )
        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol, qf=qf),
            checkpoint=state,
        )
sampler.close()
