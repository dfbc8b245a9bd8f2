"""Sampling on Ray: the Ray backend against worker processes, a simulated cluster, the driver.

    python example/benchmarks/bench_ray.py --quick   # smoke run: few steps, 2 rounds
    python example/benchmarks/bench_ray.py           # the README's numbers
    python example/benchmarks/bench_ray.py --only driver --actors 1,2,4,8,16

Three parts, CartPole-v1 (``gymnasium.make``) and a 64x64 MLP policy (``make_pol``):

- **backends**: ``EpiSampler(num_parallel=2, num_envs=64)`` with ``backend="ray"`` (an
  embedded local Ray instance) against ``backend="process"``: env steps/s of
  ``sample(max_steps=...)``, alternating rounds, the median of the per-round ratios (target
  >= 0.9); and the start-up time of each (construction until the first sample can run),
  with Ray's own start (what the first Ray sampler of a script adds) timed apart.
- **cluster**: the same 2 x 64 sampler on a simulated two-node cluster
  (``ray.cluster_utils.Cluster``, 1 CPU per node) against one node with 2 CPUs, steps/s.
  On one machine the two "nodes" share its cores and memory: this measures what a cluster
  adds (a second raylet and object store, cross-node fetches of the task and results), not
  more hardware.
- **driver**: the driver's cost per ``sample`` for 1..16 actors (one env each, the same
  steps per actor) on a simulated two-node cluster: putting the task (the policy weights)
  into the object store once, submitting one call per actor, unpickling and unpacking the
  actors' messages, and the bytes of each. A least-squares line over the actors gives the
  cost per actor and what it predicts for 100 and 1,000 actors.

Every sampler is built and warmed up (one sample) before the clock starts.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings

import gymnasium as gym
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import alternate, machine, median, print_table  # noqa: E402

from machina.pols import make_pol  # noqa: E402
from machina.samplers import EpiSampler  # noqa: E402

ENV_ID = "CartPole-v1"


def _policy():
    env = gym.make(ENV_ID)
    return make_pol(env.observation_space, env.action_space, h_size=64)


class Contender:
    """One EpiSampler, timed at construction and per sample."""

    def __init__(self, steps: int, **kwargs) -> None:
        self.pol = _policy()
        self.steps = steps
        start = time.perf_counter()
        self.sampler = EpiSampler(functools.partial(gym.make, ENV_ID), self.pol, **kwargs)
        self.startup = time.perf_counter() - start
        self.sampler.sample(self.pol, max_steps=steps // 4)  # warm-up

    def __call__(self) -> float:
        start = time.perf_counter()
        epis = self.sampler.sample(self.pol, max_steps=self.steps)
        return sum(len(e["rews"]) for e in epis) / (time.perf_counter() - start)

    def close(self) -> None:
        self.sampler.close()


def paired_ratio(results: dict[str, list[float]], num: str, den: str) -> float:
    return median([a / b for a, b in zip(results[num], results[den])])


def bench_backends(steps: int, repeats: int) -> None:
    import logging

    import ray

    if ray.is_initialized():
        ray.shutdown()
    names = {"process": "process backend 2 x 64", "ray": "Ray backend 2 x 64"}
    contenders = {}
    try:
        contenders[names["process"]] = Contender(steps, num_parallel=2, num_envs=64)
        # Ray's own start, as the embedded default does it, timed apart from the actors'.
        start = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        ray_start = time.perf_counter() - start
        contenders[names["ray"]] = Contender(steps, num_parallel=2, num_envs=64, backend="ray")
        results = alternate(contenders, repeats)
    finally:
        for c in contenders.values():
            c.close()
        ray.shutdown()
    ref = names["process"]
    rows = [
        [name, median(results[name]), paired_ratio(results, name, ref), c.startup]
        for name, c in contenders.items()
    ]
    rows[0].append("")
    rows[1].append(">= 0.9")
    rows.append(["(Ray's own start, before the Ray backend's)", "", "", ray_start, ""])
    header = ["sampler", "steps/s", "ratio to process", "start-up s", "target"]
    print_table(f"{ENV_ID}: Ray against worker processes", header, rows)


def _cluster(nodes: list[dict]):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=nodes[0])
    for args in nodes[1:]:
        cluster.add_node(**args)
    # Cluster writes its address where a bare ray.init() on this machine would look:
    # remove it, other programs here must not attach to this benchmark's cluster.
    import ray

    path = ray._private.utils.get_ray_address_file(None)
    if os.path.exists(path) and open(path).read().strip() == cluster.address:
        os.remove(path)
    return cluster


def _on_cluster(nodes: list[dict], run):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster = _cluster(nodes)
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="warning")
        cluster.wait_for_nodes()
        return run()
    finally:
        ray.shutdown()
        cluster.shutdown()


def bench_cluster(steps: int, repeats: int) -> None:
    layouts = {
        "one node, 2 CPUs": [{"num_cpus": 2}],
        "two nodes, 1 CPU each": [{"num_cpus": 1}, {"num_cpus": 1}],
    }
    rates = {}
    for name, nodes in layouts.items():

        def run() -> list[float]:
            c = Contender(steps, num_parallel=2, num_envs=64, backend="ray")
            try:
                return [c() for _ in range(repeats)]
            finally:
                c.close()

        rates[name] = _on_cluster(nodes, run)
    one = median(rates["one node, 2 CPUs"])
    rows = [[name, median(r), median(r) / one] for name, r in rates.items()]
    header = ["Ray cluster (2 actors x 64 envs)", "steps/s", "ratio to one node"]
    print_table(f"{ENV_ID}: simulated two-node cluster against one node", header, rows)


def bench_driver(actor_counts: list[int], steps_per_actor: int, repeats: int) -> None:
    def run() -> list[list]:
        rows = []
        for n in actor_counts:
            pol = _policy()
            sampler = EpiSampler(
                functools.partial(gym.make, ENV_ID),
                pol,
                num_parallel=n,
                backend="ray",
                num_cpus=0.01,  # 16 actors on a 2-core machine: placement, not compute
            )
            try:
                sampler.sample(pol, max_steps=steps_per_actor * n)
                samples = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    sampler.sample(pol, max_steps=steps_per_actor * n)
                    stats = dict(sampler._pool.last_stats, wall_s=time.perf_counter() - start)
                    samples.append(stats)
            finally:
                sampler.close()
            med = {key: median([s[key] for s in samples]) for key in samples[0]}
            driver = med["broadcast_s"] + med["submit_s"] + med["gather_s"]
            rows.append(
                [
                    n,
                    med["wall_s"],
                    driver,
                    med["broadcast_s"],
                    med["submit_s"],
                    med["gather_s"],
                    med["task_bytes"],
                    med["result_bytes"],
                ]
            )
        return rows

    nodes = [{"num_cpus": 8}, {"num_cpus": 8}]
    rows = _on_cluster(nodes, run)
    header = [
        "actors",
        "sample wall s",
        "driver s",
        "put task s",
        "submit s",
        "gather s",
        "task bytes",
        "result bytes",
    ]
    table = [[r[0], r[1], r[2] * 1e3, r[3] * 1e3, r[4] * 1e3, r[5] * 1e3, r[6], r[7]] for r in rows]
    header = [h.replace(" s", " ms") if h not in ("actors", "sample wall s") else h for h in header]
    print_table(
        f"Driver cost per sample on a simulated 2-node cluster ({steps_per_actor} steps per actor)",
        header,
        table,
    )
    n = np.array([r[0] for r in rows], float)
    fits = {}
    for j, what in ((2, "driver s"), (4, "submit s"), (5, "gather s"), (7, "result bytes")):
        slope, intercept = np.polyfit(n, [r[j] for r in rows], 1)
        fits[what] = (slope, intercept)
    pred = []
    for what, (slope, intercept) in fits.items():
        unit = 1e3 if what.endswith(" s") else 1.0
        label = what.replace(" s", " ms") if what.endswith(" s") else what
        pred.append(
            [
                label,
                slope * unit,
                intercept * unit,
                (intercept + 100 * slope) * unit,
                (intercept + 1000 * slope) * unit,
            ]
        )
    print_table(
        "Fitted per-actor driver cost and what it predicts",
        ["quantity", "per actor", "fixed", "100 actors", "1,000 actors"],
        pred,
    )
    task = rows[-1][6]
    print(
        f"\nThe task (policy weights, pickled) is {task:,.0f} bytes, put once per sample: a "
        "cluster of K nodes moves it K times (each node's object store fetches it once), "
        "whatever the number of actors."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, 2 rounds")
    parser.add_argument("--steps", type=int, default=None, help="env steps per sample")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5)")
    parser.add_argument("--only", choices=("backends", "cluster", "driver"), default=None)
    parser.add_argument("--actors", default=None, help="driver part: actor counts, e.g. 1,4,16")
    args = parser.parse_args()
    steps = args.steps or (8_192 if args.quick else 65_536)
    repeats = args.repeats or (2 if args.quick else 5)
    actors = [
        int(a) for a in (args.actors or ("1,4,16" if args.quick else "1,2,4,8,16")).split(",")
    ]
    warnings.filterwarnings("ignore")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    if args.only in (None, "backends"):
        bench_backends(steps, repeats)
    if args.only in (None, "cluster"):
        bench_cluster(steps, repeats)
    if args.only in (None, "driver"):
        bench_driver(actors, 256 if args.quick else 1024, repeats)


if __name__ == "__main__":
    main()
