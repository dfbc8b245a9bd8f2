"""Data-parallel PPO over processes with torch.distributed, launched by torchrun.

    torchrun --nproc_per_node 2 example/run_ppo_distributed.py --run_dir runs/ppo_ddp

(on one machine; ``python -m torch.distributed.run`` is the same command). Each rank samples
its own episodes with seed ``--seed + rank`` and trains on them; every optimiser step averages
the gradients over the ranks before clipping, so all ranks hold the same weights. With
``--same_data`` rank 0 samples, every rank gets its episodes and trains on its share of each
minibatch (``Traj(ddp=True)``), which equals one process training on the same data. Rank 0
logs progress.csv and the policy into ``--run_dir`` and prints one line per iteration. gloo runs
on CPU; on a machine with GPUs use ``--backend nccl`` to train each rank on its own GPU.
Across machines, run the same command on each with ``--nnodes N --node_rank i
--master_addr <host of rank 0> --master_port 29500``.

Every iteration each rank checkpoints its part of the run in ``--run_dir``/checkpoints/rank-R
(``machina.checkpoint``: networks, optimisers, its sampler's RNGs, its global RNGs, the
counters). A stopped run continues bit for bit on as many ranks, with the same other
arguments (``--max_steps`` may grow), from the newest iteration every rank saved::

    torchrun --nproc_per_node 2 example/run_ppo_distributed.py --resume runs/ppo_ddp

progress.csv and the TensorBoard scalars are cut back to that iteration's row first.
"""

import argparse
import glob
import os
import shutil
import time
import warnings

import numpy as np
import torch
from flags import positive_float, positive_int, unit_interval

import machina.distributed as mdist
from machina import logger
from machina.algos import ppo_clip
from machina.checkpoint import latest_checkpoint, load_run, read_extra, remove_checkpoints, save_run
from machina.envs import GymEnv
from machina.logger.run import check_resume_settings, truncate_rows
from machina.logger.tensorboard_output import event_files, truncate_events
from machina.pols import make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import make_vf

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--env_name", default="CartPole-v1", help="any gymnasium id")
parser.add_argument(
    "--run_dir",
    default="runs/ppo_distributed",
    help="run folder (rank 0); not --log: torchrun would take it",
)
parser.add_argument("--seed", type=int, default=0, help="rank r samples with seed + r")
parser.add_argument("--backend", choices=["gloo", "nccl"], default="gloo")
parser.add_argument("--same_data", action="store_true", help="rank 0 samples for every rank")
parser.add_argument("--num_envs", type=positive_int, default=4, help="environments per rank")
parser.add_argument("--max_steps", type=positive_int, default=100_000, help="env steps, all ranks")
parser.add_argument("--steps_per_iter", type=positive_int, default=512, help="per rank")
parser.add_argument("--epoch_per_iter", type=positive_int, default=10)
parser.add_argument(
    "--batch_size", type=positive_int, default=256, help="steps per minibatch per rank"
)
parser.add_argument("--lr", type=positive_float, default=3e-3)
parser.add_argument("--h_size", type=positive_int, default=64)
parser.add_argument("--gamma", type=unit_interval, default=0.99)
parser.add_argument("--lam", type=unit_interval, default=0.97)
parser.add_argument("--max_grad_norm", type=positive_float, default=0.5)
parser.add_argument("--solve_return", type=float, default=None, help="stop at this return")
parser.add_argument(
    "--resume", metavar="RUN_DIR", default=None, help="continue the run saved in RUN_DIR"
)
args = parser.parse_args()
run_dir = args.resume or args.run_dir
#: settings a resumed run may change (the others are compared with the checkpoint's)
RESUMABLE = {"resume", "run_dir", "max_steps"}

mdist.init(backend=args.backend)  # reads torchrun's RANK, WORLD_SIZE, MASTER_ADDR, ...
rank, world = mdist.get_rank(), mdist.get_world_size()
torch.set_num_threads(1)
torch.manual_seed(args.seed)
device = torch.device("cuda", mdist.get_local_rank()) if args.backend == "nccl" else None

env = GymEnv(args.env_name)
solve_return = args.solve_return
if solve_return is None and env.spec is not None:
    solve_return = env.spec.reward_threshold
pol = make_pol(env.observation_space, env.action_space, h_size=args.h_size)
vf = make_vf(env.observation_space, h_size=args.h_size)
mdist.sync_params(pol, vf)  # rank 0's initial weights on every rank
# The sampler steps environments on CPU with a CPU copy of the policy; training runs on
# ``device`` (each rank's GPU with nccl).
train_pol, train_vf = (pol, vf) if device is None else (pol.to(device), vf.to(device))
sample_pol = pol if device is None else make_pol(env.observation_space, env.action_space,
                                                 h_size=args.h_size)  # fmt: skip
optim_pol = torch.optim.Adam(train_pol.parameters(), args.lr)
optim_vf = torch.optim.Adam(train_vf.parameters(), args.lr)
sampler = None
if rank == 0 or not args.same_data:
    sampler = EpiSampler(env, sample_pol, num_envs=args.num_envs, seed=args.seed + rank)

# This rank's part of the run (the networks and optimisers are the same on every rank).
ckpt_dir = os.path.join(run_dir, "checkpoints", f"rank-{rank}")
objects = dict(pol=train_pol, vf=train_vf, optim_pol=optim_pol, optim_vf=optim_vf)
if sampler is not None:
    objects["sampler"] = sampler
