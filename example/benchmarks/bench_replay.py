"""Replay cost: one ``random_batch`` of 256 from a 1,000,000-step ``Traj`` against one SAC step.

    python example/benchmarks/bench_replay.py            # full: 1e6 steps, 7 rounds
    python example/benchmarks/bench_replay.py --quick    # smoke run: 1e5 steps, 3 rounds

The replay memory holds Pendulum-v1-shaped episodes (200 steps each; ``obs``/``next_obs``
(3,), ``acs`` (1,), ``rews``, ``terms``, ``truncs``, ``dones`` and the policy's ``mean`` and
``log_std``), as ``example/run_sac.py`` fills it. Two contenders alternate, round by round
(``_harness.alternate``), on one torch thread:

- ``random_batch``: drawing one uniform batch of 256 steps (``Traj.random_batch``), every
  column indexed;
- ``SAC step``: one full SAC gradient step of ``sac.train`` on the same memory (its own
  batch draw included) with ``example/run_sac.py``'s networks (64x64, twin Q).

Each round times ``--calls`` calls of each and keeps the mean per call; the table gives the
median over rounds and the ratio. Target: ``random_batch`` <= 1/10 of a SAC step.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import alternate, machine, median, print_table  # noqa: E402

from machina.algos import sac  # noqa: E402
from machina.nets import PolNet, QNet  # noqa: E402
from machina.pols import TanhGaussianPol  # noqa: E402
from machina.traj import Traj  # noqa: E402
from machina.vfuncs import DeterministicSAVfunc  # noqa: E402

EPI_LEN = 200
BATCH = 256


def make_memory(num_step: int, seed: int = 0) -> Traj:
    """A replay ``Traj(max_steps=num_step)`` filled with random Pendulum-shaped episodes."""
    rng = np.random.default_rng(seed)
    n_epi = num_step // EPI_LEN
    traj = Traj(max_steps=num_step)
    chunk = 500  # episodes per add_traj, as a training loop adds them iteration by iteration
    for start in range(0, n_epi, chunk):
        epis = []
        for _ in range(min(chunk, n_epi - start)):
            obs = rng.normal(size=(EPI_LEN + 1, 3)).astype(np.float32)
            truncs = np.zeros(EPI_LEN, bool)
            truncs[-1] = True
            epis.append(
                dict(
                    obs=obs[:-1],
                    next_obs=obs[1:],
                    acs=rng.uniform(-1, 1, size=(EPI_LEN, 1)).astype(np.float32),
                    rews=rng.normal(size=EPI_LEN).astype(np.float32),
                    terms=np.zeros(EPI_LEN, bool),
                    truncs=truncs,
                    dones=truncs.copy(),
                    a_is=dict(
                        mean=rng.uniform(-1, 1, size=(EPI_LEN, 1)).astype(np.float32),
                        log_std=np.full((EPI_LEN, 1), -0.5, np.float32),
                    ),
                )
            )
        batch = Traj()
        batch.add_epis(epis)
        batch.register_epis()
        traj.add_traj(batch)
    return traj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_step", type=int, default=1_000_000, help="replay size")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="calls timed per round")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1e5 steps, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.num_step, args.rounds, args.calls = 100_000, 3, 50
    torch.set_num_threads(1)
    torch.manual_seed(0)

    start = time.perf_counter()
    traj = make_memory(args.num_step)
    fill = time.perf_counter() - start
    print(f"replay Traj: {traj.num_step} steps, {traj.num_epi} episodes (filled in {fill:.1f} s)")

    ob = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    ac = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac))
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = torch.zeros((), requires_grad=True)
    optims = dict(
        optim_pol=torch.optim.Adam(pol.parameters(), 1e-3),
        optim_qfs=[torch.optim.Adam(qf.parameters(), 1e-3) for qf in qfs],
        optim_alpha=torch.optim.Adam([log_alpha], 1e-3),
    )

    def draw() -> float:
        batches = traj.random_batch(BATCH, args.calls)
        t0 = time.perf_counter()
        for _ in batches:
            pass
        return (time.perf_counter() - t0) / args.calls

    def sac_step() -> float:
        t0 = time.perf_counter()
        sac.train(
            traj,
            pol,
            qfs,
            targ_qfs,
            log_alpha,
            epoch=args.calls,
            batch_size=BATCH,
            tau=0.005,
            gamma=0.99,
            log_enable=False,
            **optims,
        )
        return (time.perf_counter() - t0) / args.calls

    draw(), sac_step()  # warm-up: first calls allocate and import
    results = alternate({"random_batch(256)": draw, "SAC step": sac_step}, args.rounds)
    batch_s, step_s = median(results["random_batch(256)"]), median(results["SAC step"])
    ratio = batch_s / step_s
    print_table(
        f"Replay: random_batch of {BATCH} from a {traj.num_step:,}-step Traj vs one SAC step "
        f"(median of {args.rounds} rounds x {args.calls} calls)",
        ["operation", "ms per call"],
        [
            ["random_batch(256)", batch_s * 1e3],
            ["SAC gradient step (64x64 nets, batch 256)", step_s * 1e3],
            ["ratio random_batch / SAC step", ratio],
        ],
    )
    print(f"\nmachine: {machine()}; torch threads: {torch.get_num_threads()}")
    print(f"target: ratio <= 0.10 (got {ratio:.3f})")


if __name__ == "__main__":
    main()
