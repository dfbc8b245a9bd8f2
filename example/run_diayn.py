"""DIAYN: skills discovered without a reward, by soft actor-critic on a discriminator's score.

    python example/run_diayn.py --env_name Pendulum-v1 --num_skill 4 --log runs/diayn_pendulum

Eysenbach et al., 2018, "Diversity is All You Need" (arXiv:1802.06070). ``SkillEnv`` draws a
skill per episode and appends its one-hot to the observations; a discriminator learns to tell
the skill from the state alone (``diayn.train``), and SAC maximises its score
``log q(z|s) - log p(z)`` in place of the environment's reward (``diayn_sac.train``). Each
iteration samples ``--steps_per_iter`` env steps into a bounded replay ``Traj``; every
``--eval_interval`` steps the discriminator's accuracy on fresh episodes is logged
(``EvalDiscrimAcc``; chance is 1 / num_skill). Writes progress.csv, TensorBoard events,
learning_curve.png (of the environment's return, which DIAYN never sees) and the trained
networks (models/) into ``--log``.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(``machina.checkpoint``); ``--resume RUN_DIR`` continues a stopped run from its newest
checkpoint, with the same other arguments (see run_ddpg.py).
"""

import argparse
import copy
import math

import numpy as np
import torch
from flags import interval, polyak_rate, positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import diayn, diayn_sac
from machina.envs import GymEnv
from machina.envs.skill_env import SkillEnv
from machina.loss_functional.diayn import skill_accuracy
from machina.nets import PolNet, QNet
from machina.nets.skill_discrim import SkillDiscrimNet
from machina.pols import TanhGaussianPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.vfuncs import DeterministicSAVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="any gymnasium id, Box actions")
parser.add_argument("--log", default="runs/diayn", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--num_skill", type=positive_int, default=4)
parser.add_argument(
    "--max_episode_steps", type=positive_int, default=None, help="time limit override"
)
parser.add_argument("--num_envs", type=positive_int, default=1, help="environments sampled at once")
parser.add_argument("--max_steps", type=positive_int, default=20_000, help="env-step budget")
parser.add_argument(
    "--steps_per_iter", type=positive_int, default=200, help="env steps per iteration"
)
parser.add_argument(
    "--replay_size", type=positive_int, default=1_000_000, help="replay Traj max_steps"
)
parser.add_argument("--batch_size", type=positive_int, default=128)
parser.add_argument("--discrim_batch_size", type=positive_int, default=128)
parser.add_argument(
    "--epoch_per_iter", type=positive_int, default=50, help="discriminator steps/iter"
)
parser.add_argument("--pol_lr", type=positive_float, default=3e-3)
parser.add_argument("--qf_lr", type=positive_float, default=3e-3)
parser.add_argument("--discrim_lr", type=positive_float, default=3e-3)
parser.add_argument(
    "--alpha", type=float, default=0.1, help="fixed temperature (DIAYN's); <= 0: learned"
)
parser.add_argument("--h_size", type=positive_int, default=32, help="hidden units per layer")
parser.add_argument("--tau", type=polyak_rate, default=0.01, help="target Polyak rate")
parser.add_argument("--gamma", type=unit_interval, default=0.9)
parser.add_argument("--sampling", type=positive_int, default=1, help="actions drawn per state")
parser.add_argument(
    "--eval_interval",
    type=interval,
    default=2000,
    help="env steps between evals (0: every iteration)",
)
parser.add_argument("--eval_epis", type=positive_int, default=16, help="episodes per evaluation")
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

make_kwargs = {}
if args.max_episode_steps is not None:
    make_kwargs["max_episode_steps"] = args.max_episode_steps
env = SkillEnv(GymEnv(args.env_name, **make_kwargs), num_skill=args.num_skill)
# The policy and Q functions see obs + skill one-hot; the discriminator the state alone.
ob_space, ac_space = env.observation_space, env.action_space

pol = TanhGaussianPol(ob_space, ac_space, PolNet(ob_space, ac_space, args.h_size, args.h_size))
qfs = [
    DeterministicSAVfunc(ob_space, ac_space, QNet(ob_space, ac_space, args.h_size, args.h_size))
    for _ in range(2)
]
targ_qfs = [copy.deepcopy(qf) for qf in qfs]
discrim = SkillDiscrimNet(env.real_observation_space, args.num_skill, args.h_size, args.h_size)
fixed_alpha = args.alpha > 0
log_alpha = torch.tensor(math.log(args.alpha) if fixed_alpha else 0.0, requires_grad=True)
optim_pol = torch.optim.Adam(pol.parameters(), args.pol_lr)
optim_qfs = [torch.optim.Adam(qf.parameters(), args.qf_lr) for qf in qfs]
optim_alpha = torch.optim.Adam([log_alpha], 0.0 if fixed_alpha else args.pol_lr)
optim_discrim = torch.optim.Adam(discrim.parameters(), args.discrim_lr)
sampler = EpiSampler(env, pol, num_envs=args.num_envs, seed=args.seed)
off_traj = Traj(max_steps=args.replay_size)


def evaluate() -> dict[str, float]:
    """The discriminator's accuracy on the states of fresh episodes (chance: 1 / num_skill)."""
    eval_epis = sampler.sample(pol, max_epis=args.eval_epis)
    eval_obs = torch.as_tensor(np.concatenate([epi["next_obs"] for epi in eval_epis]))
    return {"EvalDiscrimAcc": float(skill_accuracy(discrim, eval_obs, args.num_skill))}


run = logger.Run(
    args.resume or args.log,
    args.max_steps,
    f"DIAYN {args.env_name}",
    args.eval_interval or None,
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
    title=f"DIAYN {args.env_name} (environment return)",
    checkpoint_interval=args.checkpoint_interval or None,
)
state = dict(
    sampler=sampler,
    pol=pol,
    qf1=qfs[0],
    qf2=qfs[1],
    targ_qf1=targ_qfs[0],
    targ_qf2=targ_qfs[1],
    discrim=discrim,
    log_alpha=log_alpha,
    optim_pol=optim_pol,
    optim_qf1=optim_qfs[0],
    optim_qf2=optim_qfs[1],
    optim_alpha=optim_alpha,
    optim_discrim=optim_discrim,
    off_traj=off_traj,
)
with run:
    run.restore(**state)
    while not run.done:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        traj.register_epis()
        off_traj.add_traj(traj)

        # The discriminator learns from the whole replay: a few fresh episodes hold only a
        # few skills, and it would learn their start states instead of the skills.
        discrim_result = diayn.train(
            discrim,
            optim_discrim,
            off_traj,
            min(args.discrim_batch_size, off_traj.num_step),
            args.epoch_per_iter,
            args.num_skill,
            log_enable=False,
        )
        result_dict = diayn_sac.train(
            off_traj,
            pol,
            qfs,
            targ_qfs,
            log_alpha,
            optim_pol,
            optim_qfs,
            optim_alpha,
            epoch=traj.num_step,
            batch_size=min(args.batch_size, off_traj.num_step),
            tau=args.tau,
            gamma=args.gamma,
            sampling=args.sampling,
            discrim=discrim,
            num_skill=args.num_skill,
            log_enable=False,
        )
        result_dict.update(discrim_result)

        run.record(
            epis,
            result_dict,
            evaluate=evaluate,
            models=dict(pol=pol, qf1=qfs[0], qf2=qfs[1], discrim=discrim, log_alpha=log_alpha),
            checkpoint=state,
            diayn_rew=float(result_dict["DiaynRew"]),
        )

sampler.close()
print(
    f"{args.num_skill} skills; discriminator accuracy on fresh episodes "
    f"{run.evaluation.get('EvalDiscrimAcc', math.nan):.2f} (chance {1 / args.num_skill:.2f})"
)
