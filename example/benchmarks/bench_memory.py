"""Memory: peak resident memory of a Traj holding 1,000,000 Pendulum-v1 steps.

    python example/benchmarks/bench_memory.py
    python example/benchmarks/bench_memory.py --quick     # smoke run: 50,000 steps

The episodes are synthetic: 5,000 episodes of Pendulum's 200 steps whose keys, shapes and
dtypes are copied from one real episode that ``EpiSampler`` samples from Pendulum-v1 with a
``GaussianPol`` (obs/next_obs (T, 3) float32, acs (T, 1) float32, rews float32,
terms/truncs/dones bool, a_is mean/log_std (T, 1) float32; truncated at step 200, as the
time limit does), with random values. Sampling a million steps for real would take minutes
and change nothing that is measured.

Each scenario runs in a fresh subprocess. After the imports and a warm-up on one episode
(so that lazy initialisation is not counted), the process's resident set is read from
/proc/self/status (``VmRSS``) and its high-water mark is reset (``echo 5 >
/proc/self/clear_refs``; where that is refused, ``ru_maxrss`` is used and the baseline is
the high-water mark so far). The Traj's cost is the peak resident set (``VmHWM``) during its
construction minus that baseline, and is compared with the raw bytes of its arrays (the
``data_map`` columns plus the episode index). RSS is what the operating system sees — it
includes the allocator's slack and every transient copy, which tracemalloc would miss for
torch's allocations.

Scenarios:

- one batch: the caller holds the 5,000 episodes (in the baseline), then ``add_epis`` and
  ``register_epis`` once;
- register in 200 batches: 200 rounds of 25 new episodes (5,000 steps, as a sampler would
  return them, dropped after each round) ``add_epis`` + ``register_epis`` into one Traj;
- FIFO add_traj in 240 batches: the same rounds, 1,200,000 steps in all, each registered in
  its own Traj and appended with ``add_traj`` to a ``Traj(max_steps=1_000_000)`` (the
  off-policy replay buffer), which evicts its oldest episodes during the last 40 rounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import machine, print_table  # noqa: E402

SCENARIOS = {
    "one batch": "one",
    "register in 200 batches": "register",
    "FIFO add_traj in 240 batches": "add_traj",
}
TARGET = 1.3
MB = 1 << 20


# ------------------------------------------------------------------ parent side
def episode_spec() -> dict:
    """Keys, trailing shapes and dtypes of a real Pendulum-v1 episode from EpiSampler."""
    import gymnasium as gym

    from machina.pols import make_pol
    from machina.samplers import EpiSampler

    env = gym.make("Pendulum-v1")
    pol = make_pol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, seed=0) as sampler:
        epi = sampler.sample(pol, max_epis=1)[0]

    def spec(arr):
        return [list(arr.shape[1:]), arr.dtype.str]

    out = {"length": len(epi["rews"]), "keys": {}, "groups": {}}
    for key, value in epi.items():
        if isinstance(value, dict):
            out["groups"][key] = {k: spec(v) for k, v in value.items()}
        else:
            out["keys"][key] = spec(value)
    return out


def run_child(scenario: str, spec: dict, steps: int, batch_epis: int) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        scenario,
        "--spec",
        json.dumps(spec),
        "--steps",
        str(steps),
        "--batch_epis",
        str(batch_epis),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------- child side
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class Peak:
    """Resident-set baseline now, and the peak above it later."""

    def __init__(self) -> None:
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current VmRSS
            self.method = "VmHWM reset via /proc/self/clear_refs"
            self.base_kb = _status_kb("VmRSS")
        except OSError:
            self.method = "ru_maxrss (high-water mark not resettable)"
            self.base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def peak_bytes(self) -> int:
        if self.method.startswith("VmHWM"):
            peak_kb = _status_kb("VmHWM")
        else:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (peak_kb - self.base_kb) * 1024

    def now_bytes(self) -> int:
        gc.collect()
        return (_status_kb("VmRSS") - self.base_kb) * 1024


def make_epis(spec: dict, n: int, rng) -> list[dict]:
    """``n`` synthetic episodes with the spec's keys, shapes and dtypes."""
    import numpy as np

    length = spec["length"]

    def array(key: str, tail: list, dtype: str):
        dtype = np.dtype(dtype)
        shape = (length, *tail)
        if dtype == np.bool_:
            arr = np.zeros(shape, dtype=dtype)
            if key in ("truncs", "dones"):
                arr[-1] = True  # Pendulum ends by its time limit only
            return arr
        if dtype.kind == "f":
            return rng.standard_normal(shape, dtype=dtype)
        return np.zeros(shape, dtype=dtype)

    epis = []
    for _ in range(n):
        epi = {k: array(k, *s) for k, s in spec["keys"].items()}
        for group, sub in spec["groups"].items():
            epi[group] = {k: array(k, *s) for k, s in sub.items()}
        epis.append(epi)
    return epis


