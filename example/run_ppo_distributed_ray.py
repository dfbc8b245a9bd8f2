"""PPO on Ray: sampler actors spread over a cluster feed data-parallel trainer actors.

    python example/run_ppo_distributed_ray.py --env_name CartPole-v1 --log runs/ppo_ray
    python example/run_ppo_distributed_ray.py --ray_address HEAD_IP:6379 \\
        --num_parallel 16 --num_trainer 2 --master_address tcp://HEAD_IP:29500

No ``torchrun``: Ray starts every process. Without ``--ray_address`` Ray runs on this machine
(started quietly, stopped at the end); with it, the script joins an existing cluster (``ray
start --head`` on one node, ``ray start --address=HEAD_IP:6379`` on the others; see the
README's "Scaling out").

Each iteration:

- ``--num_parallel`` sampler actors (``machina.samplers.raysampler.EpiSampler``, each stepping
  ``--num_envs`` environments, spread over the nodes) act with rank 0's policy weights, which
  go out once per sample through Ray's object store;
- the episodes go once through the object store to ``--num_trainer`` trainer actors that form
  one ``torch.distributed`` group (gloo on CPU, nccl when they have GPUs); each computes the
  estimators, then its share of every minibatch (``Traj(ddp=True)``); gradients are averaged
  over the trainers before clipping, so the parameters stay identical on every trainer.

The run folder ``--log`` gets progress.csv, TensorBoard events, learning_curve.png and rank
0's ``models/pol_last.pt`` / ``vf_last.pt``.

Every iteration ends with a checkpoint of the whole run in ``--log``: every trainer's
networks, optimisers and RNGs (``TrainManager.state_dict``), the sampler actors' policy and
environment RNGs, this process's networks and RNGs, and the counters. A stopped run
continues bit for bit from its newest checkpoint, with the same other arguments
(``--max_steps`` may grow; the cluster and ``--master_address`` may be others)::

    python example/run_ppo_distributed_ray.py --resume runs/ppo_ray
"""

import argparse

import ray
import torch
from flags import positive_float, positive_int, unit_interval

from machina import logger
from machina.algos import ppo_clip
from machina.envs import GymEnv
from machina.pols import make_pol
from machina.samplers.raysampler import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.utils import BaseDistributedRayTrainer, TrainManager, init_ray
from machina.vfuncs import make_vf

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id")
parser.add_argument("--log", default="runs/ppo_ray", help="run folder")
parser.add_argument("--seed", type=int, default=256)
parser.add_argument("--ray_address", default=None, help="an existing cluster, HOST:PORT")
parser.add_argument("--num_cpus", type=int, default=None, help="CPUs of a local Ray instance")
parser.add_argument("--num_parallel", type=positive_int, default=2, help="sampler actors")
parser.add_argument(
    "--num_envs", type=positive_int, default=4, help="environments per sampler actor"
)
parser.add_argument("--num_trainer", type=positive_int, default=2, help="trainer actors (ranks)")
parser.add_argument(
    "--master_address",
    default=None,
    help="torch.distributed address of rank 0, tcp://HOST:PORT (default: a free local port)",
)
parser.add_argument("--max_steps", type=positive_int, default=100_000, help="env-step budget")
parser.add_argument(
    "--steps_per_iter", type=positive_int, default=2048, help="env steps per iteration"
)
parser.add_argument(
    "--epoch", type=positive_int, default=10, help="passes over each iteration's steps"
)
parser.add_argument(
    "--batch_size", type=positive_int, default=256, help="minibatch, over all ranks"
)
parser.add_argument("--pol_lr", type=positive_float, default=3e-4)
parser.add_argument("--vf_lr", type=positive_float, default=1e-3)
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument("--lam", type=unit_interval, default=0.95)
parser.add_argument("--clip_param", type=positive_float, default=0.2)
parser.add_argument("--max_grad_norm", type=positive_float, default=0.5)
parser.add_argument("--h_size", type=positive_int, default=64, help="hidden units per layer")
parser.add_argument("--eval_epis", type=positive_int, default=8, help="episodes per evaluation")
parser.add_argument("--solve_return", type=float, default=None, help="stop at this eval return")
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()


class Trainer(BaseDistributedRayTrainer):
    """One rank: its copy of the networks and optimisers, and one PPO update per call."""

    def __init__(self, pol, vf, rank=0, world_size=1, master_address=None):
        super().__init__(rank, world_size, master_address, backend="nccl", seed=args.seed)
        torch.set_num_threads(1)
        self.pol, self.vf = pol.to(self.device), vf.to(self.device)
        self.optim_pol = torch.optim.Adam(self.pol.parameters(), args.pol_lr)
        self.optim_vf = torch.optim.Adam(self.vf.parameters(), args.vf_lr)

    def train(self, epis):
        traj = Traj(ddp=True, traj_device=self.device)
        traj.add_epis(epis)
        traj = ef.compute_vs(traj, self.vf)
        traj = ef.compute_rets(traj, args.gamma, args.lam)
        traj = ef.compute_advs(traj, args.gamma, args.lam)
        traj = ef.centerize_advs(traj)
        traj = ef.compute_h_masks(traj)
        traj.register_epis()
        return ppo_clip.train(
            traj=traj,
            pol=self.pol,
            vf=self.vf,
            clip_param=args.clip_param,
            optim_pol=self.optim_pol,
            optim_vf=self.optim_vf,
            epoch=args.epoch,
            batch_size=min(args.batch_size, traj.num_step),
            max_grad_norm=args.max_grad_norm,
            log_enable=False,
        )


torch.manual_seed(args.seed)
env = GymEnv(args.env_name)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
# before Ray starts: a resume with other settings is refused at once
run = logger.Run(
    args.resume or args.log,
    args.max_steps,
    args.env_name,
    args.steps_per_iter,
    solve_return,
    resume=args.resume is not None,
    settings=vars(args),
    # where the processes run may change; what they compute may not
    resumable=("ray_address", "num_cpus", "master_address"),
)
started_ray = not ray.is_initialized()
init_ray(args.num_cpus, 0, args.ray_address)
pol = make_pol(env.observation_space, env.action_space, h_size=args.h_size)
vf = make_vf(env.observation_space, h_size=args.h_size)
trainers = TrainManager(Trainer, args.num_trainer, args.master_address, pol=pol, vf=vf)
sampler = EpiSampler(env, pol, args.num_parallel, seed=args.seed, num_envs=args.num_envs)


def evaluate():
    # the updated policy: the sampler's own copy still holds the weights it sampled with
    return sampler.sample(pol, max_epis=args.eval_epis, deterministic=True)


state = dict(trainers=trainers, sampler=sampler, pol=pol, vf=vf)
with run:
    run.restore(**state)
    while not run.done:
        sampler.set_pol_state(trainers.get_state("pol"))
        epis = sampler.sample(max_steps=args.steps_per_iter)
        result_dict = trainers.train(epis=epis)
        pol.load_state_dict(trainers.get_state("pol"))
        vf.load_state_dict(trainers.get_state("vf"))
        run.record(
            epis, result_dict, evaluate=evaluate, models=dict(pol=pol, vf=vf), checkpoint=state
        )
sampler.close()
trainers.close()
if started_ray:
    ray.shutdown()
