"""Data-parallel PPO: 2 ranks against 1 on the same total data, time per training iteration.

    python example/benchmarks/bench_ddp.py            # 2 alternating launches of each
    python example/benchmarks/bench_ddp.py --quick    # smoke run: 1 launch each, 3 iterations

Each contender is a real ``torchrun`` launch of this file on 127.0.0.1 (gloo, CPU, one torch
thread per rank). Every rank samples the same ``--steps`` Pendulum-v1 steps (same seed), so
the data are identical; one iteration is one ``ppo_clip.train`` call (``--epoch`` epochs,
minibatches of ``--batch_size`` steps, gradient clipping) on a ``Traj(ddp=True)``: with 2
ranks each computes half of every minibatch and the gradients are averaged in one all-reduce
per step. The number of optimiser steps is the same for both. Reported: the median seconds per
iteration over ``--iters`` timed iterations (after one warm-up) and launches, and the ratio
1 rank / 2 ranks (above 1: the 2-rank run is faster). Launches alternate, 1 rank first on
even rounds.

Two ranks can at best halve the forward/backward work; the all-reduce of the gradient (one
per optimiser step) and the per-batch share bookkeeping are the overhead. On a machine whose
cores are busy with other work the two ranks compete with it, so read the ratio with the
machine line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--quick", action="store_true")
parser.add_argument("--steps", type=int, default=8192, help="steps of data per iteration")
parser.add_argument("--epoch", type=int, default=4)
parser.add_argument("--batch_size", type=int, default=1024, help="steps per minibatch (total)")
parser.add_argument("--h_size", type=int, default=64)
parser.add_argument("--iters", type=int, default=5, help="timed iterations per launch")
parser.add_argument("--repeats", type=int, default=2, help="launches of each contender")
parser.add_argument("--out", default=None, help="(worker) JSON file rank 0 writes")
args = parser.parse_args()
if args.quick:
    args.iters, args.repeats, args.steps = 3, 1, 4096


def worker() -> None:
    import torch

    import machina.distributed as mdist
    from machina.algos import ppo_clip
    from machina.envs import GymEnv
    from machina.pols import make_pol
    from machina.samplers import EpiSampler
    from machina.traj import Traj
    from machina.traj import epi_functional as ef
    from machina.vfuncs import make_vf

    mdist.init(timeout=300)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = GymEnv("Pendulum-v1")
    pol = make_pol(env.observation_space, env.action_space, h_size=args.h_size)
    vf = make_vf(env.observation_space, h_size=args.h_size)
    with EpiSampler(env, pol, num_envs=8, seed=0) as sampler:
        epis = sampler.sample(pol, max_steps=args.steps)  # the same episodes on every rank
    optim_pol = torch.optim.Adam(pol.parameters(), 3e-4)
    optim_vf = torch.optim.Adam(vf.parameters(), 3e-4)
    times = []
    for it in range(args.iters + 1):
        traj = Traj(ddp=True)
        traj.add_epis(epis)
        traj = ef.compute_vs(traj, vf)
        traj = ef.compute_rets(traj, 0.99, 0.95)
        traj = ef.compute_advs(traj, 0.99, 0.95)
        traj = ef.centerize_advs(traj)
        traj.register_epis()
        mdist.barrier()
        start = time.perf_counter()
        ppo_clip.train(traj=traj, pol=pol, vf=vf, optim_pol=optim_pol, optim_vf=optim_vf,
                       epoch=args.epoch, batch_size=args.batch_size, max_grad_norm=0.5,
                       log_enable=False)  # fmt: skip
        mdist.barrier()
        if it > 0:  # the first iteration warms up
            times.append(time.perf_counter() - start)
    if mdist.is_main():
        steps = sum(len(e["rews"]) for e in epis)
        with open(args.out, "w") as f:
            json.dump(dict(times=times, steps=steps, world=mdist.get_world_size()), f)
    mdist.destroy()


def launch(nproc: int, out: str) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1", f"--master_port={port}", os.path.abspath(__file__),
        "--steps", str(args.steps), "--epoch", str(args.epoch), "--batch_size",
        str(args.batch_size), "--h_size", str(args.h_size), "--iters", str(args.iters),
        "--out", out,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun --nproc_per_node {nproc} failed:\n{output[-3000:]}")
    with open(out) as f:
        return json.load(f)


def main() -> None:
    from _harness import machine, median, print_table

    runs: dict[int, list[float]] = {1: [], 2: []}
    steps = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for nproc in (1, 2) if r % 2 == 0 else (2, 1):
                result = launch(nproc, os.path.join(tmp, f"r{r}_n{nproc}.json"))
                runs[nproc] += result["times"]
                steps = result["steps"]
    one, two = median(runs[1]), median(runs[2])
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} (after the runs)")
    nets = f"{args.h_size}x{args.h_size}"
    print(
        f"data: {steps} Pendulum-v1 steps, {args.epoch} epochs, minibatch {args.batch_size} "
        f"steps, {nets} nets; {len(runs[1])} timed iterations each"
    )
    print_table(
        "Data-parallel PPO (ppo_clip.train, Traj(ddp=True), gloo on CPU)",
        ["ranks", "s / iteration (median)", "ratio 1 rank / this"],
        [[1, one, 1.0], [2, two, one / two]],
    )


if __name__ == "__main__":
    if "RANK" in os.environ:
        worker()
    else:
        main()
