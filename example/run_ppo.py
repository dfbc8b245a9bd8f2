"""Proximal policy optimisation on any gymnasium task.

    python example/run_ppo.py --env_name CartPole-v1 --log runs/ppo_cartpole

Trains until a deterministic evaluation reaches ``--solve_return`` (CartPole-v1: 475) or
``--max_steps`` env steps pass, and writes progress.csv, TensorBoard events,
learning_curve.png, the settings (args.json) and the trained policy (models/pol_last.pt) into
``--log``.

Settings: a task with an entry in ``example/hyperparams.py`` (the PyBullet locomotion tasks)
starts from that entry's known-good settings, and every flag given overrides it; the script
prints which it uses. ``--normalize_ob`` / ``--normalize_rew`` normalise observations and
rewards with running statistics (``machina.prepro``), saved with the run in
models/prepro_last.pt and models/rew_norm_last.pt::

    python example/run_ppo.py --env_name HopperBulletEnv-v0 --log runs/ppo_hopper

For tuning a Gaussian policy's exploration and schedule: ``--log_std_init`` (the initial
log-std, default the net's -1), ``--anneal_lr`` and ``--anneal_clip`` (linear decay to 0
over ``--max_steps``, computed from the step count so a resumed run continues them),
``--minibatch_norm_advs`` (advantages standardised per minibatch, as stable-baselines3),
``--joint_step`` (one optimiser and one gradient clip over both networks, as
stable-baselines3; ``--adam_eps``, Adam's epsilon), ``--no-squash_mean`` (a linear Gaussian
mean, the actions clipped to the bounds, as stable-baselines3, instead of machina's
tanh-bounded mean).
``--sde_sample_freq N`` explores with gSDE instead (``machina.pols.GaussianSDEPol``: noise
that is a function of the state, its matrix redrawn every N steps; initial log-std -2;
``--sde_per_env_noise``: one matrix per environment, as stable-baselines3)::

    python example/run_ppo.py --env_name HopperBulletEnv-v0 --sde_sample_freq 4

Every iteration ends with a checkpoint of the whole run in ``--log`` (``machina.checkpoint``:
networks, optimisers, sampler and prepro state, RNGs, counters; no pickle, atomic);
``--resume RUN_DIR`` continues a stopped run from it, bit for bit, with the same other flags.

``--sampler_backend ray`` samples with Ray actors (``--num_parallel`` of them) instead of
worker processes: on a local Ray instance the sampler starts and stops, or on the cluster
that ``RAY_ADDRESS`` names::

    RAY_ADDRESS=HEAD_IP:6379 python example/run_ppo.py --sampler_backend ray --num_parallel 16

Evaluations (``--eval_epis`` deterministic episodes) follow every iteration by default; on
tasks with long episodes they can cost more than the training (5 HalfCheetah episodes are
5,000 env steps against a 2,000-step iteration), so ``--eval_interval N`` evaluates once
every N env steps instead (the PyBullet entries: 25,000).
"""

import argparse
import os

