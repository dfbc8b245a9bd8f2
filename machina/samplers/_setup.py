"""What is decided before a run: environment factories, budgets per slot, seeds per engine."""

from __future__ import annotations

import cloudpickle
import gymnasium
import numpy as np

from machina.samplers._task import EnvFactory, Quotas


class EnvCopier:
    """Zero-argument factory that returns a fresh copy of an environment instance.

    The environment is pickled once (cloudpickle, so environments defined in a notebook or a
    script's ``__main__`` work) and every call unpickles a new, independent copy.

    Parameters
    ----------
    env : gymnasium.Env
        The environment to copy; it is not used afterwards.
    """

    def __init__(self, env: gymnasium.Env) -> None:
        try:
            self.env_bytes = cloudpickle.dumps(env)
        except Exception as exc:
            raise ValueError(
                f"env: could not pickle {env!r} to copy it for each environment slot ({exc!r}); "
                "pass a zero-argument factory instead, e.g. lambda: make_my_env()"
            ) from exc

    def __call__(self) -> gymnasium.Env:
        return cloudpickle.loads(self.env_bytes)


class SameEnv:
    """Zero-argument factory that returns one given environment itself (a gymnasium
    ``VectorEnv`` instance: the sampler steps it in this process, it is not copied)."""

    def __init__(self, env: object) -> None:
        self.env = env

    def __call__(self) -> object:
        return self.env


class WithParentRegistry:
    """An environment factory that first registers, where it is called, the gymnasium ids
    that were registered where it was made and are missing there.

    Worker processes and Ray actors start from a fresh interpreter: ids registered by an
    import (``import machina.envs``' PyBullet tasks) or by the user's script are unknown
    there, so ``lambda: gymnasium.make("HopperBulletEnv-v0")`` failed in them. Each spec
    travels pickled on its own and is unpickled only where its id is missing; one that
    cannot be (its entry point's module is not importable there) is skipped, and making
    that id raises gymnasium's own error, as before.

    Parameters
    ----------
    env_fn : callable
        The zero-argument factory to call after registering.
    """

    def __init__(self, env_fn: EnvFactory) -> None:
        self.env_fn = env_fn
        self.specs: dict[str, bytes] = {}
        for env_id, spec in gymnasium.envs.registry.items():
            try:
                self.specs[env_id] = cloudpickle.dumps(spec)
            except Exception:
                continue

    def __call__(self) -> object:
        registry = gymnasium.envs.registry
        for env_id, spec_bytes in self.specs.items():
            if env_id in registry:
                continue
            try:
                registry[env_id] = cloudpickle.loads(spec_bytes)
            except Exception:
                continue
        return self.env_fn()


def as_env_factory(env: gymnasium.Env | EnvFactory) -> EnvFactory:
    """Turn what the user gave as ``env`` into a zero-argument factory of fresh copies.

    Parameters
    ----------
    env : gymnasium.Env, GymEnv, gymnasium.vector.VectorEnv or callable
        An environment instance (copied by a pickle round trip), a vector environment (used
        itself, not copied) or a zero-argument factory.
    """
    if isinstance(env, gymnasium.vector.VectorEnv):
        return SameEnv(env)  # type: ignore[return-value]
    if isinstance(env, gymnasium.Env):
        return EnvCopier(env)
    if callable(env):
        return env
    raise TypeError(
        f"env: expected a gymnasium.Env, a GymEnv or a zero-argument factory, given {env!r}"
    )


def split_budget(total: int | None, num_slots: int) -> list[int | None]:
    """Split a budget (episodes or steps) over environment slots as evenly as possible.

    Parameters
    ----------
    total : int or None
        The budget; None means unlimited, and every slot gets None.
    num_slots : int
        Number of environment slots, ``num_parallel * num_envs``; worker ``w`` owns the
        global slots ``w * num_envs ... (w + 1) * num_envs - 1``.

    Returns
    -------
    quotas : list of num_slots int or None
        Quotas differ by at most one; slot ``i`` gets one more when ``i < total % num_slots``.

    Notes
    -----
    A slot's quota depends only on its global index, not on how the slots are grouped into
    processes, so with ``deterministic=True`` the same seed and number of slots give the same
    episodes for any ``num_parallel`` (e.g. 1 x 4 and 2 x 2). Spreading the remainder over the
    workers instead would not shorten a sample: slots of one worker step in lockstep, so its
    time is set by its largest slot quota, which is the same either way.
    """
    if total is None:
        return [None] * num_slots
    base, rem = divmod(int(total), num_slots)
    return [base + (1 if i < rem else 0) for i in range(num_slots)]


def split_quotas(
    max_epis: int | None, max_steps: int | None, num_engines: int, num_envs: int
) -> list[Quotas]:
    """Both budgets split over ``num_engines * num_envs`` slots, as one ``Quotas`` per engine
    (engine ``w`` owns the global slots ``w * num_envs ... (w + 1) * num_envs - 1``)."""
    epis = split_budget(max_epis, num_engines * num_envs)
    steps = split_budget(max_steps, num_engines * num_envs)
    return [
        Quotas(epis[w * num_envs : (w + 1) * num_envs], steps[w * num_envs : (w + 1) * num_envs])
        for w in range(num_engines)
    ]


def slot_seeds(seed: int | None, slot_ids: list[int]) -> list[int | None]:
    """The seed of each slot's first reset: ``seed + slot`` (None when not seeded)."""
    return [None if seed is None else int(seed) + i for i in slot_ids]


def engine_rng_seed(seed: int | None, worker: int, restart: int = 0) -> int | None:
    """Seed of the policy's torch RNG in one engine, distinct per worker (and restart)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), worker, restart]).generate_state(1)[0])
