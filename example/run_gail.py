"""Generative adversarial imitation learning (or AIRL) from saved expert episodes.

    python example/make_expert_epis.py --deterministic \\
        --pol_path runs/ppo_cartpole/models/pol_last.pt
    python example/run_gail.py --expert_path runs/expert_epis/CartPole-v1_100epis.npz
    python example/run_gail.py --method airl --expert_path ...   # as run_airl.py

Each iteration samples episodes, replaces their rewards with the discriminator's
(``compute_pseudo_rews``), and calls ``gail.train``: one step of the on-policy algorithm
``--rl_type`` on those rewards, then ``--discrim_step`` discriminator steps. progress.csv
records the environment's return (``Reward*``, from ``real_rews``) and the pseudo return.

``--method airl`` (Fu et al., 2018, arXiv:1710.11248; ``run_airl.py`` is this script with it)
rewards ``f(s, a, s') - log pi(a|s)`` (``compute_airl_pseudo_rews``) and trains with
``airl.train``. With ``--rew_type rew`` (default) ``f = g(s) + gamma * h(s') - h(s)`` and
models/rewf_last.pt is the recovered reward ``g``; with ``adv``, ``f = advf(s, a)``.

Every iteration (or every ``--checkpoint_interval`` env steps, and at the end) the whole run
is saved in ``--log`` (policy, value function, discriminator, optimisers, ppo_kl's penalty,
the expert batches' generator, the sampler's RNGs, the global RNGs and the counters). A
stopped run continues bit for bit from its newest checkpoint, with the same other arguments
(``--max_steps`` may grow, the expert file may move)::

    python example/run_gail.py --expert_path ... --resume runs/gail
"""

import argparse
import sys

