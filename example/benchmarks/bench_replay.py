"""Replay cost: batches drawn from a 1,000,000-step ``Traj`` against one SAC step.

    python example/benchmarks/bench_replay.py            # full: 1e6 steps, 7 rounds
    python example/benchmarks/bench_replay.py --quick    # smoke run: 1e5 steps, 3 rounds

The replay memory holds Pendulum-v1-shaped episodes (200 steps each; ``obs``/``next_obs``
(3,), ``acs`` (1,), ``rews``, ``terms``, ``truncs``, ``dones``, the policy's ``mean`` and
``log_std``), as ``example/run_sac.py`` fills it, plus the priorities of prioritised replay:
``pris`` (T,), distinct random values as ``traj_functional.update_pris`` leaves them, and
``seq_pris`` (T,) from ``ef.compute_seq_pris`` with ``--seq_length``. The contenders
alternate, round by round (``_harness.alternate``), on one torch thread:

- ``random_batch``: one uniform batch of 256 steps (``Traj.random_batch``), every column
  indexed;
- ``prioritized_random_batch``: one batch of 256 steps by priority, ``proportional`` and
  ``rank_based`` mode (``is_weights`` included);
- ``random_batch_rnn`` / ``prioritized_random_batch_rnn``: one batch of ``--seq_batch``
  windows of ``--seq_length`` steps, uniform and by ``seq_pris`` (both modes);
- ``sample + update``: one prioritised batch of 256 steps and ``traj_functional.update_pris``
  of its 256 priorities (what a prioritised learner does per step), both modes; the
  rank-based mode rebuilds its order after N/16 updated priorities, so its rounds time
  ``--rank_calls`` calls, several rebuild cycles, and its row is the amortised cost;
- ``cpprb sample + update``: cpprb's ``PrioritizedReplayBuffer`` (a C++ sum tree) holding the
  same columns and priorities (``alpha=1``: the stored priorities already carry the
  exponent), ``sample(256)`` (every column gathered, as ours) plus ``update_priorities``;
  skipped with a note when cpprb is not installed (``pip install cpprb``);
- ``gather``: every column at 256 random rows, as each batch above ends: the Traj's own
  gather (numpy's ``take`` on the columns' memory for rows of several values,
  ``index_select`` for single values) beside ``index_select`` for every column (the gather
  before session 19), both on the same rows;
- ``SAC step``: one full SAC gradient step of ``sac.train`` on the same memory (its own
  uniform batch draw included) with ``example/run_sac.py``'s networks (64x64, twin Q).

Each round times several calls of each (``--calls``; ``--pri_calls`` for the proportional
and ``--rank_calls`` for the rank-based draws) and keeps the mean per call; the table gives
the median over rounds and the ratio to a SAC step.

On a shared machine a mean per round also counts the moments the process waits for a core
(a 0.3 ms call descheduled for 10 ms), so a second table times every sample + update call
on its own, alternating ours and cpprb's call by call, and gives medians: proportional and
cpprb directly; rank-based as the median call plus its order rebuilds (told apart by the
sampler they leave behind, each timed whole) spread over the calls between them.

Targets: uniform ``random_batch`` <= 1/10 of a SAC step (issue 4); sample + update of 256
at 1e6 steps <= 0.3 ms proportional and <= 1 ms rank-based amortised (issue 12), printed
beside cpprb's time on the same machine.

A third table times a training loop's replay work: one 200-step episode added to the full
FIFO (the oldest evicted), then 200 sample + update calls, per call over the cycle, ours in
both modes and cpprb's (its ``add`` of the same rows) alternating: what an add costs the
samplers (ours rebuild at the next draw; the rank-based order merges the new steps into the
last sort) is counted there.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable, Iterator

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import alternate, machine, median, print_table  # noqa: E402

from machina.algos import sac  # noqa: E402
from machina.nets import PolNet, QNet  # noqa: E402
from machina.pols import TanhGaussianPol  # noqa: E402
from machina.traj import Traj  # noqa: E402
from machina.traj import epi_functional as ef  # noqa: E402
from machina.traj import traj_functional as tf  # noqa: E402
from machina.vfuncs import DeterministicSAVfunc  # noqa: E402

EPI_LEN = 200
BATCH = 256
TARGET = 0.1


def make_memory(num_step: int, seq_length: int, seed: int = 0) -> Traj:
    """A replay ``Traj(max_steps=num_step)`` filled with random Pendulum-shaped episodes.

    Each step has a distinct priority ``pris`` (``(|td| + 1e-6) ** 0.6`` of a random td, so
    that ranks are not ties) and ``seq_pris`` for windows of ``seq_length`` steps.
    """
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
                    pris=((np.abs(rng.normal(size=EPI_LEN)) + 1e-6) ** 0.6).astype(np.float32),
                    a_is=dict(
                        mean=rng.uniform(-1, 1, size=(EPI_LEN, 1)).astype(np.float32),
                        log_std=np.full((EPI_LEN, 1), -0.5, np.float32),
                    ),
                )
            )
        batch = Traj()
        batch.add_epis(epis)
        batch = ef.compute_seq_pris(batch, seq_length)
        batch.register_epis()
        traj.add_traj(batch)
    return traj


def make_cpprb(traj: Traj):
    """cpprb's PrioritizedReplayBuffer holding ``traj``'s columns and priorities, or None."""
    try:
        import cpprb
    except ImportError:
        return None
    columns = {k: v.numpy() for k, v in traj.data_map.items() if k not in ("pris", "seq_pris")}
    env_dict = {
        k: {"shape": v.shape[1:] or 1, "dtype": v.dtype} for k, v in columns.items()
    }  # fmt: skip
    buffer = cpprb.PrioritizedReplayBuffer(traj.num_step, env_dict, alpha=1.0)
    pris = traj.data_map["pris"].numpy().astype(np.float64)
    buffer.add(**columns, priorities=pris)
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_step", type=int, default=1_000_000, help="replay size")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="calls timed per round")
    parser.add_argument(
        "--pri_calls", type=int, default=100, help="calls per round, proportional prioritised"
    )
    parser.add_argument(
        "--rank_calls",
        type=int,
        default=1000,
        help="calls per round, rank-based prioritised (several order rebuilds)",
    )
    parser.add_argument("--seq_length", type=int, default=10, help="window length, rnn batches")
    parser.add_argument("--seq_batch", type=int, default=64, help="windows per rnn batch")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1e5 steps, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.num_step, args.rounds, args.calls = 100_000, 3, 50
        args.pri_calls, args.rank_calls = 20, 100
    torch.set_num_threads(1)
    torch.manual_seed(0)

    start = time.perf_counter()
    traj = make_memory(args.num_step, args.seq_length)
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

    def timer(batches: Callable[[int], Iterator], calls: int) -> Callable[[], float]:
        """A contender: seconds per batch over ``calls`` batches of ``batches(calls)``."""

        def run() -> float:
            t0 = time.perf_counter()
            for _ in batches(calls):
                pass
            return (time.perf_counter() - t0) / calls

        return run

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

    seq, seq_b = args.seq_length, args.seq_batch
    uniform = f"random_batch({BATCH})"
    # name -> (contender, calls per round)
    contenders = {
        uniform: (timer(lambda n: traj.random_batch(BATCH, n), args.calls), args.calls),
        "SAC step": (sac_step, args.calls),
    }
    for mode, calls in (("proportional", args.pri_calls), ("rank_based", args.rank_calls)):
        contenders[f"prioritized_random_batch({BATCH}, {mode})"] = (
            timer(lambda n, m=mode: traj.prioritized_random_batch(BATCH, n, mode=m), calls),
            calls,
        )
    contenders[f"random_batch_rnn({seq_b}, seq_length={seq})"] = (
        timer(lambda n: traj.random_batch_rnn(seq_b, seq, n), args.calls),
        args.calls,
    )
    for mode, calls in (("proportional", args.pri_calls), ("rank_based", args.rank_calls)):
        contenders[f"prioritized_random_batch_rnn({seq_b}, seq_length={seq}, {mode})"] = (
            timer(
                lambda n, m=mode: traj.prioritized_random_batch_rnn(seq_b, seq, n, mode=m),
                calls,
            ),
            calls,
        )

    # Every batch's gather of all columns at 256 random rows, the Traj's own (numpy's take on
    # the columns' memory, see Batching._batch, since session 19) beside the index_select per
    # column it replaced;
    # one generator each, seeded alike, so that both gather the same rows call by call.
    gens = {own: torch.Generator().manual_seed(2) for own in (True, False)}

    def gathers(n: int, own: bool) -> Iterator:
        gen = gens[own]
        for _ in range(n):
            idx = torch.randint(0, traj.num_step, (BATCH,), generator=gen)
            if own:
                yield traj._batch(idx)
            else:
                yield {k: torch.index_select(v, 0, idx) for k, v in traj.data_map.items()}

    for name, own in (("Traj's", True), ("index_select per column", False)):
        contenders[f"gather of {BATCH} random rows, {name}"] = (
            timer(lambda n, o=own: gathers(n, o), args.calls),
            args.calls,
        )

    # sample + update: what a prioritised learner does per gradient step
    tds = torch.as_tensor(np.random.default_rng(1).normal(size=(64, BATCH)), dtype=torch.float32)

    def sample_update(n: int, mode: str) -> Iterator:
        batches = traj.prioritized_random_batch(BATCH, n, True, mode=mode)
        for i, (batch, indices) in enumerate(batches):
            tf.update_pris(traj, tds[i % len(tds)], indices)
            yield batch

    for mode, calls in (("proportional", args.pri_calls), ("rank_based", args.rank_calls)):
        contenders[f"sample + update_pris({BATCH}), {mode}"] = (
            timer(lambda n, m=mode: sample_update(n, m), calls),
            calls,
        )
    cpprb_buffer = make_cpprb(traj)
    new_pris = tds.abs().double().numpy() + 1e-6
    if cpprb_buffer is None:
        print("cpprb is not installed (pip install cpprb): its row is left out")
    else:

        def cpprb_batches(n: int) -> Iterator:
            for i in range(n):
                batch = cpprb_buffer.sample(BATCH, beta=0.4)
                cpprb_buffer.update_priorities(batch["indexes"], new_pris[i % len(new_pris)])
                yield batch

        contenders[f"cpprb sample + update_priorities({BATCH})"] = (
            timer(cpprb_batches, args.pri_calls),
            args.pri_calls,
        )

    for fn, _ in contenders.values():  # warm-up: first calls allocate and import
        fn()
    results = alternate({name: fn for name, (fn, _) in contenders.items()}, args.rounds)
    per_call = {name: median(values) for name, values in results.items()}
    step_s = per_call["SAC step"]
    rows = []
    for name, (_, calls) in contenders.items():
        if name == "SAC step":
            continue
        ratio = per_call[name] / step_s
        rows.append([name, per_call[name] * 1e3, f"{ratio:.3f}", calls])
    rows.insert(1, ["SAC gradient step (64x64 nets, batch 256)", step_s * 1e3, "1", args.calls])
    print_table(
        f"Replay: batches from a {traj.num_step:,}-step Traj vs one SAC step "
        f"(median of {args.rounds} rounds)",
        ["operation", "ms per call", "/ SAC step", "calls per round"],
        rows,
    )
    print(f"\nmachine: {machine()}; torch threads: {torch.get_num_threads()}")
    ratio = per_call[uniform] / step_s
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"target: {uniform} / SAC step <= {TARGET:.2f} (got {ratio:.3f}, {verdict})")
    cpprb_name = f"cpprb sample + update_priorities({BATCH})"
    for mode, target_ms in (("proportional", 0.3), ("rank_based", 1.0)):
        ms = per_call[f"sample + update_pris({BATCH}), {mode}"] * 1e3
        versus = ""
        if cpprb_name in per_call:
            versus = f"; {ms / (per_call[cpprb_name] * 1e3):.2f}x cpprb's time here"
        print(f"target: sample + update, {mode} <= {target_ms} ms (got {ms:.3f} ms{versus})")
    if cpprb_buffer is not None:
        per_call_medians(traj, cpprb_buffer, tds, new_pris, args.rounds)
    with_adds(traj, cpprb_buffer, tds, new_pris, args.rounds, args.seq_length)
    over = [
        f"{name} ({per_call[name] / step_s:.2f}x)"
        for name in per_call
        if name not in (uniform, "SAC step", cpprb_name) and per_call[name] / step_s > TARGET
    ]
    if over:
        print(f"over {TARGET:.2f} of a SAC step (information, no target): " + "; ".join(over))


def per_call_medians(traj: Traj, buffer, tds: torch.Tensor, new_pris: np.ndarray, rounds: int):
    """Sample + update of ``BATCH`` timed call by call: ours (both modes) and cpprb's, each
    call alternating with the other side's; medians, and the rank-based amortised cost."""
    calls = 200
    prop, cpp, rank, rebuilds = [], [], [], []
    # the cached rank-based sampler (private: only to tell the rebuilding calls apart)
    rank_key = ("pris", None, "rank_based", 0.6)
    for _round in range(rounds):
        for i in range(calls):
            t0 = time.perf_counter()
            _, idx = traj.prioritized_random_batch_once(BATCH, True)
            tf.update_pris(traj, tds[i % len(tds)], idx)
            t1 = time.perf_counter()
            batch = buffer.sample(BATCH, beta=0.4)
            buffer.update_priorities(batch["indexes"], new_pris[i % len(new_pris)])
            t2 = time.perf_counter()
            prop.append(t1 - t0)
            cpp.append(t2 - t1)
        for i in range(5 * calls):
            before = traj._samplers.get(rank_key)
            t0 = time.perf_counter()
            _, idx = traj.prioritized_random_batch_once(BATCH, True, mode="rank_based")
            tf.update_pris(traj, tds[i % len(tds)], idx)
            elapsed = time.perf_counter() - t0
            fresh = before is not None and traj._samplers.get(rank_key) is not before
            (rebuilds if fresh else rank).append(elapsed)
    n = traj.num_step
    cycle = max(1, int(n * 0.0625)) / BATCH  # calls between rank rebuilds (N/16 updates)
    rank_ms = median(rank) * 1e3
    rebuild_ms = median(rebuilds) * 1e3 if rebuilds else float("nan")
    amortised = rank_ms + rebuild_ms / cycle
    cpp_ms = median(cpp) * 1e3
    prop_ms = median(prop) * 1e3
    name = f"sample + update_pris({BATCH})"
    rows = [
        [f"{name}, proportional", prop_ms, f"{prop_ms / cpp_ms:.2f}x", len(prop)],
        [f"cpprb sample + update_priorities({BATCH})", cpp_ms, "1x", len(cpp)],
        [f"{name}, rank_based, without a rebuild", rank_ms, f"{rank_ms / cpp_ms:.2f}x", len(rank)],
        [f"rank_based order rebuild (every {cycle:.0f} calls)", rebuild_ms, "—", len(rebuilds)],
        [f"{name}, rank_based, amortised", amortised, f"{amortised / cpp_ms:.2f}x", "—"],
    ]
    print_table(
        f"Per call, {n:,} steps: medians of single calls, ours and cpprb's alternating",
        ["operation", "ms per call", "/ cpprb", "calls"],
        rows,
    )
    for mode, ms, target in (
        ("proportional", median(prop) * 1e3, 0.3),
        ("rank_based", amortised, 1.0),
    ):
        verdict = "met" if ms <= target else "MISSED"
        print(f"target (per-call medians): {mode} <= {target} ms (got {ms:.3f} ms, {verdict})")


