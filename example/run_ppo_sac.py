"""PPO and SAC improving one policy from one sampler: on- and off-policy learning mixed.

    python example/run_ppo_sac.py --log runs/ppo_sac_pendulum

Each iteration samples whole episodes once. They go two ways: through the on-policy
estimators (values, returns, GAE advantages) into ``ppo_clip.train``, and into a bounded
replay ``Traj`` that ``sac.train`` learns from. Both algorithms step the same policy (each
with its own optimiser): PPO first, on the episodes the current policy has just sampled,
then SAC on random batches of everything replayed. What the two libraries' fixed pipelines
cannot express takes one loop here, because ``train`` functions own no data and no loop.

Every ``--checkpoint_interval`` env steps (and at the end) the whole run is saved in ``--log``
(``machina.checkpoint``); ``--resume RUN_DIR`` continues a stopped run from its newest
checkpoint, with the same other arguments (see run_ddpg.py).
"""

import argparse
import copy

import torch
from flags import interval, polyak_rate, positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import ppo_clip, sac
from machina.envs import GymEnv
from machina.nets import PolNet, QNet, VNet
from machina.pols import TanhGaussianPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import DeterministicSAVfunc, DeterministicSVfunc

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="any gymnasium id, Box actions")
parser.add_argument("--log", default="runs/ppo_sac", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--num_envs", type=positive_int, default=2, help="environments sampled at once")
parser.add_argument("--max_steps", type=positive_int, default=20_000, help="env-step budget")
parser.add_argument(
    "--steps_per_iter", type=positive_int, default=400, help="env steps per iteration"
)
parser.add_argument(
    "--replay_size", type=positive_int, default=1_000_000, help="replay Traj max_steps"
)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument("--gamma", type=unit_interval, default=0.99)
# PPO
parser.add_argument("--ppo_epoch", type=positive_int, default=10, help="PPO passes per iteration")
parser.add_argument("--ppo_batch_size", type=positive_int, default=200, help="PPO minibatch steps")
parser.add_argument("--ppo_pol_lr", type=positive_float, default=3e-4)
parser.add_argument("--vf_lr", type=positive_float, default=1e-3)
parser.add_argument("--lam", type=unit_interval, default=0.95)
parser.add_argument("--clip_param", type=positive_float, default=0.2)
parser.add_argument("--max_grad_norm", type=positive_float, default=0.5)
# SAC
parser.add_argument("--sac_batch_size", type=positive_int, default=256)
parser.add_argument("--sac_pol_lr", type=positive_float, default=1e-3)
parser.add_argument("--qf_lr", type=positive_float, default=1e-3)
parser.add_argument("--alpha_lr", type=positive_float, default=1e-3)
parser.add_argument("--tau", type=polyak_rate, default=0.005, help="target Polyak rate")
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
h = args.h_size

# The one policy both algorithms improve.
pol = TanhGaussianPol(ob_space, ac_space, PolNet(ob_space, ac_space, h, h))
# PPO's state value and optimisers.
vf = DeterministicSVfunc(ob_space, VNet(ob_space, h, h))
optim_ppo_pol = torch.optim.Adam(pol.parameters(), args.ppo_pol_lr)
optim_vf = torch.optim.Adam(vf.parameters(), args.vf_lr)
# SAC's twin Q functions, temperature and optimisers.
qfs = [DeterministicSAVfunc(ob_space, ac_space, QNet(ob_space, ac_space, h, h)) for _ in range(2)]
targ_qfs = [copy.deepcopy(qf) for qf in qfs]
log_alpha = torch.zeros((), requires_grad=True)
optim_sac_pol = torch.optim.Adam(pol.parameters(), args.sac_pol_lr)
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
    title=f"PPO + SAC {args.env_name}",
    checkpoint_interval=args.checkpoint_interval or None,
)
state = dict(
    sampler=sampler,
    pol=pol,
    vf=vf,
    qf1=qfs[0],
    qf2=qfs[1],
    targ_qf1=targ_qfs[0],
    targ_qf2=targ_qfs[1],
    log_alpha=log_alpha,
    optim_ppo_pol=optim_ppo_pol,
    optim_vf=optim_vf,
    optim_sac_pol=optim_sac_pol,
    optim_qf1=optim_qfs[0],
    optim_qf2=optim_qfs[1],
    optim_alpha=optim_alpha,
    off_traj=off_traj,
)
with run:
    run.restore(**state)
    while not run.done:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)

        # On-policy: the estimators, then PPO on these episodes alone.
        traj = Traj()
        traj.add_epis(epis)
        traj = ef.compute_vs(traj, vf)
        traj = ef.compute_rets(traj, args.gamma)
        traj = ef.compute_advs(traj, args.gamma, args.lam)
        traj = ef.centerize_advs(traj)
        traj = ef.compute_h_masks(traj)
        traj.register_epis()
        ppo_result = ppo_clip.train(
            traj=traj,
            pol=pol,
            vf=vf,
            optim_pol=optim_ppo_pol,
            optim_vf=optim_vf,
            epoch=args.ppo_epoch,
            batch_size=min(args.ppo_batch_size, traj.num_step),
            clip_param=args.clip_param,
            ent_beta=0.0,
            max_grad_norm=args.max_grad_norm,
            log_enable=False,
        )

        # Off-policy: the same episodes' transitions join the replay memory, then SAC. Only
        # the keys SAC reads: PPO's values, returns and advantages go stale at once.
        new_traj = Traj()
        new_traj.add_epis([{k: epi[k] for k in sac.OFF_POLICY_KEYS} for epi in epis])
        new_traj.register_epis()
        off_traj.add_traj(new_traj)
        sac_result = sac.train(
            off_traj,
            pol,
            qfs,
            targ_qfs,
            log_alpha,
            optim_sac_pol,
            optim_qfs,
            optim_alpha,
            epoch=traj.num_step,
            batch_size=min(args.sac_batch_size, off_traj.num_step),
            tau=args.tau,
            gamma=args.gamma,
            log_enable=False,
        )

        result_dict = {f"PPO{k}": v for k, v in ppo_result.items()}
        result_dict.update({f"SAC{k}": v for k, v in sac_result.items()})
        run.record(
            epis,
            result_dict,
            evaluate=lambda: sampler.sample(pol, max_epis=args.eval_epis, deterministic=True),
            models=dict(pol=pol, vf=vf, qf1=qfs[0], qf2=qfs[1], log_alpha=log_alpha),
            checkpoint=state,
        )

sampler.close()