import gymnasium as gym
import hyperparams
import torch
from flags import interval, nonneg_float, nonneg_int, positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import ppo_clip, ppo_kl
from machina.envs import C2DEnv, GymEnv
from machina.nets import HIDDEN_ACTIVATIONS
from machina.pols import make_pol
from machina.prepro import BasePrePro, RewardNormalizer
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id")
parser.add_argument("--log", default="runs/ppo", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--ppo_type", choices=["clip", "kl"], default="clip")
parser.add_argument("--rnn", action="store_true", help="LSTM policy and value function")
parser.add_argument("--c2d", action="store_true", help="discretise a continuous action space")
parser.add_argument("--num_parallel", type=positive_int, default=1, help="sampler worker processes")
parser.add_argument(
    "--sampler_backend",
    choices=["process", "ray"],
    default="process",
    help="the sampler's workers: local processes, or Ray actors (a local Ray instance, or the "
    "cluster at RAY_ADDRESS)",
)
parser.add_argument(
    "--num_envs",
    type=positive_int,
    default=4,
    help="environments per worker; each finishes its episode, so fewer make smaller iterations",
)
parser.add_argument("--max_steps", type=positive_int, default=200_000, help="env-step budget")
parser.add_argument("--steps_per_iter", type=positive_int, default=512)
parser.add_argument("--epoch_per_iter", type=positive_int, default=20)
parser.add_argument("--batch_size", type=positive_int, default=512, help="steps per minibatch")
parser.add_argument(
    "--max_minibatches",
    type=nonneg_int,
    default=2,
    help="per epoch (0: no cap); bigger iterations get bigger minibatches instead",
)
parser.add_argument("--rnn_batch_size", type=positive_int, default=8, help="sequences per batch")
parser.add_argument("--pol_lr", type=positive_float, default=3e-3)
parser.add_argument("--vf_lr", type=positive_float, default=1e-2)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument(
    "--vf_h_size", type=positive_int, default=None, help="the value network's (default: --h_size)"
)
parser.add_argument(
    "--activation",
    choices=sorted(HIDDEN_ACTIVATIONS),
    default="relu",
    help="hidden activation of both feed-forward networks",
)
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument(
    "--lam",
    type=unit_interval,
    default=0.97,
    help="GAE lambda, also of the value targets (TD(lambda))",
)
parser.add_argument("--clip_param", type=positive_float, default=0.2)
parser.add_argument("--ent_beta", type=float, default=0.0)
parser.add_argument("--max_grad_norm", type=positive_float, default=0.5)
parser.add_argument("--kl_targ", type=positive_float, default=0.01)
parser.add_argument("--init_kl_beta", type=positive_float, default=1.0)
parser.add_argument("--eval_epis", type=positive_int, default=10, help="episodes per evaluation")
parser.add_argument(
    "--eval_interval",
    type=interval,
    default=0,
    help="env steps between evaluations (0: after every iteration); the last iteration "
    "always evaluates",
)
parser.add_argument("--solve_return", type=float, default=None, help="stop at this eval return")
parser.add_argument(
    "--num_threads",
    type=positive_int,
    default=1,
    help="torch threads; small networks run fastest on one, above all on a busy machine",
)
parser.add_argument(
    "--normalize_ob",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="normalise observations by their running mean and std (machina.prepro.BasePrePro)",
)
parser.add_argument(
    "--normalize_rew",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="scale rewards by the running std of discounted returns (RewardNormalizer)",
)
parser.add_argument("--ob_clip", type=positive_float, default=10.0, help="bound of normalised obs")
parser.add_argument(
    "--log_std_init",
    type=float,
    default=None,
    help="initial log-std of the Gaussian policy (default: the net's own, -1)",
)
parser.add_argument(
    "--sde_sample_freq",
    type=int,
    default=None,
    help="explore with gSDE, the exploration matrix redrawn every N steps (-1: once per "
    "sample call; 0: plain Gaussian noise, which turns off an entry's gSDE); default: plain "
    "Gaussian noise",
)
parser.add_argument(
    "--sde_per_env_noise",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="gSDE: one exploration matrix per environment (stable-baselines3's) instead of one "
    "shared by all",
)
parser.add_argument(
    "--squash_mean",
    action=argparse.BooleanOptionalAction,
    default=True,
    help="Gaussian mean through tanh into the bounds (machina's default); --no-squash_mean: "
    "a linear mean, actions clipped to the bounds (stable-baselines3's)",
)
parser.add_argument(
    "--anneal_lr",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="decay both learning rates linearly to 0 over --max_steps (CleanRL's anneal_lr)",
)
parser.add_argument(
    "--anneal_clip",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="decay --clip_param linearly to 0 over --max_steps (rl-zoo's lin_ clip_range)",
)
parser.add_argument(
    "--minibatch_norm_advs",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="standardise the advantages within each minibatch too (stable-baselines3's "
    "normalize_advantage), not only over the iteration's batch",
)
parser.add_argument(
    "--joint_step",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="one Adam over both networks at --pol_lr, one step and one gradient clip per "
    "minibatch on the policy loss + 0.5 MSE (stable-baselines3's form; --vf_lr unused)",
)
parser.add_argument(
    "--adam_eps",
    type=nonneg_float,
    default=1e-8,
    help="Adam's epsilon (torch's default 1e-8; stable-baselines3's PPO uses 1e-5)",
)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = hyperparams.parse_args(parser, "ppo")
if args.resume:
    args.log = args.resume

torch.set_num_threads(args.num_threads)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
if args.c2d:
    env = C2DEnv(env)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold

if args.sde_sample_freq == 0:
    args.sde_sample_freq = None
if args.rnn and args.activation != "relu":
    parser.error(
        f"--activation: the LSTM nets (--rnn) have their own (ReLU), given {args.activation}"
    )
for flag in ("log_std_init", "sde_sample_freq"):
    if getattr(args, flag) is not None and not isinstance(env.action_space, gym.spaces.Box):
        raise SystemExit(
            f"--{flag}: expected a Gaussian policy (a Box action space, no --c2d), given "
            f"{env.action_space}"
        )
if args.joint_step and args.ppo_type != "clip":
    parser.error("--joint_step: needs --ppo_type clip")
pol = make_pol(
    env.observation_space,
    env.action_space,
    rnn=args.rnn,
    h_size=args.h_size,
    log_std_init=args.log_std_init,
    sde_sample_freq=args.sde_sample_freq,
    squash_mean=args.squash_mean,
    sde_per_env_noise=args.sde_per_env_noise,
    activation=args.activation,
)
vf = make_vf(
    env.observation_space,
    rnn=args.rnn,
    h_size=args.vf_h_size or args.h_size,
    activation=args.activation,
)
# stable-baselines3's form with --joint_step: one optimiser over both nets at --pol_lr
optim_pol, optim_vf = ppo_clip.make_optims(
    pol, vf, args.pol_lr, args.vf_lr, joint_step=args.joint_step, eps=args.adam_eps
)
lr_schedules = [(optim_pol, args.pol_lr)]
if optim_vf is not optim_pol:
    lr_schedules.append((optim_vf, args.vf_lr))
# The prepro travels to the sampler's workers with the policy at every sample call.
prepro = BasePrePro(env.observation_space, clip=args.ob_clip) if args.normalize_ob else None
rew_norm = RewardNormalizer(args.gamma) if args.normalize_rew else None
# made after the nets: a flag they refuse (--sde_sample_freq -5) leaves the folder alone
run = logger.Run(
    args.log,
    args.max_steps,
    args.env_name,
    eval_interval=args.eval_interval or None,
    solve_return=solve_return,
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
)
sampler = EpiSampler(
    env,
    pol,
    num_parallel=args.num_parallel,
    num_envs=args.num_envs,
    seed=args.seed,
    prepro=prepro,
    backend=args.sampler_backend,
)

# ppo_kl's adaptive penalty is run state too: a tensor, so the checkpoint holds it exactly.
kl_beta = torch.tensor(args.init_kl_beta, dtype=torch.float64)
run_state = dict(pol=pol, vf=vf, optim_pol=optim_pol, optim_vf=optim_vf, sampler=sampler,
                 kl_beta=kl_beta)  # fmt: skip
norms = {k: v for k, v in (("prepro", prepro), ("rew_norm", rew_norm)) if v is not None}
run_state.update(norms)
args_json: str | None = os.path.join(args.log, "args.json")
with run:
    run.restore(**run_state)
    while not run.done:
        # Linear schedules from the step count, so a resumed run continues them exactly.
        remaining = 1.0 - run.total_step / args.max_steps
        if args.anneal_lr:
            hyperparams.scale_lrs(lr_schedules, remaining)
        clip_param = args.clip_param * (remaining if args.anneal_clip else 1.0)
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        train_epis = epis
        if prepro is not None:
            prepro.update_with_epis(epis)  # raw observations, kept by the sampler
        if rew_norm is not None:
            rew_norm.update_with_epis(epis)
            train_epis = rew_norm.normalize_epis(epis)  # epis keep the raw rewards

        traj = Traj()
        traj.add_epis(train_epis)
        traj = ef.compute_vs(traj, vf)
        traj = ef.compute_rets(traj, args.gamma, args.lam)  # TD(lambda) value targets
        traj = ef.compute_advs(traj, args.gamma, args.lam)
        traj = ef.centerize_advs(traj)
        traj = ef.compute_h_masks(traj)
        traj.register_epis()

        if args.rnn:
            batch_size = min(args.rnn_batch_size, traj.num_epi)
        else:
            # Whole episodes make iterations grow as the policy improves; past
            # max_minibatches * batch_size steps the minibatches grow, not their number.
            batch_size = args.batch_size
            if args.max_minibatches > 0:
                batch_size = max(batch_size, -(-traj.num_step // args.max_minibatches))
            batch_size = min(batch_size, traj.num_step)
        if args.ppo_type == "clip":
            result_dict = ppo_clip.train(
                traj=traj,
                pol=pol,
                vf=vf,
                optim_pol=optim_pol,
                optim_vf=optim_vf,
                epoch=args.epoch_per_iter,
                batch_size=batch_size,
                clip_param=clip_param,
                ent_beta=args.ent_beta,
                max_grad_norm=args.max_grad_norm,
                log_enable=False,
                minibatch_norm_advs=args.minibatch_norm_advs,
                joint_step=args.joint_step,
            )
        else:
            result_dict = ppo_kl.train(
                traj=traj,
                pol=pol,
                vf=vf,
                kl_beta=float(kl_beta),
                kl_targ=args.kl_targ,
                optim_pol=optim_pol,
                optim_vf=optim_vf,
                epoch=args.epoch_per_iter,
                batch_size=batch_size,
                max_grad_norm=args.max_grad_norm,
                log_enable=False,
                minibatch_norm_advs=args.minibatch_norm_advs,
            )
            kl_beta.fill_(result_dict["new_kl_beta"])

        run.record(
            epis,  # raw rewards
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol, vf=vf, **norms),  # the normalisers' states are tensors
            num_step=traj.num_step,
            checkpoint=run_state,
        )
        if args_json is not None:
            # The run's settings, for take_movie.py and whoever reads the run later: written
            # at this call's first row, once that row replaced an older run in the folder (a
            # call that stops on a bad flag or setting before leaves that run whole).
            logger.log_parameters_lite(args_json, args)
            args_json = None
sampler.close()
