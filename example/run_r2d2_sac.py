"""Recurrent SAC on prioritised sequence replay (R2D2-SAC), any task with a Box action space.

    python example/run_r2d2_sac.py --env_name Pendulum-v1 --log runs/r2d2_sac_pendulum

An LSTM policy and twin LSTM Q functions. Each iteration samples ``--steps_per_iter`` env steps,
gives the new episodes the replay memory's highest priority and scores their windows of
``--seq_length`` steps, adds them to a bounded replay ``Traj`` and takes ``--updates_per_iter``
gradient steps on batches of windows drawn by priority, the first ``--burn_in_length`` steps of
each only warming up the recurrent state. ``--hide_velocity`` drops the observation's last
component (Pendulum's angular velocity), a partially observed task that needs the memory.
Trains until a deterministic evaluation reaches ``--solve_return`` or ``--max_steps`` env steps
pass, and writes progress.csv, TensorBoard events, learning_curve.png and the trained networks
(models/) into ``--log``.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(``machina.checkpoint``); ``--resume RUN_DIR`` continues a stopped run from its newest
checkpoint, with the same other arguments (see run_ddpg.py).
"""

import argparse
import copy

import gymnasium as gym
import torch
from flags import interval, polyak_rate, positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import r2d2_sac
from machina.envs import GymEnv
from machina.nets import PolNetLSTM, QNetLSTM
from machina.pols import TanhGaussianPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import DeterministicSAVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="any gymnasium id, Box actions")
parser.add_argument("--log", default="runs/r2d2_sac", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--hide_velocity", action="store_true", help="drop the last obs component")
parser.add_argument("--num_envs", type=positive_int, default=1, help="environments sampled at once")
parser.add_argument("--max_steps", type=positive_int, default=20_000, help="env-step budget")
parser.add_argument(
    "--steps_per_iter", type=positive_int, default=200, help="env steps per iteration"
)
parser.add_argument(
    "--replay_size", type=positive_int, default=1_000_000, help="replay Traj max_steps"
)
parser.add_argument("--batch_size", type=positive_int, default=32, help="windows per batch")
parser.add_argument(
    "--seq_length", type=positive_int, default=20, help="window length, burn-in included"
)
parser.add_argument("--burn_in_length", type=int, default=5, help="state warm-up steps")
parser.add_argument(
    "--updates_per_iter", type=positive_int, default=50, help="gradient steps per iter"
)
parser.add_argument("--pol_lr", type=positive_float, default=1e-3)
parser.add_argument("--qf_lr", type=positive_float, default=1e-3)
parser.add_argument("--alpha_lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument("--cell_size", type=positive_int, default=64, help="LSTM units")
parser.add_argument("--tau", type=polyak_rate, default=0.005, help="target Polyak rate")
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument("--sampling", type=positive_int, default=1, help="actions drawn per state")
parser.add_argument(
    "--mode", choices=["proportional", "rank_based"], default="proportional", help="priorities"
)
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
if not 0 <= args.burn_in_length < args.seq_length:  # before anything is built
    parser.error(
        f"argument --burn_in_length: expected an integer in [0, --seq_length={args.seq_length})"
        f", got {args.burn_in_length}"
    )
torch.set_num_threads(args.num_threads)


torch.manual_seed(args.seed)

if args.hide_velocity:
    base = gym.make(args.env_name)
    space = base.observation_space
    low, high = space.low[:-1], space.high[:-1]
    env = GymEnv(
        gym.wrappers.TransformObservation(
            base, lambda ob: ob[:-1], gym.spaces.Box(low, high, dtype=space.dtype)
        )
    )
else:
    env = GymEnv(args.env_name)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
ob_space, ac_space = env.observation_space, env.action_space

pol_net = PolNetLSTM(ob_space, ac_space, args.h_size, args.cell_size)
pol = TanhGaussianPol(ob_space, ac_space, pol_net, rnn=True)
qfs = [
    DeterministicSAVfunc(
        ob_space, ac_space, QNetLSTM(ob_space, ac_space, args.h_size, args.cell_size), rnn=True
    )
    for _ in range(2)
]
targ_qfs = [copy.deepcopy(qf) for qf in qfs]
log_alpha = torch.zeros((), requires_grad=True)
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
optim_qfs = [torch.optim.Adam(qf.parameters(), args.qf_lr) for qf in qfs]
optim_alpha = torch.optim.Adam([log_alpha], args.alpha_lr)
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
    qf1=qfs[0],
    qf2=qfs[1],
    targ_qf1=targ_qfs[0],
    targ_qf2=targ_qfs[1],
    log_alpha=log_alpha,
    optim_pol=optim_pol,
    optim_qf1=optim_qfs[0],
    optim_qf2=optim_qfs[1],
    optim_alpha=optim_alpha,
    off_traj=off_traj,
)
with run:
    run.restore(**state)
    while not run.done:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        traj = ef.set_all_pris(traj, off_traj.get_max_pri())
        traj = ef.compute_seq_pris(traj, args.seq_length)
        traj.register_epis()
        off_traj.add_traj(traj)

        result_dict = r2d2_sac.train(
            off_traj,
            pol,
            qfs,
            targ_qfs,
            log_alpha,
            optim_pol,
            optim_qfs,
            optim_alpha,
            epoch=args.updates_per_iter,
            batch_size=min(args.batch_size, off_traj.num_step),
            seq_length=args.seq_length,
            burn_in_length=args.burn_in_length,
            tau=args.tau,
            gamma=args.gamma,
            sampling=args.sampling,
            log_enable=False,
            mode=args.mode,
        )

        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol, qf1=qfs[0], qf2=qfs[1], log_alpha=log_alpha),
            checkpoint=state,
        )

sampler.close()
