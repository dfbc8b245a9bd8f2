"""One run of an engine: step every slot until each has met its quotas.

Per step: one policy call for the batch (through the run's actor, ``_actors.py``) and one
numpy copy per output key into time-major buffers (row = engine step, column = slot);
environments write their next observation straight into the next row, which is the policy's
next input, and a whole row is checked for NaN/inf at once. Only what ends an episode (its
final observation, a reset) is handled per slot in Python. Episodes are cut out of the buffers
once, at the end, by one gather per key (``pack_episodes``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from machina.samplers._actors import make_actor
from machina.samplers._buffers import (
    Growable,
    History,
    StepOutputs,
    numeric_info,
    pack_episodes,
)
from machina.samplers._env_slots import EnvSlots
from machina.samplers._loop_checks import LoopChecks
from machina.samplers._prepro_rows import apply_prepro, prepro_is_batched
from machina.samplers._task import Quotas, SampleTask, SamplingAborted
from machina.utils.checks import all_finite_array as all_finite


class StepLoop(LoopChecks):
    """The state of one run over ``slots``: per-slot episode bookkeeping and the buffers.

    Parameters
    ----------
    slots : EnvSlots
        The engine's environments.
    task : SampleTask
        The policy and how to act.
    quotas : Quotas
        One episode and one step quota per slot.
    """

    def __init__(self, slots: EnvSlots, task: SampleTask, quotas: Quotas) -> None:
        n = len(slots)
        self.slots = slots
        self.task = task
        self.epi_quotas, self.step_quotas = list(quotas.epis), list(quotas.steps)
        if len(self.epi_quotas) != n:
            raise ValueError(f"quotas: expected one per slot ({n}), given {len(self.epi_quotas)}")
        self.started = [0] * n
        self.steps = [0] * n  # steps of the finished episodes per slot
        self.first_row = [0] * n  # row of the current episode's first step, per slot
        # Per slot: the per-step numeric infos of the current episode; None when not stepping.
        self.infos: list[list | None] = [None] * n
        self.records: list[tuple] = []  # one per finished episode, see pack_episodes
        self.starts = np.zeros(n, dtype=np.float32)  # 1 where an episode starts (h_masks)
        self.history = History(n)
        self.env_steps = [env.step for env in slots.envs]  # bound once: used at every env step
        self.ended_epis = Growable(64)
        self.raw_rows = False  # raw observations (with a prepro) in history field raw_obs
        self.batched = False  # the prepro maps a batch of observations at once
        self.outputs: StepOutputs | None = None
        # Episodes reaching this length are cut, marked truncated (None: never).
        self.cap, self.cap_source = slots.episode_cap(task.max_episode_steps)

    def under_quotas(self, k: int) -> bool:
        epi_quota, step_quota = self.epi_quotas[k], self.step_quotas[k]
        under_epis = epi_quota is None or self.started[k] < epi_quota
        return under_epis and (step_quota is None or self.steps[k] < step_quota)

    def begin(self, k: int, row: int) -> None:
        self.first_row[k], self.starts[k], self.infos[k] = row, 1.0, []
        self.started[k] += 1

    def run(self, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Step until every slot met its quotas; the episodes packed (``pack_episodes``)."""
        slots, prepro, history = self.slots, self.task.prepro, self.history
        n = len(slots)
        # First resets, through the checking path: the first observation sets the shape.
        slots.ob_shape = None
        first_obs = {}
        for k in range(n):
            if self.under_quotas(k):
                first_obs[k] = slots.observe(k, slots.reset(k), "reset", prepro)
                self.begin(k, 0)
        if not first_obs:
            return pack_episodes(history, None, self.records, slots.discrete_acs)
        ob_shape = slots.ob_shape
        outputs = self.outputs = StepOutputs(history)
        actor = make_actor(self.task, ob_shape, outputs, self.starts)
        obs_buf = history.add("obs", ob_shape, np.float32)
        rews_buf = history.add("rews", (), np.float32)
        self.ended_epis.add("finals", ob_shape, np.float32)
        for k, ob in first_obs.items():
            obs_buf[0, k] = ob
        active = list(first_obs)
        step = self._step_envs if prepro is None else self._step_envs_prepro
        if prepro is not None and all(
            isinstance(slots.raw_obs.get(k), np.ndarray) for k in first_obs
        ):
            # Array observations: the raw ones go to a history field (e_is["raw_obs"]) and
            # the prepro runs once per step on all of them (_step_envs_prepro_rows).
            raw = slots.raw_obs[active[0]]
            # the space's dtype too: a reset returning np.array([0, 0]) must not make the
            # field int64 for the float steps that follow (they would be truncated)
            space_dtype = getattr(slots.observation_space, "dtype", None)
            dtype = raw.dtype if space_dtype is None else np.result_type(raw.dtype, space_dtype)
            raw_buf = history.add("raw_obs", raw.shape, dtype)
            for k in active:
                raw_buf[0, k] = slots.raw_obs[k]
            self.raw_rows = True
            self.batched = prepro_is_batched(prepro)
            step = self._step_envs_prepro_rows
        t = 0  # the row of the observations acted on
        # The first row at which an active slot's episode reaches the cap (see _cut).
        next_cut = self._next_cut(active)
        while active:
            if should_stop is not None and should_stop():
                raise SamplingAborted
            if history.ensure(t + 2):
                obs_buf, rews_buf = history.fields["obs"], history.fields["rews"]
                outputs.refresh()
            all_active = len(active) == n
            # Where this step's values go in a row: all of it, or the active slots' columns.
            step_rows = Ellipsis if all_active else np.asarray(active)
            if actor.full_batch and not all_active:
                idle = [k for k in range(n) if self.infos[k] is None]
            ac_real = actor.act(obs_buf[t], step_rows, t)
            if t == 0:
                self._check_action_shape(ac_real, step_rows)
            # Step every active slot; the next observations go straight into row t + 1.
            next_row = obs_buf[t + 1]
            rews, ended = step(active, ac_real, step_rows, next_row, t)
            try:
                rews_buf[t][step_rows] = rews
            except (TypeError, ValueError) as exc:  # numpy's message names nothing
                raise self._reward_error(active, rews, t) from exc
            if t >= next_cut:
                ended, next_cut = self._cut(active, ended, t)
            stopped = self._end_episodes(ended, next_row, t) if ended else False
            # One check of all the new observations (zero rows where no slot stepped).
            if not all_finite(next_row):
                self._raise_non_finite(active, next_row, t)
            if stopped:
                active = [k for k in active if self.infos[k] is not None]
            if actor.full_batch and not all_active:
                next_row[idle] = obs_buf[t][idle]
            t += 1
        finals = self.ended_epis.fields["finals"]
        packed = pack_episodes(history, finals, self.records, slots.discrete_acs)
        # Once per run, on the columns about to be returned (no cost per step): a policy's
        # NaN that no environment complained about, and the rewards.
        self._check_packed(packed)
        return packed

    def _step_envs(
        self, active: list[int], ac_real: np.ndarray, step_rows: Any, next_row: np.ndarray, t: int
    ) -> tuple[list, list]:
        """Step the active slots without prepro: observations go into ``next_row`` as they
        come (checked later for the whole row). Returns the rewards and the ended episodes
        ``(slot, raw final observation, term, trunc)``."""
        raws, rews, ended = self._step_each(active, ac_real, t, keep_final=True)
        # One copy for the row (checked by the caller, for the whole row at once); the slots
        # that ended are overwritten with their reset or final observation.
        self._write_row(next_row, step_rows, active, raws, t)
        return rews, ended

    def _step_each(
        self, active: list[int], ac_real: np.ndarray, t: int, keep_final: bool
    ) -> tuple[list, list, list]:
        """Step each active slot once: its raw observations, rewards and ended episodes
        ``(slot, raw final observation or None, term, trunc)``; infos are recorded."""
        infos, env_steps = self.infos, self.env_steps
        raws, rews, ended = [], [], []
        for k, a in zip(active, ac_real):
            result = None
            try:
                result = env_steps[k](a)
                raw, rew, term, trunc, info = result
                # here, so that an info that is no dict or an array flag names the env too
                if info:
                    infos[k].append(numeric_info(info))
                term, trunc = bool(term), bool(trunc)
            except Exception as exc:
                raise self._step_error(k, t, exc, result) from exc
            raws.append(raw)
            rews.append(rew)
            if term or trunc:
                ended.append((k, raw if keep_final else None, term, trunc))
        return raws, rews, ended

    def _step_error(self, k: int, t: int, exc: Exception, result: Any) -> RuntimeError:
        """The error for slot ``k``'s step at row ``t``: ``env.step`` raised ``exc`` or
        returned ``result`` that could not be read (see ``EnvSlots.step_error``)."""
        error = self.slots.step_error(k, f"step {t - self.first_row[k] + 1}", exc, result)
        return self._blame(k, t, error)

    def _write_row(
        self, row: np.ndarray, step_rows: Any, active: list[int], raws: list, t: int
    ) -> None:
        """``row[step_rows] = raws`` in one copy; on a shape fault, slot by slot to name it."""
        try:
            row[step_rows] = raws
        except (TypeError, ValueError):
            for k, raw in zip(active, raws):
                try:
                    row[k] = raw
                except (TypeError, ValueError) as exc:
                    error = f"step {t - self.first_row[k] + 1}"
                    raise self.slots.shape_error(k, raw, error) from exc

    def _step_envs_prepro_rows(
        self, active: list[int], ac_real: np.ndarray, step_rows: Any, next_row: np.ndarray, t: int
    ) -> tuple[list, list]:
        """Step the active slots with a prepro on array observations: the raw observations
        go into the next row of ``raw_obs`` as they come, then through the prepro all at
        once (one call for a batched prepro, ``machina.prepro.BasePrePro``), into
        ``next_row``; the ended episodes' final observations are in it too."""
        slots, first_row = self.slots, self.first_row
        raws, rews, ended = self._step_each(active, ac_real, t, keep_final=False)
        raw_row = self.history.fields["raw_obs"][t + 1]
        self._write_row(raw_row, step_rows, active, raws, t)
        if raw_row.dtype.kind in "fc" and not all_finite(raw_row):
            k = _first_non_finite(active, raw_row)
            error = slots.non_finite_error(k, raw_row[k], f"step {t - first_row[k] + 1}")
            raise self._blame(k, t, error)
        # The stepping slots' rows only (the whole row, a view, when every slot steps).
        out = apply_prepro(self.task.prepro, raw_row[step_rows], self.batched)
        try:
            next_row[step_rows] = out
        except (TypeError, ValueError) as exc:
            k = active[0]
            raise self._blame(
                k, t, slots.shape_error(k, out[0], f"step {t - first_row[k] + 1}", True)
            ) from exc
        # One check of the row (after the float32 cast), before the ends read it: the raw
        # observations were finite, so a NaN/inf here is the prepro's, not the environment's.
        if not all_finite(next_row):
            k = _first_non_finite(active, next_row)
            phase = f"step {t - first_row[k] + 1}"
            raise slots.prepro_error(k, next_row[k], raw_row[k], phase)
        return rews, ended

    def _step_envs_prepro(
        self, active: list[int], ac_real: np.ndarray, step_rows: Any, next_row: np.ndarray, t: int
    ) -> tuple[list, list]:
        """Step the active slots with a prepro: each observation through ``slots.observe``."""
        slots, infos, first_row, prepro = self.slots, self.infos, self.first_row, self.task.prepro
        rews, ended = [], []
        for k, a in zip(active, ac_real):
            result = None
            try:
                result = self.env_steps[k](a)
                raw, rew, term, trunc, info = result
                step_info = numeric_info(info) if info else {}
                term, trunc = bool(term), bool(trunc)
            except Exception as exc:
                raise self._step_error(k, t, exc, result) from exc
            rews.append(rew)
            # The raw observation this step acted on: running statistics must come from raw
            # observations, which clipped normalised ones cannot give back
            # (machina.prepro.BasePrePro.update_with_epis).
            if k in slots.raw_obs:  # array observations (a Dict / Tuple one is not kept)
                step_info["raw_obs"] = slots.raw_obs[k]
            infos[k].append(step_info)
            if term or trunc:
                ended.append((k, raw, term, trunc))
            else:
                try:
                    next_row[k] = slots.observe(k, raw, f"step {t - first_row[k] + 1}", prepro)
                except RuntimeError as error:
                    raise self._blame(k, t, error) from error.__cause__
        return rews, ended

    def _end_episodes(self, ended: list[tuple], next_row: np.ndarray, t: int) -> bool:
        """Record the episodes that ended at step ``t``, reset their slots or stop them.

        Returns whether a slot met its quotas (and leaves the active slots)."""
        slots, records, prepro = self.slots, self.records, self.task.prepro
        first_end = len(records)
        self.ended_epis.ensure(first_end + len(ended))
        finals = self.ended_epis.fields["finals"]
        stopped = False
        for k, raw, term, trunc in ended:
            length = t - self.first_row[k] + 1
            if prepro is None or raw is None:  # the final observation is in the row already
                finals[len(records)] = next_row[k]
            else:
                try:
                    finals[len(records)] = slots.observe(k, raw, f"step {length}", prepro)
                except RuntimeError as error:
                    raise self._blame(k, t, error) from error.__cause__
            epi_infos = self.infos[k] if len(self.infos[k]) == length else None
            records.append((k, self.first_row[k], length, bool(term), bool(trunc), epi_infos))
            self.steps[k] += length
            if self.under_quotas(k):
                slots.store_reset(next_row, k, slots.reset(k), prepro)
                if self.raw_rows:
                    self.history.fields["raw_obs"][t + 1, k] = slots.raw_obs[k]
                self.begin(k, t + 1)
            else:
                # A slot that stops keeps its final observation (a recurrent policy still
                # sees it).
                next_row[k] = finals[len(records) - 1]
                self.infos[k] = None
                stopped = True
        new_finals = finals[first_end : len(records)]
        if not all_finite(new_finals):
            for (k, first, length, *_), final in zip(records[-len(ended) :], new_finals):
                if not all_finite(final):
                    error = slots.non_finite_error(k, final, f"step {length}")
                    raise self._blame(k, t, error, first)
        return stopped

    def _next_cut(self, active: list[int]) -> float:
        """A row at or before the first at which an active slot's episode reaches the cap.

        First rows only grow (a slot's next episode starts later), so a value computed once
        stays a lower bound: it is refreshed only when reached (``_cut``), not at every end.
        """
        if self.cap is None or not active:
            return float("inf")
        return min(self.first_row[k] for k in active) + self.cap - 1

    def _cut(self, active: list[int], ended: list[tuple], t: int) -> tuple[list[tuple], float]:
        """``ended`` plus the episodes of ``active`` that reach the length cap at step ``t``:
        cut, truncated (they bootstrap), their final observation already in the next row;
        and the next row to look again."""
        ending = {e[0] for e in ended}
        cut = [
            (k, None, False, True)
            for k in active
            if k not in ending and t - self.first_row[k] + 1 >= self.cap
        ]
        if cut and self.cap_source == "default" and not self.slots.warned_cap:
            self.slots.warned_cap = True
            warnings.warn(
                f"environment {self.slots.slot_ids[cut[0][0]]}: an episode reached "
                f"{self.cap:,} steps and was cut (truncated); the environment has no "
                "spec.max_episode_steps, so that is the sampler's default cap: pass "
                "EpiSampler(..., max_episode_steps=N) (None: never cut) or wrap the "
                "environment in gymnasium.wrappers.TimeLimit",
                RuntimeWarning,
                stacklevel=2,
            )
        # Slots that end now start their next episode (if any) at row t + 1.
        ending |= {e[0] for e in cut}
        continuing = [k for k in active if k not in ending]
        next_cut = min(self._next_cut(continuing), t + self.cap)
        return ended + cut, next_cut

    def _reward_error(self, active: list[int], rews: list, t: int) -> RuntimeError:
        """The error naming the first environment whose reward is not a scalar number."""
        for k, rew in zip(active, rews):
            try:
                float(rew)  # a number (a 1-element array passes here, not the ndim check)
                ok = np.ndim(rew) == 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                detail = f"returned the reward {rew!r}; expected a scalar number"
                return self.slots.env_error(k, f"step {t - self.first_row[k] + 1}", None, detail)
        return RuntimeError(f"rewards {rews!r}: expected scalar numbers")

    def _raise_non_finite(self, active: list[int], next_row: np.ndarray, t: int) -> None:
        for k in active:
            if not all_finite(next_row[k]):
                first = self.first_row[k] == t + 1
                phase = "reset" if first else f"step {t - self.first_row[k] + 1}"
                error = self.slots.non_finite_error(k, next_row[k], phase)
                raise error if first else self._blame(k, t, error)


def _first_non_finite(active: list[int], row: np.ndarray) -> int:
    """The first of the ``active`` slots whose entry of ``row`` holds a NaN or inf (one found
    by a whole-row check: only then is this per-slot loop run)."""
    return next(k for k in active if not all_finite(row[k]))
