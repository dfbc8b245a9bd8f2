"""Batch engine: steps several environments with one policy call per step.

The engine is what runs inside one process, the user's own (``num_parallel=1``) or a worker
(``machina.samplers._worker``). It knows nothing about processes; ``workers.py`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
import gymnasium
import numpy as np
import torch

Episode = dict[str, Any]
EnvFactory = Callable[[], gymnasium.Env]


class SamplingAborted(Exception):
    """Raised inside ``BatchEngine.run`` when its ``should_stop`` callback answers True."""


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


def as_env_factory(env: gymnasium.Env | EnvFactory) -> EnvFactory:
    """Turn what the user gave as ``env`` into a zero-argument factory of fresh copies.

    Parameters
    ----------
    env : gymnasium.Env, GymEnv or callable
        An environment instance (copied by a pickle round trip) or a zero-argument factory.
    """
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


def engine_rng_seed(seed: int | None, worker: int, restart: int = 0) -> int | None:
    """Seed of the policy's torch RNG in one engine, distinct per worker (and restart)."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), worker, restart]).generate_state(1)[0])


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _numeric_info(info: dict[str, Any]) -> dict[str, np.ndarray]:
    """Keep the numeric scalar / array entries of a step's info dict."""
    out = {}
    for key, value in info.items():
        if isinstance(value, (bool, int, float, np.number, np.bool_, np.ndarray)):
            arr = np.asarray(value)
            if arr.dtype.kind in "biuf":
                out[key] = arr
    return out


class _EpisodeBuffer:
    """Per-step rows of one episode in progress; ``finish`` stacks them into arrays."""

    def __init__(self, discrete_acs: bool) -> None:
        self.discrete_acs = discrete_acs
        self.obs: list[np.ndarray] = []
        self.next_obs: list[np.ndarray] = []
        self.acs: list[np.ndarray] = []
        self.rews: list[float] = []
        self.terms: list[bool] = []
        self.truncs: list[bool] = []
        self.a_is: dict[str, list[np.ndarray]] = {}
        self.e_is: list[dict[str, np.ndarray]] = []

    def add(self, ob, ac, a_i, rew, next_ob, term, trunc, info) -> None:
        self.obs.append(ob)
        self.acs.append(ac)
        for key, value in a_i.items():
            self.a_is.setdefault(key, []).append(value)
        self.rews.append(rew)
        self.next_obs.append(next_ob)
        self.terms.append(term)
        self.truncs.append(trunc)
        self.e_is.append(_numeric_info(info))

    def finish(self) -> Episode:
        terms = np.asarray(self.terms, dtype=bool)
        truncs = np.asarray(self.truncs, dtype=bool)
        acs = np.stack(self.acs)
        if self.discrete_acs:
            acs = acs.astype(np.int64, copy=False)
        # An env info key goes to e_is only if every step has it with one shape: the columns
        # must share the episode's first axis T.
        e_is = {}
        if self.e_is:
            for key, first in self.e_is[0].items():
                rows = [info.get(key) for info in self.e_is]
                if all(r is not None and r.shape == first.shape for r in rows):
                    e_is[key] = np.stack(rows)
        return {
            "obs": np.stack(self.obs).astype(np.float32, copy=False),
            "acs": acs,
            "rews": np.asarray(self.rews, dtype=np.float32),
            "next_obs": np.stack(self.next_obs).astype(np.float32, copy=False),
            "terms": terms,
            "truncs": truncs,
            "dones": terms | truncs,
            "a_is": {key: np.stack(rows) for key, rows in self.a_is.items()},
            "e_is": e_is,
        }


