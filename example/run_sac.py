"""Soft actor-critic on any gymnasium task with a Box action space.

    python example/run_sac.py --env_name Pendulum-v1 --log runs/sac_pendulum

Each iteration samples ``--steps_per_iter`` env steps into a bounded replay ``Traj`` and takes
as many SAC gradient steps on random batches of it. Trains until a deterministic evaluation
reaches ``--solve_return`` or ``--max_steps`` env steps pass, and writes progress.csv,
TensorBoard events, learning_curve.png and the trained networks (models/) into ``--log``.

``--state_std`` gives the policy a state-dependent log-std (``PolNet(state_std=True)``, the
SAC paper's and stable-baselines3's policy) instead of one learned vector;
``--sde_sample_freq N`` explores with gSDE instead (``TanhGaussianSDEPol``: noise that is a
function of the state, its matrix redrawn every N steps; stable-baselines3's ``use_sde``,
initial log-std ``--log_std_init``). ``--anneal_lr``
decays the three learning rates linearly to 0 over ``--max_steps`` (rl-baselines3-zoo's
``lin_`` schedule), from the step count, so a resumed run continues it.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(``machina.checkpoint``: networks, targets, optimisers, temperature, replay, sampler state,
RNGs, counters; no pickle, atomic): the replay makes a checkpoint large (about 40 MB at 1e6
steps of a small task), so not every iteration. ``--resume RUN_DIR`` continues a stopped run
from its newest checkpoint, bit for bit, with the same other flags; progress.csv is continued
from that checkpoint's row.
"""

import argparse
import copy

import hyperparams
import torch
from flags import interval, nonneg_int, polyak_rate, positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import sac
from machina.envs import GymEnv
from machina.nets import PolNet, QNet, SDEPolNet
from machina.pols import GaussianPol, RandomPol, TanhGaussianPol, TanhGaussianSDEPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.vfuncs import DeterministicSAVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="any gymnasium id, Box actions")
parser.add_argument("--log", default="runs/sac", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--pol",
    choices=["tanh", "gaussian"],
    default="tanh",
    help="tanh-squashed Gaussian, or a Gaussian clipped by the environment",
)
parser.add_argument(
    "--state_std",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="the policy's log-std a function of the state (SAC's), not one learned vector",
)
parser.add_argument(
    "--sde_sample_freq",
    type=nonneg_int,
    default=0,
    help="a gSDE policy (TanhGaussianSDEPol), its noise redrawn every N steps; 0: not",
)
parser.add_argument(
    "--log_std_init", type=float, default=None, help="the gSDE policy's initial log-std (-3)"
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
parser.add_argument("--alpha_lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument("--tau", type=polyak_rate, default=0.005, help="target Polyak rate")
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument("--sampling", type=positive_int, default=1, help="actions drawn per state")
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
    "--random_steps",
    type=nonneg_int,
    default=0,
    help="env steps of uniformly random actions before the first update (warm-up)",
)
parser.add_argument(
    "--anneal_lr",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="decay the three learning rates linearly to 0 over --max_steps (rl-zoo's lin_)",
)
parser.add_argument(
    "--checkpoint_interval", type=interval, default=2000, help="env steps between checkpoints"
)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = hyperparams.parse_args(parser, "sac")
torch.set_num_threads(args.num_threads)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
ob_space, ac_space = env.observation_space, env.action_space

if args.log_std_init is not None and not args.sde_sample_freq:
    parser.error("--log_std_init: the gSDE policy's (--sde_sample_freq N); the others start at -1")
if args.sde_sample_freq and (args.pol != "tanh" or args.state_std):
    parser.error("--sde_sample_freq: the gSDE policy is tanh-squashed, with its own noise; "
                 "not with --pol gaussian or --state_std")  # fmt: skip
if args.sde_sample_freq:
    pol = TanhGaussianSDEPol(
        ob_space,
        ac_space,
        SDEPolNet(ob_space, ac_space, args.h_size, args.h_size),
        log_std_init=-3.0 if args.log_std_init is None else args.log_std_init,
        sample_freq=args.sde_sample_freq,
    )
else:
    Pol = TanhGaussianPol if args.pol == "tanh" else GaussianPol
    pol_net = PolNet(ob_space, ac_space, args.h_size, args.h_size, state_std=args.state_std)
    pol = Pol(ob_space, ac_space, pol_net)
qfs = [
    DeterministicSAVfunc(ob_space, ac_space, QNet(ob_space, ac_space, args.h_size, args.h_size))
    for _ in range(2)
]
targ_qfs = [copy.deepcopy(qf) for qf in qfs]
log_alpha = torch.zeros((), requires_grad=True)
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
optim_qfs = [torch.optim.Adam(qf.parameters(), args.qf_lr) for qf in qfs]
optim_alpha = torch.optim.Adam([log_alpha], args.alpha_lr)
lr_schedules = [(optim_pol, args.pol_lr), (optim_alpha, args.alpha_lr)]
lr_schedules += [(optim, args.qf_lr) for optim in optim_qfs]
sampler = EpiSampler(env, pol, num_envs=args.num_envs, seed=args.seed)
random_pol = RandomPol(ob_space, ac_space, normalize_ac=pol.normalize_ac)  # acs as pol records them
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
state = dict(pol=pol, qf1=qfs[0], qf2=qfs[1], targ_qf1=targ_qfs[0], targ_qf2=targ_qfs[1])
state.update(log_alpha=log_alpha, optim_pol=optim_pol, optim_qf1=optim_qfs[0])
state.update(optim_qf2=optim_qfs[1], optim_alpha=optim_alpha, off_traj=off_traj, sampler=sampler)
with run:
    run.restore(**state)
    while not run.done:
        warm = run.total_step < args.random_steps
        epis = sampler.sample(random_pol if warm else pol, max_steps=args.steps_per_iter)
        traj = Traj()
        if args.random_steps > 0:
            # The random policy records no distribution parameters and the losses need
            # none: every episode in the replay keeps the same (empty) a_is.
            traj.add_epis([{**epi, "a_is": {}} for epi in epis])
        else:
            traj.add_epis(epis)
        traj.register_epis()
        off_traj.add_traj(traj)

        # One update per env step past the warm-up.
        n_updates = min(traj.num_step, run.total_step + traj.num_step - args.random_steps)
        result_dict = {}
        if n_updates > 0:
            if args.anneal_lr:
                # From the step count, so a resumed run continues the schedule exactly: the
                # rate at the middle of this batch's steps, which its updates stand for (at
                # its end, a budget of one batch would never learn); never negative when
                # whole episodes overshoot --max_steps.
                middle = run.total_step + traj.num_step / 2
                hyperparams.scale_lrs(lr_schedules, max(1.0 - middle / args.max_steps, 0.0))
            result_dict = sac.train(
                off_traj,
                pol,
                qfs,
                targ_qfs,
                log_alpha,
                optim_pol,
                optim_qfs,
                optim_alpha,
                epoch=n_updates,
                batch_size=min(args.batch_size, off_traj.num_step),
                tau=args.tau,
                gamma=args.gamma,
                sampling=args.sampling,
                log_enable=False,
            )
        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol, qf1=qfs[0], qf2=qfs[1], log_alpha=log_alpha),
            checkpoint=state,
        )
sampler.close()
