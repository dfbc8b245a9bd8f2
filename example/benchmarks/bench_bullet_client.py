"""Cost of a PyBullet env step: machina's bound pybullet client and batched walker step
against ``pybullet_envs``' own.

    python example/benchmarks/bench_bullet_client.py            # 6 tasks, 2,000 steps x 7
    python example/benchmarks/bench_bullet_client.py --quick    # smoke run

``pybullet_utils.bullet_client.BulletClient``, which every ``pybullet_envs`` task steps
through, binds the client id to the pybullet function asked for at every call (a new
``functools.partial`` and an ``inspect.isbuiltin`` each time, some 40 calls per locomotion
step). ``machina.envs`` (``machina.envs.bullet._bind_client``) keeps each bound function on
the client instead. On the walker tasks (Hopper, Walker2D, HalfCheetah, Ant, the Humanoids)
machina also replaces ``pybullet_envs``' step, which asks pybullet one joint, part and foot
at a time, by ``machina.envs._bullet_walker.WalkerStep``, which asks once per body and runs
the same arithmetic. Contenders, alternating round by round (the harness), each on its own
environment made by ``gymnasium.make`` with the same seed and the same uniformly random
actions:

- *pybullet_utils' client*: the environment as ``pybullet_envs`` makes it;
- *bound client*: machina's client, ``pybullet_envs``' step (``fast_step=False``);
- *bound client + walker step*: as ``gymnasium.make`` gives it after ``import
  machina.envs`` (walker tasks only; on the others it is the bound client).

Each round resets all to the same seed and times ``--steps`` steps (resetting at episode
ends) in CPU seconds of the process; the table gives the median over rounds after a warm-up
round and the ratio to the first. A check asserts that all produce the same observations and
rewards to the bit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator

import gymnasium
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import alternate, machine, median, print_table  # noqa: E402

import machina.envs  # noqa: E402, F401  (registers the PyBullet ids)
from machina.envs import bullet  # noqa: E402

TASKS = (
    "HalfCheetahBulletEnv-v0",
    "HopperBulletEnv-v0",
    "Walker2DBulletEnv-v0",
    "AntBulletEnv-v0",
    "HumanoidBulletEnv-v0",
    "ReacherBulletEnv-v0",
)
PLAIN, BOUND, WALKER = (
    "pybullet_utils' client",
    "bound client",
    "bound client + walker step",
)


@contextlib.contextmanager
def unbound() -> Iterator[None]:
    """Resets inside keep pybullet_utils' client (machina binds it at every reset)."""
    bind = bullet._bind_client
    bullet._bind_client = lambda env: None
    try:
        yield
    finally:
        bullet._bind_client = bind


def reset(env: gymnasium.Env, plain: bool, seed: int | None = None) -> np.ndarray:
    with unbound() if plain else contextlib.nullcontext():
        return env.reset(seed=seed)[0]


def contender(
    env: gymnasium.Env, plain: bool, steps: int, records: dict[str, np.ndarray], name: str
) -> Callable[[], float]:
    """One round of ``rollout``: its seconds per step; its record kept in ``records``."""

    def run() -> float:
        seconds, records[name] = rollout(env, steps, 0, plain)
        return seconds

    return run


def rollout(env: gymnasium.Env, steps: int, seed: int, plain: bool) -> tuple[float, np.ndarray]:
    """CPU seconds per step of ``steps`` random steps from ``reset(seed)``, and every
    observation and reward concatenated."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(steps, *low.shape)).astype(np.float32)
    obs = reset(env, plain, seed)
    record = [obs.astype(np.float64)]
    start = time.process_time()
    for action in actions:
        obs, rew, term, trunc, _ = env.step(action)
        record += [obs, np.float64([rew])]
        if term or trunc:
            record.append(reset(env, plain))
    seconds = (time.process_time() - start) / steps
    return seconds, np.concatenate(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 steps x 2")
    args = parser.parse_args()
    steps, repeats = (200, 2) if args.quick else (args.steps, args.repeats)
    print(machine())
    rows = []
    for env_id in TASKS:
        envs = {
            PLAIN: gymnasium.make(env_id, fast_step=False),
            BOUND: gymnasium.make(env_id, fast_step=False),
            WALKER: gymnasium.make(env_id),
        }
        records: dict[str, np.ndarray] = {}
        contenders = {
            name: contender(env, name == PLAIN, steps, records, name) for name, env in envs.items()
        }
        alternate(contenders, 1)  # warm-up
        if envs[WALKER].unwrapped._walker is None:  # not a walker task: the bound client
            envs.pop(WALKER).close()
            contenders.pop(WALKER)
        plain_client, bound_client = (type(envs[n].unwrapped._env._p) for n in (PLAIN, BOUND))
        assert plain_client is not bound_client and issubclass(bound_client, plain_client)
        for name in contenders:
            assert np.array_equal(records[PLAIN], records[name]), f"{env_id}: {name} differs"
        times = alternate(contenders, repeats)
        base = median(times[PLAIN])
        for name, values in times.items():
            us = median(values) * 1e6
            rows.append([env_id, name, us, f"{median(values) / base:.2f}x"])
        for env in envs.values():
            env.close()
    print_table(
        f"PyBullet env step, CPU us per step (median of {repeats} rounds of {steps} steps)",
        ["task", "contender", "us / step", "vs pybullet_utils' client"],
        rows,
    )


if __name__ == "__main__":
    main()