class BatchEngine:
    """Steps ``len(slot_ids)`` environments with one policy call per step.

    Parameters
    ----------
    env_fn : callable
        Zero-argument factory; called once per environment slot.
    slot_ids : sequence of int
        Global indices of this engine's slots (the indices errors name).
    seed : int or None
        Slot ``i`` resets first with ``seed + i``; later resets are unseeded, so the
        environment's own RNG carries on. None: never seeded.
    rng_seed : int or None
        Seed of the torch RNG the policy samples with (kept across ``run`` calls).
    seeded : sequence of bool, optional
        Per slot, True when its first (seeded) reset already happened elsewhere, e.g. in a
        worker that died and is being replaced: the replacement must not replay the seed.
    """

    def __init__(
        self,
        env_fn: EnvFactory,
        slot_ids: Sequence[int],
        seed: int | None,
        rng_seed: int | None,
        seeded: Sequence[bool] | None = None,
    ) -> None:
        self.slot_ids = list(slot_ids)
        self.seeds = [None if seed is None else int(seed) + i for i in self.slot_ids]
        self._needs_seed = [not s for s in seeded] if seeded is not None else [True] * len(slot_ids)
        self.envs: list[gymnasium.Env] = []
        for k in range(len(self.slot_ids)):
            try:
                env = env_fn()
            except Exception as exc:
                raise self._env_error(k, "creation (env factory call)", exc) from exc
            if not (hasattr(env, "reset") and hasattr(env, "step")):
                raise TypeError(f"env: the factory returned {env!r}, which has no reset/step")
            self.envs.append(env)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self._discrete_acs = isinstance(
            self.action_space, (gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete)
        )
        # The policy's sampling RNG lives here, not in torch's global state, so that sampling
        # is reproducible per engine and the user's own RNG stream is left untouched.
        with torch.random.fork_rng(devices=[]):
            if rng_seed is None:
                torch.seed()
            else:
                torch.manual_seed(rng_seed)
            self._rng_state = torch.get_rng_state()

    def _env_error(
        self, k: int, phase: str, exc: BaseException | None, detail: str = ""
    ) -> RuntimeError:
        what = f"raised {type(exc).__name__}: {exc}" if exc is not None else detail
        return RuntimeError(
            f"environment {self.slot_ids[k]} (seed {self.seeds[k]}) {what} during {phase}"
        )

    def _observe(self, k: int, raw: Any, phase: str, prepro: Callable | None) -> np.ndarray:
        arr = np.asarray(raw)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            bad = ~np.isfinite(arr)
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise self._env_error(
                k,
                phase,
                None,
                f"returned a non-finite observation ({int(bad.sum())} of {arr.size} entries "
                f"NaN/inf, first at index {first}: {arr[first]})",
            )
        if prepro is not None:
            arr = np.asarray(prepro(arr))
        return arr.astype(np.float32, copy=False)

    def _reset(self, k: int, prepro: Callable | None) -> np.ndarray:
        seed = self.seeds[k] if self._needs_seed[k] else None
        try:
            raw, _ = self.envs[k].reset(seed=seed)
        except Exception as exc:
            raise self._env_error(k, "reset", exc) from exc
        self._needs_seed[k] = False
        return self._observe(k, raw, "reset", prepro)

    def run(
        self,
        pol: torch.nn.Module,
        epi_quotas: Sequence[int | None],
        step_quotas: Sequence[int | None],
        deterministic: bool = False,
        prepro: Callable[[np.ndarray], np.ndarray] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Episode]:
        """Sample whole episodes until every slot has met its quota.

        Parameters
        ----------
        pol : torch.nn.Module
            Policy per the machina contract: ``pol(obs) -> (ac_real, ac, a_i)``.
        epi_quotas, step_quotas : sequence of int or None, one per slot
            A slot starts a new episode only while it has started fewer than its episode
            quota and collected (finished plus in progress) fewer steps than its step quota;
            episodes already started always finish.
        deterministic : bool
            Use ``pol.deterministic_ac_real`` (the distribution's mode).
        prepro : callable, optional
            Maps one observation (*ob_shape) to the observation the policy sees and the
            episode stores (``obs`` and ``next_obs``).
        should_stop : callable, optional
            Polled once per step; True aborts with ``SamplingAborted``.

        Returns
        -------
        epis : list of dict
            Whole episodes ordered by slot, then by start within the slot.
        """
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            try:
                with torch.no_grad():
                    return self._run(
                        pol, epi_quotas, step_quotas, deterministic, prepro, should_stop
                    )
            finally:
                self._rng_state = torch.get_rng_state()

    def _run(self, pol, epi_quotas, step_quotas, deterministic, prepro, should_stop):
        n = len(self.envs)
        rnn = bool(getattr(pol, "rnn", False))
        act = pol.deterministic_ac_real if deterministic else pol
        param = next(iter(pol.parameters()), None) if hasattr(pol, "parameters") else None
        device = param.device if param is not None else torch.device("cpu")
        if rnn:
            pol.reset()

        epis: list[list[Episode]] = [[] for _ in range(n)]
        started = [0] * n
        steps = [0] * n  # finished plus in-progress steps per slot
        obs: list[np.ndarray | None] = [None] * n
        bufs: list[_EpisodeBuffer | None] = [None] * n
        starts = np.zeros(n, dtype=np.float32)  # 1 where an episode starts this step (h_masks)

        def try_start(k: int) -> bool:
            """Begin a new episode in slot k if it is under both of its quotas."""
            under_epis = epi_quotas[k] is None or started[k] < epi_quotas[k]
            under_steps = step_quotas[k] is None or steps[k] < step_quotas[k]
            if not (under_epis and under_steps):
                return False
            obs[k] = self._reset(k, prepro)
            bufs[k], starts[k] = _EpisodeBuffer(self._discrete_acs), 1.0
            started[k] += 1
            return True

        active = [k for k in range(n) if try_start(k)]
        while active:
            if should_stop is not None and should_stop():
                raise SamplingAborted
            rows, ac_real, ac, a_i = self._act(act, rnn, obs, active, starts, device)
            starts[:] = 0.0
            still_active = []
            for row, k in zip(rows, active):
                phase = f"step {len(bufs[k].rews) + 1}"
                try:
                    raw, rew, term, trunc, info = self.envs[k].step(ac_real[row])
                except Exception as exc:
                    raise self._env_error(k, phase, exc) from exc
                next_ob = self._observe(k, raw, phase, prepro)
                a_i_row = {key: v[row] for key, v in a_i.items()}
                bufs[k].add(obs[k], ac[row], a_i_row, rew, next_ob, bool(term), bool(trunc), info)
                steps[k] += 1
                obs[k] = next_ob
                if term or trunc:
                    epis[k].append(bufs[k].finish())
                    bufs[k] = None
                    if try_start(k):
                        still_active.append(k)
                else:
                    still_active.append(k)
            active = still_active
        return [epi for slot_epis in epis for epi in slot_epis]

    @staticmethod
    def _act(act, rnn, obs, active, starts, device):
        """One policy call for the active slots.

        Returns
        -------
        rows : sequence of int
            Row of each active slot in the outputs.
        ac_real, ac : ndarray (B, *ac_shape)
        a_i : dict of ndarray (B, ...), without the hidden state ``hs``
        """
        if rnn:
            # A recurrent policy keeps one hidden-state row per slot, so it always sees all
            # slots; idle slots repeat their last observation (zeros if they never began).
            template = obs[active[0]]
            batch = np.stack([o if o is not None else np.zeros_like(template) for o in obs])
            masks = torch.as_tensor(starts[None], device=device)
            ac_real, ac, a_i = act(torch.as_tensor(batch[None], device=device), h_masks=masks)
            ac_real, ac = ac_real[0], ac[0]
            a_i = {key: v[0] for key, v in a_i.items() if key != "hs"}
            rows = active
        else:
            batch = np.stack([obs[k] for k in active])
            ac_real, ac, a_i = act(torch.as_tensor(batch, device=device))
            rows = range(len(active))
        a_i = {
            key: _to_numpy(v)
            for key, v in a_i.items()
            if key != "hs" and isinstance(v, (torch.Tensor, np.ndarray))
        }
        return rows, _to_numpy(ac_real), _to_numpy(ac), a_i

    def close(self) -> None:
        """Close every environment, ignoring errors (closing is best effort)."""
        for env in self.envs:
            try:
                env.close()
            except Exception:
                pass
        self.envs = []
