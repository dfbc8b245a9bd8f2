"""Meta-RL on two PyBullet tasks: one recurrent PPO policy, two samplers, one Traj.

    python example/run_mixed_env.py --log runs/mixed_env

HumanoidBulletEnv-v0 (walk forward) and HumanoidFlagrunBulletEnv-v0 (run to a moving flag)
share their robot, so their spaces match. Each is wrapped so the policy sees its previous
action (AcInObEnv) and reward (RewInObEnv), from which a recurrent policy can tell the tasks
apart (RL^2), and discretised (C2DEnv, a MultiCategorical policy). Each iteration samples
episodes from both tasks with their own sampler, estimates on each, puts both into one Traj
and takes one PPO step on it. Writes progress.csv, TensorBoard events, learning_curve.png
and models/pol_last.pt into ``--log``.

Each iteration the whole run is saved in ``--log`` (``machina.checkpoint``); ``--resume
RUN_DIR`` continues a stopped run from its newest checkpoint, with the same other arguments
(see run_ddpg.py).
"""

import argparse

import numpy as np
import torch
from flags import positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import ppo_clip
from machina.envs import C2DEnv, GymEnv
from machina.envs.ac_in_ob_env import AcInObEnv
from machina.envs.rew_in_ob_env import RewInObEnv
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument(
    "--env_names", nargs=2, default=["HumanoidBulletEnv-v0", "HumanoidFlagrunBulletEnv-v0"]
)
parser.add_argument("--log", default="runs/mixed_env", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--n_bins", type=positive_int, default=10, help="C2DEnv bins per action dimension"
)
parser.add_argument("--rnn", action=argparse.BooleanOptionalAction, default=True)
parser.add_argument(
    "--num_parallel", type=positive_int, default=1, help="worker processes per sampler"
)
parser.add_argument("--num_envs", type=positive_int, default=4, help="environments per worker")
parser.add_argument("--max_steps", type=positive_int, default=1_000_000, help="env-step budget")
parser.add_argument("--steps_per_iter", type=positive_int, default=4096, help="per task")
parser.add_argument("--epoch_per_iter", type=positive_int, default=10)
parser.add_argument("--batch_size", type=positive_int, default=256, help="steps per minibatch")
parser.add_argument("--rnn_batch_size", type=positive_int, default=8, help="sequences per batch")
parser.add_argument("--pol_lr", type=positive_float, default=3e-4)
parser.add_argument("--vf_lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument("--lam", type=unit_interval, default=0.95)
parser.add_argument("--clip_param", type=positive_float, default=0.2)
parser.add_argument("--max_grad_norm", type=positive_float, default=10.0)
parser.add_argument("--num_threads", type=positive_int, default=1, help="torch threads")
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()

torch.set_num_threads(args.num_threads)
torch.manual_seed(args.seed)


def make_env(env_name):
    env = GymEnv(env_name)
    env = AcInObEnv(env)
    env = RewInObEnv(env)
    return C2DEnv(env, n_bins=args.n_bins)


env1, env2 = (make_env(name) for name in args.env_names)
if env1.observation_space != env2.observation_space or env1.action_space != env2.action_space:
    raise SystemExit(f"--env_names: the two tasks must share their spaces, given {args.env_names}")

pol = make_pol(env1.observation_space, env1.action_space, rnn=args.rnn, h_size=args.h_size)
vf = make_vf(env1.observation_space, rnn=args.rnn, h_size=args.h_size)
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
optim_vf = torch.optim.Adam(vf.parameters(), args.vf_lr)
samplers = [
    EpiSampler(env, pol, num_parallel=args.num_parallel, num_envs=args.num_envs, seed=seed)
    for env, seed in ((env1, args.seed), (env2, args.seed + 10_000))
]

run = logger.Run(
    args.resume or args.log,
    args.max_steps,
    "mixed env",
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
    title=" + ".join(args.env_names),
)
state = dict(pol=pol, vf=vf, optim_pol=optim_pol, optim_vf=optim_vf)
state.update({f"sampler{i}": sampler for i, sampler in enumerate(samplers)})
with run:
    run.restore(**state)
    while not run.done:
        epis, returns = [], {}
        for name, sampler in zip(args.env_names, samplers):
            task_epis = sampler.sample(pol, max_steps=args.steps_per_iter)
            returns[name] = [float(np.sum(epi["rews"])) for epi in task_epis]
            epis += task_epis

        # One Traj holds both tasks' episodes: the estimators work episode by episode, and
        # advantages are centred over both tasks together (one policy, one update).
        traj = Traj()
        traj.add_epis(epis)
        traj = ef.compute_vs(traj, vf)
        traj = ef.compute_rets(traj, args.gamma)
        traj = ef.compute_advs(traj, args.gamma, args.lam)
        traj = ef.centerize_advs(traj)
        traj = ef.compute_h_masks(traj)
        traj.register_epis()

        if args.rnn:
            batch_size = min(args.rnn_batch_size, traj.num_epi)
        else:
            batch_size = min(args.batch_size, traj.num_step)
        result_dict = ppo_clip.train(
            traj=traj,
            pol=pol,
            vf=vf,
            clip_param=args.clip_param,
            optim_pol=optim_pol,
            optim_vf=optim_vf,
            epoch=args.epoch_per_iter,
            batch_size=batch_size,
            max_grad_norm=args.max_grad_norm,
            log_enable=False,
        )

        for name, rets in returns.items():
            result_dict[f"ReturnAverage_{name}"] = float(np.mean(rets))
        run.record(
            epis,
            result_dict,
            models=dict(pol=pol, vf=vf),
            checkpoint=state,
            **{name[:12]: float(np.mean(rets)) for name, rets in returns.items()},
        )

for sampler in samplers:
    sampler.close()
