"""Stochastic value gradients, SVG(0) or SVG(1), on Pendulum-v1 (or any Box-action task).

    python example/run_svg.py --log runs/svg0_pendulum
    python example/run_svg.py --svg 1 --log runs/svg1_pendulum

SVG(0) follows the gradient of a learned Q(s, a) through reparameterised actions. SVG(1)
follows ``r(s, a) + gamma * V(s + f(s, a))`` through a one-step dynamics model ``f`` learned
here (a small MLP predicting ``next_obs - obs``), a state value learned off-policy, and the
task's reward function: Pendulum-v1's is written out below in torch (for another task, pass
a differentiable reward of your own or a learned reward net). Each iteration samples
``--steps_per_iter`` env steps into a bounded replay ``Traj`` and takes as many gradient steps.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(``machina.checkpoint``); ``--resume RUN_DIR`` continues a stopped run from its newest
checkpoint, with the same other arguments (see run_ddpg.py).
"""

import argparse
import copy

import gymnasium as gym
import torch
from flags import interval, polyak_rate, positive_float, positive_int, unit_interval
from torch import nn

from machina import logger
from machina.algos import svg
from machina.envs import GymEnv
from machina.nets import PolNet, QNet, VNet
from machina.pols import TanhGaussianPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.vfuncs import DeterministicSAVfunc, DeterministicSVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="Box actions; --svg 1: Pendulum")
parser.add_argument("--log", default="runs/svg", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--svg", type=int, choices=[0, 1], default=0, help="SVG(0) or SVG(1)")
parser.add_argument("--max_steps", type=positive_int, default=20_000, help="env-step budget")
parser.add_argument(
    "--steps_per_iter", type=positive_int, default=200, help="env steps per iteration"
)
parser.add_argument(
    "--replay_size", type=positive_int, default=1_000_000, help="replay Traj max_steps"
)
parser.add_argument("--batch_size", type=positive_int, default=256)
parser.add_argument("--pol_lr", type=positive_float, default=1e-3)
parser.add_argument(
    "--qf_lr", type=positive_float, default=1e-3, help="Q (SVG(0)) or V (SVG(1)) lr"
)
parser.add_argument("--dm_lr", type=positive_float, default=1e-3, help="dynamics model lr (SVG(1))")
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
    "--checkpoint_interval", type=interval, default=2000, help="env steps between checkpoints"
)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()
torch.set_num_threads(args.num_threads)

torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
if not isinstance(env.action_space, gym.spaces.Box):
    parser.error(
        f"--env_name: SVG needs continuous (Box) actions, {args.env_name} has {env.action_space}"
    )
if args.svg == 1 and args.env_name.split("-")[0] != "Pendulum":
    parser.error("--svg 1: this script writes out Pendulum's reward; pass your task's own")
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
ob_space, ac_space = env.observation_space, env.action_space
max_torque = float(ac_space.high[0])


def pendulum_rew(obs: torch.Tensor, acs: torch.Tensor) -> torch.Tensor:
    """Pendulum-v1's reward from ``obs = (cos th, sin th, th_dot)`` and actions in [-1, 1]."""
    th = torch.atan2(obs[..., 1], obs[..., 0])
    torque = max_torque * acs[..., 0]
    return -(th**2 + 0.1 * obs[..., 2] ** 2 + 0.001 * torque**2)


class DeltaModel(nn.Module):
    """Dynamics model: MLP of ``(obs, acs)`` predicting ``next_obs - obs``."""

    def __init__(self, ob_dim: int, ac_dim: int, h_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(ob_dim + ac_dim, h_size),
            nn.ReLU(),
            nn.Linear(h_size, h_size),
            nn.ReLU(),
            nn.Linear(h_size, ob_dim),
        )

    def forward(self, obs: torch.Tensor, acs: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, acs], dim=-1))


pol = TanhGaussianPol(ob_space, ac_space, PolNet(ob_space, ac_space, args.h_size, args.h_size))
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
if args.svg == 0:
    targ_pol = copy.deepcopy(pol)
    qf = DeterministicSAVfunc(
        ob_space, ac_space, QNet(ob_space, ac_space, args.h_size, args.h_size)
    )
    targ_qf = copy.deepcopy(qf)
    optim_qf = torch.optim.Adam(qf.parameters(), args.qf_lr)
    models = dict(pol=pol, qf=qf)
    state = dict(targ_pol=targ_pol, targ_qf=targ_qf, optim_pol=optim_pol, optim_qf=optim_qf)
else:
    vf = DeterministicSVfunc(ob_space, VNet(ob_space, args.h_size, args.h_size))
    targ_vf = copy.deepcopy(vf)
    dm = DeltaModel(ob_space.shape[0], ac_space.shape[0], args.h_size)
    optim_vf = torch.optim.Adam(vf.parameters(), args.qf_lr)
    optim_dm = torch.optim.Adam(dm.parameters(), args.dm_lr)
    models = dict(pol=pol, vf=vf, dm=dm)
    state = dict(targ_vf=targ_vf, optim_pol=optim_pol, optim_vf=optim_vf, optim_dm=optim_dm)
sampler = EpiSampler(env, pol, seed=args.seed)
off_traj = Traj(max_steps=args.replay_size)
state.update(models, off_traj=off_traj, sampler=sampler)

run = logger.Run(
    args.resume or args.log,
    args.max_steps,
    args.env_name,
    args.eval_interval or None,
    solve_return,
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
    title=f"SVG({args.svg}) {args.env_name}",
    checkpoint_interval=args.checkpoint_interval or None,
)
with run:
    run.restore(**state)
    while not run.done:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        traj.register_epis()
        off_traj.add_traj(traj)

        common = dict(
            epoch=traj.num_step,
            batch_size=min(args.batch_size, off_traj.num_step),
            tau=args.tau,
            gamma=args.gamma,
            sampling=args.sampling,
            log_enable=False,
        )
        if args.svg == 0:
            result_dict = svg.train(
                off_traj, pol, targ_pol, qf, targ_qf, optim_pol, optim_qf, **common
            )
        else:
            result_dict = svg.train_svg1(
                off_traj,
                pol,
                vf,
                targ_vf,
                dm,
                pendulum_rew,
                optim_pol,
                optim_vf,
                optim_dm=optim_dm,
                **common,
            )

        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=models,
            checkpoint=state,
        )

sampler.close()
