"""Batch engine: steps several environments with one policy call per step.

The engine is what runs inside one process, the user's own (``num_parallel=1``) or a worker
(``machina.samplers._worker``). It knows nothing about processes; ``workers.py`` does.

Per step the engine does one policy call for the whole batch and one numpy copy per output
key into time-major buffers (row = engine step, column = slot); environments write their next
observation straight into the next row, which is the policy's next input, and a whole row is
checked for NaN/inf at once. Only what ends an episode (its final observation, a reset) is
handled per slot in Python. Episodes are cut out of the buffers once, at the end of ``run``,
by one gather per key (``pack_episodes``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
import gymnasium
import numpy as np
import torch

from machina.samplers._numpy_policy import NumpyPolicy

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
        try:
            return x.numpy()  # a CPU tensor outside autograd: no copy, cheapest
        except (RuntimeError, TypeError):
            return x.detach().cpu().numpy()
    return np.asarray(x)


def _is_a_i(key: str, value: Any) -> bool:
    """Whether a policy's agent-info entry goes into episodes (arrays, not the hidden state)."""
    return key != "hs" and isinstance(value, (torch.Tensor, np.ndarray))


def _all_finite(arr: np.ndarray) -> bool:
    # count_nonzero is several times cheaper than .all() on small arrays
    return np.count_nonzero(np.isfinite(arr)) == arr.size


def _numeric_info(info: dict[str, Any]) -> dict[str, np.ndarray]:
    """Keep the numeric scalar / array entries of a step's info dict."""
    out = {}
    for key, value in info.items():
        if isinstance(value, (bool, int, float, np.number, np.bool_, np.ndarray)):
            arr = np.asarray(value)
            if arr.dtype.kind in "biuf":
                out[key] = arr
    return out