import numpy as np
import torch
from flags import interval, positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import airl, behavior_clone, gail
from machina.envs import C2DEnv, GymEnv
from machina.nets.discrim import DiscrimNet, StateDiscrimNet
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import DeterministicSAVfunc, DeterministicSVfunc, make_vf

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id")
parser.add_argument("--expert_path", required=True, help=".npz from make_expert_epis.py")
parser.add_argument("--log", default="runs/gail", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--method", choices=["gail", "airl"], default="gail")
parser.add_argument("--rew_type", choices=["rew", "adv"], default="rew", help="AIRL's form of f")
parser.add_argument("--c2d", action="store_true", help="discretise a continuous action space")
parser.add_argument("--rl_type", choices=["ppo_clip", "ppo_kl", "trpo", "vpg"], default="ppo_clip")
parser.add_argument(
    "--num_envs", type=positive_int, default=8, help="environments stepped together"
)
parser.add_argument("--max_steps", type=positive_int, default=30_000, help="env-step budget")
parser.add_argument("--steps_per_iter", type=positive_int, default=1024)
parser.add_argument("--epoch_per_iter", type=positive_int, default=10)
parser.add_argument("--batch_size", type=positive_int, default=256)
parser.add_argument("--discrim_batch_size", type=positive_int, default=256)
parser.add_argument(
    "--discrim_step", type=positive_int, default=10, help="discriminator steps per iter"
)
parser.add_argument("--pol_lr", type=positive_float, default=1e-3)
parser.add_argument("--vf_lr", type=positive_float, default=3e-3)
parser.add_argument("--discrim_lr", type=positive_float, default=1e-3)
parser.add_argument("--h_size", type=positive_int, default=32, help="hidden units per layer")
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument("--lam", type=unit_interval, default=0.95)
parser.add_argument("--pol_ent_beta", type=float, default=0.0)
parser.add_argument("--discrim_ent_beta", type=float, default=0.0)
parser.add_argument("--max_grad_norm", type=positive_float, default=0.5)
parser.add_argument("--max_kl", type=positive_float, default=0.02, help="trpo's trust region")
parser.add_argument("--kl_targ", type=positive_float, default=0.01, help="ppo_kl's target")
parser.add_argument("--pretrain", action="store_true", help="behaviour-clone the policy first")
parser.add_argument("--bc_epoch", type=positive_int, default=10)
parser.add_argument("--eval_epis", type=positive_int, default=10, help="episodes per evaluation")
parser.add_argument(
    "--checkpoint_interval",
    type=interval,
    default=None,
    help="env steps between checkpoints (default: every iteration)",
)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
if args.c2d:
    env = C2DEnv(env)
ob_space, ac_space = env.observation_space, env.action_space
pol = make_pol(ob_space, ac_space, h_size=args.h_size)
vf = make_vf(ob_space, h_size=args.h_size)
h = (args.h_size, args.h_size)
if args.method == "gail":
    discrim = DeterministicSAVfunc(ob_space, ac_space, DiscrimNet(ob_space, ac_space, *h))
    models = dict(discrim=discrim)
elif args.rew_type == "rew":  # AIRL: reward g(s) and shaping h(s)
    models = dict(
        rewf=DeterministicSVfunc(ob_space, StateDiscrimNet(ob_space, *h)),
        shaping_vf=DeterministicSVfunc(ob_space, StateDiscrimNet(ob_space, *h)),
    )
    discrim = torch.nn.ModuleDict(models)
else:  # AIRL: one advantage-like f(s, a)
    models = dict(advf=DeterministicSAVfunc(ob_space, ac_space, DiscrimNet(ob_space, ac_space, *h)))
    discrim = torch.nn.ModuleDict(models)
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
optim_vf = torch.optim.Adam(vf.parameters(), args.vf_lr)
optim_discrim = torch.optim.Adam(discrim.parameters(), args.discrim_lr)
sampler = EpiSampler(env, pol, num_envs=args.num_envs, seed=args.seed)

expert_traj = Traj.load(args.expert_path)
expert_return = float(np.mean([np.sum(epi["rews"]) for epi in expert_traj.epis()]))
print(f"expert return {expert_return:.1f} ({expert_traj.num_epi} episodes)")

run = logger.Run(
    args.resume or args.log,
    args.max_steps,
    args.env_name,
    # evaluated once, at the end: an end-of-budget evaluation, which Run rewinds so that a
    # resume with a larger --max_steps continues bit for bit (an interval of max_steps would
    # make it a scheduled one, which moves the sampler)
    eval_interval=sys.maxsize,
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
    resumable=("expert_path",),
    checkpoint_interval=args.checkpoint_interval or None,
)
kl_beta = torch.tensor(1.0, dtype=torch.float64)  # ppo_kl's adaptive penalty
state = dict(pol=pol, vf=vf, discrim=discrim, optim_pol=optim_pol, optim_vf=optim_vf)
# the expert batches' order too (the generator, not the expert file's columns)
state.update(optim_discrim=optim_discrim, sampler=sampler, kl_beta=kl_beta)
state.update(expert_batches=expert_traj.generator)
with run:
    if not run.restore(**state) and args.pretrain:
        behavior_clone.train(expert_traj, pol, optim_pol, args.batch_size, epoch=args.bc_epoch)
    while not run.done:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)

        agent_traj = Traj()
        agent_traj.add_epis(epis)
        if args.method == "gail":
            agent_traj = ef.compute_pseudo_rews(agent_traj, discrim)
        else:
            agent_traj = ef.compute_airl_pseudo_rews(
                agent_traj,
                pol,
                args.gamma,
                models.get("rewf"),
                models.get("shaping_vf"),
                models.get("advf"),
            )
        agent_traj = ef.compute_vs(agent_traj, vf)
        agent_traj = ef.compute_rets(agent_traj, args.gamma)
        agent_traj = ef.compute_advs(agent_traj, args.gamma, args.lam)
        agent_traj = ef.centerize_advs(agent_traj)
        agent_traj.register_epis()

        common = dict(
            rl_type=args.rl_type,
            pol_ent_beta=args.pol_ent_beta,
            discrim_ent_beta=args.discrim_ent_beta,
            epoch=args.epoch_per_iter,
            batch_size=min(args.batch_size, agent_traj.num_step),
            discrim_batch_size=min(
                args.discrim_batch_size, agent_traj.num_step, expert_traj.num_step
            ),
            discrim_step=args.discrim_step,
            max_kl=args.max_kl,
            optim_pol=optim_pol,
            max_grad_norm=args.max_grad_norm,
            kl_beta=float(kl_beta),
            kl_targ=args.kl_targ,
            log_enable=False,
        )
        if args.method == "gail":
            result_dict = gail.train(
                agent_traj, expert_traj, pol, vf, discrim, optim_vf, optim_discrim, **common
            )
        else:
            result_dict = airl.train(
                agent_traj,
                expert_traj,
                pol,
                vf,
                optim_vf,
                optim_discrim,
                rewf=models.get("rewf"),
                shaping_vf=models.get("shaping_vf"),
                advf=models.get("advf"),
                gamma=args.gamma,
                rew_type=args.rew_type,
                **common,
            )
        kl_beta.fill_(result_dict.pop("new_kl_beta", float(kl_beta)))

        pseudo = agent_traj.data_map["rews"]
        result_dict["PseudoReward"] = float(pseudo.sum()) / agent_traj.num_epi
        result_dict["ExpertReturn"] = expert_return
        run.record(
            epis,  # the sampler's: the true rewards
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol, vf=vf, **models),
            checkpoint=state,
        )

sampler.close()
