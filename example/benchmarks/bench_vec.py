"""Sampling from gymnasium vector environments, and with a prepro, side by side.

    python example/benchmarks/bench_vec.py                 # full run
    python example/benchmarks/bench_vec.py --quick         # smoke run: few steps, 2 rounds
    python example/benchmarks/bench_vec.py --clock cpu     # on a shared machine

Env steps per second with a 64x64 MLP policy (``make_pol(..., h_size=64)``), one process.

Vector environments (issue 12, section 1), CartPole-v1 at ``--num-envs`` (256) environments:

- **random actions**: the native vector environment (``gymnasium.make_vec(...,
  vectorization_mode="vector_entry_point")``) stepped with pre-drawn random actions: the
  physical limit;
- **bare loop**: the same vector environment stepped with the policy's torch forward under
  ``torch.inference_mode`` (``pol(obs)``, sampling included), nothing stored: the reference of
  the target (EpiSampler at least 0.8x of it);
- **EpiSampler vector (numpy path)** / **(torch path)**: ``EpiSampler(vec, pol)`` on that
  vector environment, ``sample(pol, max_steps=...)``, default ``fast_inference=True`` and
  ``False``; counted: the steps of the whole episodes it returns;
- **EpiSampler per-env**: the per-env engine on ``num_envs`` single ``gymnasium.make``
  environments (what the sampler did before vector environments).

Prepro (issue 12, section 4): EpiSampler (per-env engine, 32 CartPole environments; and the
vector path at ``--num-envs``) with ``prepro=BasePrePro(...)`` against the same without.

Contenders of one table alternate (order reversed every round), ``--repeats`` rounds; ratios
are medians over rounds of the ratio within a round. Samplers are built and warmed up by one
call before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import alternate, machine, median, print_table  # noqa: E402

from machina.pols import make_pol  # noqa: E402
from machina.prepro import BasePrePro  # noqa: E402
from machina.samplers import EpiSampler  # noqa: E402

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
ENV_ID = "CartPole-v1"


def make_vec(num_envs: int) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point")


class RandomVec:
    """The native vector environment with pre-drawn random actions, no policy."""

    def __init__(self, num_envs: int, steps: int, clock: Callable[[], float]) -> None:
        self.vec, self.clock = make_vec(num_envs), clock
        self.vec.reset(seed=0)
        rng = np.random.default_rng(0)
        self.rounds = max(1, steps // num_envs)
        self.actions = rng.integers(0, 2, size=(self.rounds, num_envs))
        self.num_envs = num_envs

    def __call__(self) -> float:
        step, actions = self.vec.step, self.actions
        start = self.clock()
        for i in range(self.rounds):
            step(actions[i])
        return self.rounds * self.num_envs / (self.clock() - start)


class BareLoop:
    """The policy's torch forward under inference_mode, then ``step``; nothing stored."""

    def __init__(
        self, pol: torch.nn.Module, num_envs: int, steps: int, clock: Callable[[], float]
    ) -> None:
        self.pol, self.vec, self.clock = pol, make_vec(num_envs), clock
        self.obs, _ = self.vec.reset(seed=0)
        self.rounds = max(1, steps // num_envs)
        self.num_envs = num_envs

    def __call__(self) -> float:
        pol, step, obs = self.pol, self.vec.step, self.obs
        start = self.clock()
        with torch.inference_mode():
            for _ in range(self.rounds):
                ac_real = pol(torch.from_numpy(obs))[0]
                obs = step(np.asarray(ac_real))[0]
        self.obs = obs
        return self.rounds * self.num_envs / (self.clock() - start)


class Sampler:
    """``EpiSampler.sample(pol, max_steps=steps)``: steps of the returned episodes per second."""

    def __init__(
        self,
        env: object,
        pol: torch.nn.Module,
        steps: int,
        clock: Callable[[], float],
        **kwargs: object,
    ) -> None:
        self.pol, self.steps, self.clock = pol, steps, clock
        self.sampler = EpiSampler(env, pol, seed=0, **kwargs)
        self()  # warm-up

    def __call__(self) -> float:
        start = self.clock()
        epis = self.sampler.sample(self.pol, max_steps=self.steps)
        elapsed = self.clock() - start
        return sum(len(e["rews"]) for e in epis) / elapsed

    def close(self) -> None:
        self.sampler.close()


def prepro_for(env: gym.Env) -> BasePrePro:
    """A BasePrePro with statistics (as after some training), so it really normalises."""
    prepro = BasePrePro(env.observation_space)
    prepro.update(np.random.default_rng(0).normal(size=(1000, *env.observation_space.shape)))
    return prepro


def table(
    title: str, contenders: dict[str, Callable[[], float]], ref: str, repeats: int
) -> dict[str, float]:
    results = alternate(contenders, repeats)
    rows = []
    ratios = {}
    for name, rates in results.items():
        ratio = median([a / b for a, b in zip(rates, results[ref])])
        ratios[name] = ratio
        rows.append([name, f"{median(rates):,.0f}", f"{ratio:.2f}"])
    print_table(title, ["contender", "steps/s (median)", f"ratio to {ref}"], rows)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps, 2 rounds")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None, help="steps per measurement")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--only", choices=["vector", "prepro"], default=None)
    args = parser.parse_args()
    steps = args.steps or (32_768 if args.quick else 262_144)
    repeats = args.repeats or (2 if args.quick else 5)
    clock = CLOCKS[args.clock]
    n = args.num_envs
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = gym.make(ENV_ID)
    pol = make_pol(env.observation_space, env.action_space, h_size=64)
    print(machine(), f"| clock: {args.clock} | load average: {os.getloadavg()}")

    if args.only in (None, "vector"):
        samplers = {
            "EpiSampler vector (numpy path)": Sampler(make_vec(n), pol, steps, clock),
            "EpiSampler vector (torch path)": Sampler(
                make_vec(n), pol, steps, clock, fast_inference=False
            ),
            "EpiSampler per-env engine": Sampler(
                lambda: gym.make(ENV_ID), pol, steps, clock, num_envs=n
            ),
        }
        contenders: dict[str, Callable[[], float]] = {
            "random actions (no policy)": RandomVec(n, steps, clock),
            "bare loop (torch forward + step)": BareLoop(pol, n, steps, clock),
            **samplers,
        }
        ratios = table(
            f"{ENV_ID}, {n} envs, vector environment, one process",
            contenders,
            "bare loop (torch forward + step)",
            repeats,
        )
        per_env = ratios["EpiSampler per-env engine"]
        print(
            f"EpiSampler vector (numpy path) / per-env engine: "
            f"{ratios['EpiSampler vector (numpy path)'] / per_env:.2f}x"
        )
        for s in samplers.values():
            s.close()

    if args.only in (None, "prepro"):
        prepro = prepro_for(env)
        num = 32
        samplers = {
            f"per-env, {num} envs, no prepro": Sampler(
                lambda: gym.make(ENV_ID), pol, steps, clock, num_envs=num
            ),
            f"per-env, {num} envs, BasePrePro": Sampler(
                lambda: gym.make(ENV_ID), pol, steps, clock, num_envs=num, prepro=prepro
            ),
        }
        table(
            f"{ENV_ID}, prepro against none, per-env engine",
            dict(samplers),
            f"per-env, {num} envs, no prepro",
            repeats,
        )
        vec_samplers = {
            f"vector, {n} envs, no prepro": Sampler(make_vec(n), pol, steps, clock),
            f"vector, {n} envs, BasePrePro": Sampler(make_vec(n), pol, steps, clock, prepro=prepro),
        }
        table(
            f"{ENV_ID}, prepro against none, vector environment",
            dict(vec_samplers),
            f"vector, {n} envs, no prepro",
            repeats,
        )
        for s in [*samplers.values(), *vec_samplers.values()]:
            s.close()


if __name__ == "__main__":
    main()
