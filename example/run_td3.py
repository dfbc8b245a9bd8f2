"""Twin delayed DDPG (TD3) on any gymnasium task with a Box action space.

    python example/run_td3.py --env_name Pendulum-v1 --log runs/td3_pendulum

Each iteration samples ``--steps_per_iter`` env steps with Gaussian exploration noise into a
bounded replay ``Traj`` and takes as many TD3 gradient steps on random batches of it. Trains
until a deterministic evaluation reaches ``--solve_return`` or ``--max_steps`` env steps pass,
and writes progress.csv, TensorBoard events, learning_curve.png and the trained networks
(models/) into ``--log``.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(``machina.checkpoint``: networks, targets, optimisers, the replay ``Traj``, the sampler's
RNGs, the global RNGs and the counters). A stopped run continues bit for bit from its newest
checkpoint, with the same other arguments (``--max_steps`` may grow)::

    python example/run_td3.py --resume runs/td3_pendulum
"""

import argparse
import copy

import hyperparams
import torch
from flags import (
    interval,
    nonneg_float,
    nonneg_int,
    polyak_rate,
    positive_float,
    positive_int,
    unit_interval,
)

from machina import logger
from machina.algos import td3
from machina.envs import GymEnv
from machina.nets import PolNet, QNet
from machina.noise import GaussianActionNoise
from machina.pols import DeterministicActionNoisePol, RandomPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.vfuncs import DeterministicSAVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="any gymnasium id, Box actions")
parser.add_argument("--log", default="runs/td3", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--noise_std", type=nonneg_float, default=0.1, help="exploration, [-1, 1] units"
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
parser.add_argument("--pol_update_delay", type=positive_int, default=2)
parser.add_argument("--target_noise", type=nonneg_float, default=0.2)
parser.add_argument("--target_noise_clip", type=nonneg_float, default=0.5)
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
    "--checkpoint_interval", type=interval, default=2000, help="env steps between checkpoints"
)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = hyperparams.parse_args(parser, "td3")
torch.set_num_threads(args.num_threads)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
ob_space, ac_space = env.observation_space, env.action_space

pol_net = PolNet(ob_space, ac_space, args.h_size, args.h_size, deterministic=True)
noise = GaussianActionNoise(ac_space, std=args.noise_std)
pol = DeterministicActionNoisePol(ob_space, ac_space, pol_net, noise=noise)
qfs = [
    DeterministicSAVfunc(ob_space, ac_space, QNet(ob_space, ac_space, args.h_size, args.h_size))
    for _ in range(2)
]
targ_pol, targ_qfs = copy.deepcopy(pol), [copy.deepcopy(qf) for qf in qfs]
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
optim_qfs = [torch.optim.Adam(qf.parameters(), args.qf_lr) for qf in qfs]
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
state = dict(pol=pol, targ_pol=targ_pol, qf1=qfs[0], qf2=qfs[1], targ_qf1=targ_qfs[0])
state.update(targ_qf2=targ_qfs[1], optim_pol=optim_pol, optim_qf1=optim_qfs[0])
state.update(optim_qf2=optim_qfs[1], off_traj=off_traj, sampler=sampler)
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
            result_dict = td3.train(
                off_traj,
                pol,
                qfs,
                targ_pol,
                targ_qfs,
                optim_pol,
                optim_qfs,
                epoch=n_updates,
                batch_size=min(args.batch_size, off_traj.num_step),
                tau=args.tau,
                gamma=args.gamma,
                pol_update_delay=args.pol_update_delay,
                target_noise=args.target_noise,
                target_noise_clip=args.target_noise_clip,
                log_enable=False,
            )
        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol, qf1=qfs[0], qf2=qfs[1]),
            checkpoint=state,
        )
sampler.close()