def child(scenario: str, spec: dict, steps: int, batch_epis: int) -> dict:
    import numpy as np
    import torch

    from machina.traj import Traj

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    num_epi = steps // spec["length"]
    # Warm-up: every code path once on one episode, so lazy initialisation is not counted.
    warm = Traj()
    warm.add_epis(make_epis(spec, 1, rng))
    warm.register_epis()
    Traj(max_steps=10 * spec["length"]).add_traj(warm)
    del warm

    if scenario == "one":
        epis = make_epis(spec, num_epi, rng)  # held by the caller: part of the baseline
        peak = Peak()
        traj = Traj()
        traj.add_epis(epis)
        traj.register_epis()
        held = peak.now_bytes()
        del epis
    else:
        peak = Peak()
        traj = Traj(max_steps=steps) if scenario == "add_traj" else Traj()
        # The FIFO receives 20% more than it holds, so that it evicts.
        total_epi = num_epi * 6 // 5 if scenario == "add_traj" else num_epi
        for start in range(0, total_epi, batch_epis):
            epis = make_epis(spec, min(batch_epis, total_epi - start), rng)
            if scenario == "register":
                traj.add_epis(epis)
                traj.register_epis()
            else:
                batch = Traj()
                batch.add_epis(epis)
                batch.register_epis()
                traj.add_traj(batch)
                del batch
            del epis
        held = peak.now_bytes()
    raw = sum(v.numel() * v.element_size() for v in traj.data_map.values())
    raw += traj.epis_index.nbytes
    return dict(
        num_step=traj.num_step,
        num_epi=traj.num_epi,
        raw=raw,
        peak=peak.peak_bytes(),
        held=held,
        # RSS stops counting shared pages this process lets go of while the system keeps them:
        # the Traj's buffers must be private memory for RSS to be the whole cost.
        shmem=_status_kb("RssShmem") * 1024,
        method=peak.method,
        columns={
            k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in traj.data_map.items()
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--batch_epis", type=int, default=25, help="episodes per batch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="smoke run: 50,000 steps, no verdict")
    args = parser.parse_args()
    if args.quick:
        args.steps = 50_000
    if args.child:
        result = child(args.child, json.loads(args.spec), args.steps, args.batch_epis)
        print(json.dumps(result))
        return

    spec = episode_spec()
    rows, results = [], {}
    for name, scenario in SCENARIOS.items():
        res = run_child(scenario, spec, args.steps, args.batch_epis)
        results[name] = res
        ratio = res["peak"] / res["raw"]
        rows.append(
            [
                name,
                f"{res['num_step']:,}",
                res["raw"] / MB,
                res["peak"] / MB,
                res["held"] / MB,
                ratio,
                "—" if args.quick else ("yes" if ratio <= TARGET else "no"),
            ]
        )
    first = next(iter(results.values()))
    print(
        "\ncolumns: " + ", ".join(f"{k} {tuple(s)} {d}" for k, (s, d) in first["columns"].items())
    )
    print_table(
        f"Memory of a Traj holding {args.steps:,} Pendulum-v1 steps "
        f"(synthetic episodes of {spec['length']} steps)",
        [
            "scenario",
            "steps",
            "raw array MB",
            "peak RSS MB",
            "RSS after MB",
            "peak / raw",
            f"<= {TARGET}x",
        ],
        rows,
    )
    shmem = max(res["shmem"] for res in results.values()) / MB
    print(f"\nmeasured with: {first['method']}, fresh subprocess per scenario")
    print(f"shared memory held by the process at the end (not in the table): {shmem:.2f} MB")
    print(f"machine: {machine()}")
    if args.quick:
        # the storage grows in chunks: at a few MB their slack is a large fraction
        print(f"smoke run: the <= {TARGET}x target is for the default 1,000,000 steps")


if __name__ == "__main__":
    main()
