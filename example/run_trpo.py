"""Trust region policy optimisation on any gymnasium task.

    python example/run_trpo.py --env_name Pendulum-v1 --log runs/trpo_pendulum

Writes progress.csv, TensorBoard events, learning_curve.png and models/ into ``--log``.

Each iteration the whole run is saved in ``--log`` (``machina.checkpoint``: networks,
optimisers, global RNGs, counters); ``--resume RUN_DIR`` continues a stopped run from its
newest checkpoint, with the same other arguments (``--max_steps`` may grow). The sampler's
RNGs are saved too, so the resumed run continues as an uninterrupted one would.
"""

import argparse

import torch
from flags import positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import trpo
from machina.envs import GymEnv
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="Pendulum-v1", help="any gymnasium id")
parser.add_argument("--log", default="runs/trpo", help="run folder")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--rnn", action="store_true", help="LSTM policy and value function")
parser.add_argument("--num_parallel", type=positive_int, default=1, help="sampler worker processes")
parser.add_argument("--num_envs", type=positive_int, default=8, help="environments per worker")
parser.add_argument("--max_steps", type=positive_int, default=500_000, help="env-step budget")
parser.add_argument("--steps_per_iter", type=positive_int, default=4000)
parser.add_argument("--vf_epoch", type=positive_int, default=5)
parser.add_argument("--batch_size", type=positive_int, default=256)
parser.add_argument("--vf_lr", type=positive_float, default=1e-3)
parser.add_argument("--max_kl", type=positive_float, default=0.01)
parser.add_argument("--h_size", type=positive_int, default=64)
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument("--lam", type=unit_interval, default=0.97)
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()

torch.manual_seed(args.seed)

env = GymEnv(args.env_name)
pol = make_pol(env.observation_space, env.action_space, rnn=args.rnn, h_size=args.h_size)
vf = make_vf(env.observation_space, rnn=args.rnn, h_size=args.h_size)
optim_vf = torch.optim.Adam(vf.parameters(), args.vf_lr)
sampler = EpiSampler(
    env, pol, num_parallel=args.num_parallel, num_envs=args.num_envs, seed=args.seed
)

run = logger.Run(
    args.resume or args.log,
    args.max_steps,
    args.env_name,
    resume=args.resume is not None,
    settings=vars(args),  # a resume with other settings is refused
)
state = dict(sampler=sampler, pol=pol, vf=vf, optim_vf=optim_vf)
with run:
    run.restore(**state)
    while not run.done:
        epis = sampler.sample(pol, max_steps=args.steps_per_iter)
        traj = Traj()
        traj.add_epis(epis)
        traj = ef.compute_vs(traj, vf)
        traj = ef.compute_rets(traj, args.gamma)
        traj = ef.compute_advs(traj, args.gamma, args.lam)
        traj = ef.centerize_advs(traj)
        traj = ef.compute_h_masks(traj)
        traj.register_epis()
        batch_size = min(args.batch_size, traj.num_epi if args.rnn else traj.num_step)
        result_dict = trpo.train(
            traj,
            pol,
            vf,
            optim_vf,
            epoch=args.vf_epoch,
            batch_size=batch_size,
            max_kl=args.max_kl,
            log_enable=False,
        )

        run.record(epis, result_dict, models=dict(pol=pol, vf=vf), checkpoint=state)

sampler.close()