counters = dict(total_step=0, total_epi=0, it=0, mean_return=None)


def resume() -> dict | None:
    """Load the newest iteration every rank checkpointed (one rank may have saved one more
    before the run stopped) and cut rank 0's rows and TensorBoard scalars back to it; None
    (a new run) when no rank has a checkpoint yet."""
    newest = latest_checkpoint(ckpt_dir)
    # (a save of the same step killed between its two renames left 'ckpt-<step>.replaced')
    step = -1 if newest is None else int(newest.name.split("-")[1].partition(".")[0])
    steps = mdist.gather_object(step)
    if max(steps) < 0:
        warnings.warn(f"--resume {run_dir}: no checkpoint yet; starting a new run", stacklevel=2)
        return None
    if min(steps) < 0:
        raise FileNotFoundError(
            f"--resume {run_dir}: no checkpoint of rank {steps.index(min(steps))} of {world} "
            f"in {run_dir}/checkpoints (a run on fewer ranks?)"
        )
    path = os.path.join(ckpt_dir, f"ckpt-{min(steps):06d}")
    if not os.path.isfile(os.path.join(path, "meta.json")):  # set aside by a killed save
        path += ".replaced"
    extra = read_extra(path)  # checked before anything is loaded
    if extra["world"] != world:
        raise ValueError(f"--resume {run_dir}: saved on {extra['world']} ranks, run on {world}")
    check_resume_settings(extra["settings"], vars(args), RESUMABLE, run_dir)
    load_run(path, objects)
    if mdist.is_main():
        truncate_rows(os.path.join(run_dir, "progress.csv"), extra["it"])
        truncate_events(run_dir, extra["saved_at"])
    return {key: extra[key] for key in counters}


resumed = resume() if args.resume else None
if resumed is None:
    # a new run in a used folder: the old run's checkpoints go (a later --resume must not
    # restore them), those of ranks this run does not have too, and its TensorBoard events
    remove_checkpoints(ckpt_dir)
    if mdist.is_main():
        for path in glob.glob(os.path.join(glob.escape(run_dir), "checkpoints", "rank-*")):
            if int(path.rsplit("-", 1)[1]) >= world:
                shutil.rmtree(path, ignore_errors=True)
        for path in event_files(run_dir):
            os.remove(path)
else:
    counters = resumed
if mdist.is_main():
    score_file = logger.start_run(run_dir, append=resumed is not None)

total_step, total_epi, it = counters["total_step"], counters["total_epi"], counters["it"]
mean_return = -np.inf if counters["mean_return"] is None else counters["mean_return"]
while total_step < args.max_steps and not (
    solve_return is not None and mean_return >= solve_return
):
    if device is not None:
        sample_pol.load_state_dict({k: v.cpu() for k, v in train_pol.state_dict().items()})
    epis = sampler.sample(sample_pol, max_steps=args.steps_per_iter) if sampler else None
    if args.same_data:
        epis = mdist.broadcast_object(epis)  # rank 0's episodes on every rank

    traj = Traj(ddp=args.same_data, device=device or "cpu")
    traj.add_epis(epis)
    traj = ef.compute_vs(traj, train_vf)
    traj = ef.compute_rets(traj, args.gamma, args.lam)
    traj = ef.compute_advs(traj, args.gamma, args.lam)
    traj = ef.centerize_advs(traj)
    traj.register_epis()
    # With --same_data a minibatch is shared by the ranks: world times the per-rank size.
    batch_size = args.batch_size * (world if args.same_data else 1)
    result = ppo_clip.train(
        traj=traj,
        pol=train_pol,
        vf=train_vf,
        optim_pol=optim_pol,
        optim_vf=optim_vf,
        epoch=args.epoch_per_iter,
        batch_size=min(batch_size, traj.num_step),
        max_grad_norm=args.max_grad_norm,
        log_enable=False,
    )
    # Every rank computes the same totals, so every rank leaves the loop at the same time.
    returns = [float(np.sum(e["rews"])) for e in epis]
    iter_step = traj.num_step
    if not args.same_data:  # every rank's own episodes
        returns = [r for rank_returns in mdist.gather_object(returns) for r in rank_returns]
        iter_step = round(mdist.mean_over_ranks(traj.num_step) * world)
    total_step += iter_step
    total_epi += len(returns)
    mean_return = float(np.mean(returns))
    it += 1
    if mdist.is_main():
        logger.record_results(run_dir, result, score_file, total_epi, iter_step,
                              total_step, returns)  # fmt: skip
        logger.save_models(run_dir, pol=train_pol, vf=train_vf)
        print(f"iter {it:3d}  steps {total_step:7d}  mean return {mean_return:8.1f}",
              flush=True)  # fmt: skip
    # after the row (and its TensorBoard scalars): a resume cuts back what came later
    extra = dict(total_step=total_step, total_epi=total_epi, it=it, mean_return=mean_return)
    extra.update(world=world, settings=vars(args), saved_at=time.time())
    save_run(ckpt_dir, objects, extra=extra, step=it)

if sampler is not None:
    sampler.close()
if mdist.is_main():
    logger.close()
    print(f"{args.env_name}: mean return {mean_return:.1f} after {total_step} steps on "
          f"{world} rank(s); run folder: {os.path.abspath(run_dir)}")  # fmt: skip
mdist.destroy()