def _env_info_columns(infos: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack one episode's per-step numeric infos into (T, ...) columns.

    A key becomes a column only if every step has it with one shape: the columns must share
    the episode's first axis T.
    """
    columns = {}
    for key, first in infos[0].items():
        rows = [info.get(key) for info in infos]
        if all(r is not None and r.shape == first.shape for r in rows):
            columns[key] = np.stack(rows)
    return columns


class _Growable:
    """Arrays whose first axis grows by doubling (zero-filled, so unused rows stay finite)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.fields: dict[str, np.ndarray] = {}

    def add(self, name: str, item_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        arr = np.zeros((self.capacity, *item_shape), dtype=dtype)
        self.fields[name] = arr
        return arr

    def ensure(self, size: int) -> bool:
        """Make room for ``size`` items; True when the arrays were reallocated."""
        if size <= self.capacity:
            return False
        capacity = self.capacity
        while capacity < size:
            capacity *= 2
        for name, arr in self.fields.items():
            grown = np.zeros((capacity, *arr.shape[1:]), dtype=arr.dtype)
            grown[: self.capacity] = arr
            self.fields[name] = grown
        self.capacity = capacity
        return True


class _History(_Growable):
    """Time-major buffers of one ``run``: row ``t`` holds every slot's data at engine step t.

    Writing a whole step is one numpy copy per key (the policy's outputs for the batch), and
    the observations the policy reads are a contiguous row, so no per-step Python objects are
    kept. Rows are never compacted: the buffers hold about the sample itself plus, per slot,
    the rows it spent idle once its quota was met.
    """

    def __init__(self, num_slots: int, capacity: int = 64) -> None:
        super().__init__(capacity)
        self.n = num_slots

    def add(self, name: str, item_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return super().add(name, (self.n, *item_shape), dtype)

    def gather(self, name: str, flat_index: np.ndarray) -> np.ndarray:
        """Rows ``flat_index`` (``row * n + slot``) of one field, as a new array."""
        arr = self.fields[name]
        # np.take: several times faster than fancy indexing for rows of a 2-D array
        return np.take(arr.reshape(-1, *arr.shape[2:]), flat_index, axis=0)


def pack_episodes(
    history: _History, finals: np.ndarray, records: list[tuple], discrete_acs: bool
) -> dict[str, Any]:
    """All finished episodes as flat columns (episodes concatenated) and their boundaries.

    Parameters
    ----------
    history : _History
        The run's buffers (``obs``, ``acs``, ``rews`` and ``a_is/<key>`` fields).
    finals : ndarray
        The final observation of episode ``i`` (in order of ending) at ``finals[i]``.
    records : list of tuple
        ``(slot, first_row, length, term, trunc, infos)`` per episode in order of ending;
        ``infos`` is the list of per-step numeric infos when every step had one, else None.
    discrete_acs : bool
        Cast actions to int64.

    Returns
    -------
    packed : dict
        ``cols`` (dict of flat arrays, ``a_is`` a dict of them), ``bounds`` (episode ``i``
        spans ``bounds[i]:bounds[i + 1]``) and ``e_is`` (a dict of columns per episode).
        Small to pickle (a few arrays), and ``unpack_episodes`` turns it into episodes.
    """
    if not records:
        return {"cols": {"a_is": {}}, "bounds": np.zeros(1, dtype=np.int64), "e_is": []}
    num = len(records)
    slots, firsts, lengths = (
        np.fromiter((r[j] for r in records), dtype=np.int64, count=num) for j in range(3)
    )
    order = np.lexsort((firsts, slots))  # by slot, then start
    slots, firsts, lengths = slots[order], firsts[order], lengths[order]
    records = [records[i] for i in order.tolist()]
    bounds = np.zeros(num + 1, dtype=np.int64)
    np.cumsum(lengths, out=bounds[1:])
    total = int(bounds[-1])
    within = np.arange(total, dtype=np.int64) - np.repeat(bounds[:-1], lengths)
    flat_index = (np.repeat(firsts, lengths) + within) * history.n + np.repeat(slots, lengths)
    ends = bounds[1:] - 1

    obs = history.gather("obs", flat_index)
    # Within an episode the next observation is the following row; at its end, the final one.
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[ends] = finals[order]
    terms = np.zeros(total, dtype=bool)
    truncs = np.zeros(total, dtype=bool)
    terms[ends] = [r[3] for r in records]
    truncs[ends] = [r[4] for r in records]
    acs = history.gather("acs", flat_index)
    if discrete_acs:
        acs = acs.astype(np.int64, copy=False)
    cols = {
        "obs": obs,
        "acs": acs,
        "rews": history.gather("rews", flat_index),
        "next_obs": next_obs,
        "terms": terms,
        "truncs": truncs,
        "dones": terms | truncs,
        "a_is": {
            name[len("a_is/") :]: history.gather(name, flat_index)
            for name in history.fields
            if name.startswith("a_is/")
        },
    }
    e_is = [{} if r[5] is None else _env_info_columns(r[5]) for r in records]
    return {"cols": cols, "bounds": bounds, "e_is": e_is}


def unpack_episodes(packed: dict[str, Any]) -> list[Episode]:
    """Split packed columns into episode dicts (views of the columns, no copy)."""
    cols, bounds, e_is = packed["cols"], packed["bounds"].tolist(), packed["e_is"]
    columns = [(key, value) for key, value in cols.items() if key != "a_is"]
    a_is = list(cols["a_is"].items())
    epis = []
    for a, b, epi_e_is in zip(bounds[:-1], bounds[1:], e_is):
        epi = {key: value[a:b] for key, value in columns}
        epi["a_is"] = {key: value[a:b] for key, value in a_is}
        epi["e_is"] = epi_e_is
        epis.append(epi)
    return epis


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
        # Shape of the observations of the current run (after prepro), set by its first reset.
        self._ob_shape: tuple[int, ...] | None = None
        # With a prepro: per slot, the raw observation last seen (kept in e_is["raw_obs"]).
        self._raw_obs: dict[int, np.ndarray] = {}
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

    def _non_finite_error(self, k: int, arr: np.ndarray, phase: str) -> RuntimeError:
        bad = ~np.isfinite(arr)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return self._env_error(
            k,
            phase,
            None,
            f"returned a non-finite observation ({int(bad.sum())} of {arr.size} entries "
            f"NaN/inf, first at index {first}: {arr[first]})",
        )

    def _observe(self, k: int, raw: Any, phase: str, prepro: Callable | None) -> np.ndarray:
        """One observation, checked (finite, the shape of the run's first), after prepro, as a
        new float32 array: the path of the first resets and of every observation with a
        prepro (without one, observations are written to the buffers as they come and
        checked a whole row at a time)."""
        arr = np.asarray(raw)
        if arr.dtype.kind in "fc" and not _all_finite(arr):
            raise self._non_finite_error(k, arr, phase)
        if prepro is not None:
            self._raw_obs[k] = np.array(arr)  # a copy: the env may reuse its array
            arr = np.asarray(prepro(arr))
        arr = np.array(arr, dtype=np.float32)  # a copy: the env may reuse its array
        if self._ob_shape is None:
            self._ob_shape = arr.shape
        elif arr.shape != self._ob_shape:
            raise self._shape_error(k, arr, phase, prepro is not None)
        return arr

    def _shape_error(self, k: int, raw: Any, phase: str, prepro: bool = False) -> RuntimeError:
        what = "an observation" + (" (after prepro)" if prepro else "")
        return self._env_error(
            k,
            phase,
            None,
            f"returned {what} of shape {np.shape(raw)} where {self._ob_shape} (the shape of "
            "the first one) was expected",
        )

    def _store_reset(self, row: np.ndarray, k: int, raw: Any, prepro: Callable | None) -> None:
        """``row[k] = raw``, slot k's reset observation: as is without prepro (the caller checks
        that it is finite), else through ``_observe``."""
        if prepro is not None:
            row[k] = self._observe(k, raw, "reset", prepro)
            return
        try:
            row[k] = raw
        except (TypeError, ValueError) as exc:
            raise self._shape_error(k, raw, "reset") from exc

    def _reset(self, k: int) -> Any:
        """Reset slot k (with its seed the first time); the raw observation."""
        seed = self.seeds[k] if self._needs_seed[k] else None
        try:
            raw, _ = self.envs[k].reset(seed=seed)
        except Exception as exc:
            raise self._env_error(k, "reset", exc) from exc
        self._needs_seed[k] = False
        return raw

    def run(
        self,
        pol: torch.nn.Module,
        epi_quotas: Sequence[int | None],
        step_quotas: Sequence[int | None],
        deterministic: bool = False,
        prepro: Callable[[np.ndarray], np.ndarray] | None = None,
        should_stop: Callable[[], bool] | None = None,
        fast_inference: bool = True,
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
            episode stores (``obs`` and ``next_obs``); the raw observation each step acted
            on is kept in ``e_is["raw_obs"]`` (for the prepro's running statistics).
        should_stop : callable, optional
            Polled once per step; True aborts with ``SamplingAborted``.
        fast_inference : bool
            Act with a numpy copy of the policy (``NumpyPolicy``) when it is one of
            machina's feed-forward MLP policies on the CPU; other policies, or False, call
            ``pol`` itself.

        Returns
        -------
        epis : list of dict
            Whole episodes ordered by slot, then by start within the slot. Their arrays are
            views of columns shared by all episodes of the call.
        """
        return unpack_episodes(
            self.run_packed(
                pol, epi_quotas, step_quotas, deterministic, prepro, should_stop, fast_inference
            )
        )

    def run_packed(
        self,
        pol: torch.nn.Module,
        epi_quotas: Sequence[int | None],
        step_quotas: Sequence[int | None],
        deterministic: bool = False,
        prepro: Callable[[np.ndarray], np.ndarray] | None = None,
        should_stop: Callable[[], bool] | None = None,
        fast_inference: bool = True,
    ) -> dict[str, Any]:
        """Like ``run``, but the episodes come packed (see ``pack_episodes``): what a worker
        sends back, a few arrays whatever the number of episodes."""
        rnn = bool(getattr(pol, "rnn", False))
        # Inference mode skips autograd's bookkeeping altogether, a little cheaper than
        # no_grad per call. Not for recurrent policies: they keep their hidden state, which
        # would then be an inference tensor that a later training call could not use.
        grad_mode = torch.no_grad() if rnn else torch.inference_mode()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            try:
                with grad_mode:
                    return self._run(
                        pol,
                        rnn,
                        epi_quotas,
                        step_quotas,
                        deterministic,
                        prepro,
                        should_stop,
                        fast_inference,
                    )
            finally:
                self._rng_state = torch.get_rng_state()

    def _run(
        self,
        pol,
        rnn,
        epi_quotas,
        step_quotas,
        deterministic,
        prepro,
        should_stop,
        fast_inference,
    ):
        n = len(self.envs)
        env_steps = [env.step for env in self.envs]  # bound once: looked up at every env step
        act = pol.deterministic_ac_real if deterministic else pol
        param = next(iter(pol.parameters()), None) if hasattr(pol, "parameters") else None
        device = param.device if param is not None else torch.device("cpu")
        on_cpu = device.type == "cpu"
        if rnn:
            pol.reset()

        started = [0] * n
        steps = [0] * n  # steps of the finished episodes per slot
        first_row = [0] * n  # row of the current episode's first step, per slot
        # Per slot: the per-step numeric infos of the current episode; None when not stepping.
        infos: list[list | None] = [None] * n
        records: list[tuple] = []  # one per finished episode, see pack_episodes
        starts = np.zeros(n, dtype=np.float32)  # 1 where an episode starts this step (h_masks)

        def under_quotas(k: int) -> bool:
            under_epis = epi_quotas[k] is None or started[k] < epi_quotas[k]
            return under_epis and (step_quotas[k] is None or steps[k] < step_quotas[k])

        def begin(k: int, row: int) -> None:
            first_row[k], starts[k], infos[k] = row, 1.0, []
            started[k] += 1

        # First resets, through the checking path: the first observation sets the shape.
        self._ob_shape = None
        first_obs = {}
        for k in range(n):
            if under_quotas(k):
                first_obs[k] = self._observe(k, self._reset(k), "reset", prepro)
                begin(k, 0)
        history = _History(n)
        ended_epis = _Growable(64)
        if not first_obs:
            return pack_episodes(history, None, records, self._discrete_acs)
        ob_shape = self._ob_shape
        # The weights are fixed for the whole call: snapshot them once for numpy inference.
        fast = NumpyPolicy.build(pol, ob_shape) if fast_inference and not rnn else None
        if fast is not None:
            act = fast.mode if deterministic else fast.sample
        obs_buf = history.add("obs", ob_shape, np.float32)
        finals = ended_epis.add("finals", ob_shape, np.float32)
        for k, ob in first_obs.items():
            obs_buf[0, k] = ob
        active = list(first_obs)
        acs_buf = rews_buf = None
        ai_keys = None  # the policy's a_i entries that go into episodes, set at its first call
        ai_bufs: dict[str, np.ndarray] = {}
        out_bufs: list[tuple[str, np.ndarray]] = []  # (NumpyPolicy outs key, buffer)
        t = 0  # the row of the observations acted on
        while active:
            if should_stop is not None and should_stop():
                raise SamplingAborted
            if history.ensure(t + 2):
                obs_buf = history.fields["obs"]
                acs_buf, rews_buf = history.fields.get("acs"), history.fields.get("rews")
                ai_bufs = {key: history.fields["a_is/" + key] for key in ai_bufs}
                out_bufs = [("ac", acs_buf), *ai_bufs.items()]
            all_active = len(active) == n
            # Where this step's values go in a row: all of it, or the active slots' columns.
            step_rows = Ellipsis if all_active else np.asarray(active)

            # One policy call for the batch. A recurrent policy keeps one hidden-state row
            # per slot, so it always sees every slot; slots that are not stepping repeat their
            # last observation (zeros if they never began), and their outputs are ignored.
            if rnn:
                if not all_active:
                    idle = [k for k in range(n) if infos[k] is None]
                batch = torch.from_numpy(obs_buf[t][None])
                masks = torch.from_numpy(starts[None])
                if not on_cpu:
                    batch, masks = batch.to(device), masks.to(device)
                ac_real, ac, a_i = act(batch, h_masks=masks)
                starts[:] = 0.0
                if ai_keys is None:
                    ai_keys = [key for key, v in a_i.items() if _is_a_i(key, v)]
                ac_real, ac = _to_numpy(ac_real)[0], _to_numpy(ac)[0]
                a_i = {key: _to_numpy(a_i[key])[0] for key in ai_keys}
                out_rows = Ellipsis
                ac_real = ac_real if all_active else ac_real[active]
            elif fast is not None:
                out_rows = step_rows
                if all_active and acs_buf is not None:
                    # NumpyPolicy writes the actions and a_i straight into this step's rows
                    outs = {key: buf[t] for key, buf in out_bufs}
                    ac_real = act(obs_buf[t], outs)[0]
                    out_rows = None
                else:
                    ac_real, ac, a_i = act(obs_buf[t] if all_active else obs_buf[t][step_rows])
            else:
                out_rows = step_rows
                batch = torch.from_numpy(obs_buf[t] if all_active else obs_buf[t][step_rows])
                if not on_cpu:
                    batch = batch.to(device)
                ac_real, ac, a_i = act(batch)
                if ai_keys is None:
                    ai_keys = [key for key, v in a_i.items() if _is_a_i(key, v)]
                ac_real, ac = _to_numpy(ac_real), _to_numpy(ac)
                a_i = {key: _to_numpy(a_i[key]) for key in ai_keys}
            if acs_buf is None:
                acs_buf = history.add("acs", ac.shape[1:], ac.dtype)
                rews_buf = history.add("rews", (), np.float32)
                for key, v in a_i.items():
                    if v.ndim >= 1:
                        ai_bufs[key] = history.add("a_is/" + key, v.shape[1:], v.dtype)
                out_bufs = [("ac", acs_buf), *ai_bufs.items()]
            if out_rows is not None:
                acs_buf[t][out_rows] = ac
                for key, buf in ai_bufs.items():
                    buf[t][out_rows] = a_i[key]

            # Step every active slot; the next observations go straight into row t + 1.
            next_row = obs_buf[t + 1]
            rews = []
            ended = []
            if prepro is None:
                raws = []
                for k, a in zip(active, ac_real):
                    try:
                        raw, rew, term, trunc, info = env_steps[k](a)
                    except Exception as exc:
                        raise self._env_error(k, f"step {t - first_row[k] + 1}", exc) from exc
                    raws.append(raw)
                    rews.append(rew)
                    if info:
                        infos[k].append(_numeric_info(info))
                    if term or trunc:
                        ended.append((k, raw, term, trunc))
                # One copy for the row (checked below, for the whole row at once); the slots
                # that ended are overwritten with their reset or final observation.
                try:
                    next_row[step_rows] = raws
                except (TypeError, ValueError):
                    for k, raw in zip(active, raws):
                        try:
                            next_row[k] = raw
                        except (TypeError, ValueError) as exc:
                            phase = f"step {t - first_row[k] + 1}"
                            raise self._shape_error(k, raw, phase) from exc
            else:
                for k, a in zip(active, ac_real):
                    try:
                        raw, rew, term, trunc, info = env_steps[k](a)
                    except Exception as exc:
                        raise self._env_error(k, f"step {t - first_row[k] + 1}", exc) from exc
                    rews.append(rew)
                    # The raw observation this step acted on: running statistics must come
                    # from raw observations, which clipped normalised ones cannot give back
                    # (machina.prepro.BasePrePro.update_with_epis).
                    step_info = _numeric_info(info) if info else {}
                    step_info["raw_obs"] = self._raw_obs[k]
                    infos[k].append(step_info)
                    if term or trunc:
                        ended.append((k, raw, term, trunc))
                    else:
                        phase = f"step {t - first_row[k] + 1}"
                        next_row[k] = self._observe(k, raw, phase, prepro)
            rews_buf[t][step_rows] = rews

            stopped = False  # whether a slot met its quotas (and leaves ``active``)
            if ended:
                first_end = len(records)
                ended_epis.ensure(first_end + len(ended))
                finals = ended_epis.fields["finals"]
                for k, raw, term, trunc in ended:
                    length = t - first_row[k] + 1
                    if prepro is None:  # the final observation is in the row already
                        finals[len(records)] = next_row[k]
                    else:
                        finals[len(records)] = self._observe(k, raw, f"step {length}", prepro)
                    epi_infos = infos[k] if len(infos[k]) == length else None
                    records.append((k, first_row[k], length, bool(term), bool(trunc), epi_infos))
                    steps[k] += length
                    if under_quotas(k):
                        self._store_reset(next_row, k, self._reset(k), prepro)
                        begin(k, t + 1)
                    else:
                        # A slot that stops keeps its final observation (a recurrent policy
                        # still sees it).
                        next_row[k] = finals[len(records) - 1]
                        infos[k] = None
                        stopped = True
                new_finals = finals[first_end : len(records)]
                if not _all_finite(new_finals):
                    for (k, _, length, *_), final in zip(records[-len(ended) :], new_finals):
                        if not _all_finite(final):
                            raise self._non_finite_error(k, final, f"step {length}")
            # One check of all the new observations (zero rows where no slot stepped).
            if not _all_finite(next_row):
                for k in active:
                    if not _all_finite(next_row[k]):
                        first = first_row[k] == t + 1
                        phase = "reset" if first else f"step {t - first_row[k] + 1}"
                        raise self._non_finite_error(k, next_row[k], phase)
            if stopped:
                active = [k for k in active if infos[k] is not None]
            if rnn and not all_active:
                next_row[idle] = obs_buf[t][idle]
            t += 1
        return pack_episodes(history, finals, records, self._discrete_acs)

    def close(self) -> None:
        """Close every environment, ignoring errors (closing is best effort)."""
        for env in self.envs:
            try:
                env.close()
            except Exception:
                pass
        self.envs = []