def with_adds(traj: Traj, buffer, tds: torch.Tensor, new_pris: np.ndarray, rounds: int,
              seq_length: int) -> None:  # fmt: skip
    """A training loop's replay work: add one 200-step episode (the full FIFO evicts the
    oldest), then ``EPI_LEN`` sample + update calls; the cycle's time per call, so that what
    an add costs the samplers (a rebuild at the next draw) is counted. Ours in each mode in
    turn, cycle by cycle alternating with cpprb's (its ``add`` of the same rows)."""
    episode = make_memory(EPI_LEN, seq_length, seed=7)  # one episode, as make_memory's
    # without priorities: add_traj gives its steps the highest stored one, as a learner's
    del episode.data_map["pris"]
    columns = {k: v.numpy() for k, v in episode.data_map.items() if k not in ("pris", "seq_pris")}
    cycles_per_round = 3

    def ours(mode: str) -> float:
        t0 = time.perf_counter()
        traj.add_traj(episode)
        for i in range(EPI_LEN):
            _, idx = traj.prioritized_random_batch_once(BATCH, True, mode=mode)
            tf.update_pris(traj, tds[i % len(tds)], idx)
        return (time.perf_counter() - t0) / EPI_LEN

    def cpprb_cycle() -> float:
        t0 = time.perf_counter()
        buffer.add(**columns)  # at the highest priority, as add_traj's new steps
        for i in range(EPI_LEN):
            batch = buffer.sample(BATCH, beta=0.4)
            buffer.update_priorities(batch["indexes"], new_pris[i % len(new_pris)])
        return (time.perf_counter() - t0) / EPI_LEN

    # One mode at a time (a learner uses one): the other mode's priority writes would reach
    # a sampler that does not follow them and cost it a full rebuild at its next draw.
    times: dict[str, list[float]] = {"proportional": [], "rank_based": [], "cpprb": []}
    for mode in ("proportional", "rank_based"):
        ours(mode)  # warm-up: the sampler built (after the other mode's writes) before timing
        for _round in range(rounds):
            for _ in range(cycles_per_round):
                times[mode].append(ours(mode))
                if buffer is not None:
                    times["cpprb"].append(cpprb_cycle())
    if buffer is None:
        del times["cpprb"]
    cpp_ms = median(times["cpprb"]) * 1e3 if buffer is not None else float("nan")
    rows = [
        [f"sample + update_pris({BATCH}), {name}" if name != "cpprb" else
         f"cpprb sample + update_priorities({BATCH})", median(t) * 1e3,
         f"{median(t) * 1e3 / cpp_ms:.2f}x", len(t)]
        for name, t in times.items()
    ]  # fmt: skip
    print_table(
        f"In a training loop, {traj.num_step:,} steps: one {EPI_LEN}-step episode added, then "
        f"{EPI_LEN} sample + update calls; ms per call over the cycle (median of cycles)",
        ["operation", "ms per call", "/ cpprb", "cycles"],
        rows,
    )


if __name__ == "__main__":
    main()
