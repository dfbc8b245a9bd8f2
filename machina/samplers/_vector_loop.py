"""One run of an engine over a gymnasium ``VectorEnv``: the step loop of ``_step_loop.py``
with one ``step`` call for all slots and the episode-end bookkeeping as array operations.

The buffers are the same time-major ``History`` (row = engine step, column = slot, i.e.
sub-environment), so episodes are cut out by the same gathers (``pack_columns``). Per step:
one policy call, one ``vec.step``, one copy of the observations into the next row, and boolean
masks over the slots for what ends, what starts and what resets; no Python loop over slots.

Autoreset modes (gymnasium 1.x, ``metadata["autoreset_mode"]``):

- ``NEXT_STEP``: the step that ends an episode returns its true final observation; the next
  step of that sub-environment is its reset (its action is ignored, its reward 0), so the slot
  spends one row resetting and its next episode starts one row later. The policy acts on every
  slot at every step (the rows of resetting or idle slots are simply not gathered).
- ``SAME_STEP``: the step that ends an episode returns the reset observation and the true
  final one in ``info["final_obs"]``; the next episode starts at the next row.
- ``DISABLED``: ended sub-environments are reset at once with ``reset(options={"reset_mask":
  ...})`` (the mode's contract), idle ones too (they must not step past an end).

With ``SAME_STEP`` or ``DISABLED`` the policy acts on the slots in an episode only, as the
per-env engine does, so a ``SyncVectorEnv`` of the same environments gives the per-env engine's
episodes in the first ``sample`` call (same seeds, same draws; see the notes of
``_vector_slots.py``). Later calls part from them: every call starts with a reset of all
sub-environments, and those that the vector environment had already reset (or kept stepping
while idle) draw their starts from a later point of their RNG than the per-env engine's.

Budgets: a slot begins a new episode only while under its quotas, as in the per-env engine;
a slot that met them idles (its sub-environment still steps, since a vector environment steps
all of them, and what it returns is ignored) until every slot is done.

The length cap (``max_episode_steps``) cuts an episode, marked truncated; its sub-environment
is then reset with ``reset_mask`` when the vector environment supports it (gymnasium's own,
envpool, any in ``DISABLED`` mode), else the slot waits for the sub-environment's own end
(at most the environment's own limit, ``spec.max_episode_steps``, or 10,000 steps, then an
error) and starts its next episode after it: those steps are lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

import numpy as np
from gymnasium.vector import AutoresetMode

from machina.samplers._actors import make_actor
from machina.samplers._buffers import Growable, History, StepOutputs, pack_columns
from machina.samplers._loop_checks import LoopChecks
from machina.samplers._prepro_rows import apply_prepro, prepro_is_batched
from machina.samplers._task import Quotas, SampleTask, SamplingAborted
from machina.samplers._vector_slots import VectorSlots
from machina.utils.checks import all_finite_array as all_finite

_UNLIMITED = np.iinfo(np.int64).max
# Info keys of gymnasium's vector environments that are not per-step numbers.
_SKIPPED_INFOS = {"final_obs", "final_info", "final_observation", "episode"}


def _numeric(value: Any, n: int) -> TypeGuard[np.ndarray]:
    """Whether ``value`` is a per-slot numeric array of ``n`` slots."""
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.shape[:1] == (n,)


def _step_infos(infos: dict[str, Any], final: dict[str, Any], n: int) -> dict[str, Any]:
    """The infos of the step itself, per slot, from a SAME_STEP vector env's: where an
    episode ended (``_final_info``) its step's info is in ``final_info`` and the top level
    holds the new episode's reset info, which belongs to no step recorded here."""
    ended = np.asarray(infos.get("_final_info", np.ones(n, bool)), dtype=bool)
    out: dict[str, Any] = {}
    for key in {k for k in (*infos, *final) if not k.startswith("_")} - _SKIPPED_INFOS:
        top, last = infos.get(key), final.get(key)
        if not (_numeric(top, n) or _numeric(last, n)):
            continue
        arrays = [a for a in (top, last) if _numeric(a, n)]
        # a float step info is kept whole over an int reset info
        value = np.zeros(arrays[0].shape, dtype=np.result_type(*arrays))
        mask = np.zeros(n, dtype=bool)
        if _numeric(top, n):
            value[:] = top
            mask[:] = infos.get("_" + key, True)
        mask[ended] = False
        if _numeric(last, n) and last.shape == value.shape:
            value[ended] = last[ended]
            mask[ended] = np.asarray(final.get("_" + key, np.ones(n, bool)), bool)[ended]
        out[key], out["_" + key] = value, mask
    return out


class VectorStepLoop(LoopChecks):
    """The state of one run over a ``VectorSlots``: per-slot bookkeeping in arrays.

    Parameters
    ----------
    slots : VectorSlots
        The engine's vector environment.
    task : SampleTask
        The policy and how to act.
    quotas : Quotas
        One episode and one step quota per slot.
    """

    def __init__(self, slots: VectorSlots, task: SampleTask, quotas: Quotas) -> None:
        n = len(slots)
        self.slots: Any = slots
        self.task = task
        if len(quotas.epis) != n:
            raise ValueError(f"quotas: expected one per slot ({n}), given {len(quotas.epis)}")
        self.epi_quota = np.array([_UNLIMITED if q is None else q for q in quotas.epis], np.int64)
        self.step_quota = np.array([_UNLIMITED if q is None else q for q in quotas.steps], np.int64)
        self.started = np.zeros(n, np.int64)
        self.steps_done = np.zeros(n, np.int64)  # steps of the finished episodes per slot
        self.first_row = np.zeros(n, np.int64)  # row of the current episode's first step
        self.in_epi = np.zeros(n, bool)  # the slot's step at this row belongs to an episode
        self.resetting = np.zeros(n, bool)  # NEXT_STEP: the reset step; begins at the next row
        self.waiting = np.zeros(n, bool)  # cut, waits for its sub-environment's own end
        self.wait_since = np.zeros(n, np.int64)
        self.just_ended = np.zeros(n, bool)  # an episode ended (or was cut) at this step
        self.starts = np.zeros(n, dtype=np.float32)  # 1 where an episode starts (h_masks)
        self.history = History(n)
        self.ended_epis = Growable(64)
        self.num_ended = 0
        self.chunks: list[tuple[np.ndarray, ...]] = []  # per step with ends: the episodes
        self.outputs: StepOutputs | None = None
        self.cap: int | None
        self.cap, self.cap_source = slots.episode_cap(task.max_episode_steps)
        self.batched = prepro_is_batched(task.prepro)

    # ------------------------------------------------------------------ bookkeeping
    def _under(self, idx: np.ndarray) -> np.ndarray:
        return (self.started[idx] < self.epi_quota[idx]) & (
            self.steps_done[idx] < self.step_quota[idx]
        )

    def _begin(self, idx: np.ndarray, row: int) -> None:
        self.first_row[idx] = row
        self.started[idx] += 1
        self.in_epi[idx] = True
        self.starts[idx] = 1.0

    def _observe(
        self, raw: np.ndarray, out: np.ndarray, raw_out: np.ndarray | None, t: int
    ) -> None:
        """Raw observations (n, ...) of step ``t`` into the observation row ``out`` (after
        prepro) and the raw row ``raw_out``."""
        prepro = self.task.prepro
        if prepro is None:
            out[...] = raw
            return
        if raw_out is not None:
            raw_out[...] = raw
        out[...] = apply_prepro(prepro, raw, self.batched)
        self._check_prepro(raw, out, None, t)

    def _check_prepro(
        self, raw: np.ndarray, out: np.ndarray, idx: np.ndarray | None, t: int, phase: str = ""
    ) -> None:
        """The prepro's output ``out`` (m, ...) of float32 for the raw observations ``raw`` of
        slots ``idx`` (None: all) at step ``t``: one check; a NaN/inf from a finite raw
        observation is the prepro's (a raw one's is the environment's: ``_check_row``)."""
        if all_finite(out):
            return
        bad = ~np.isfinite(out.reshape(len(out), -1)).all(axis=1)
        raw = np.asarray(raw)
        if raw.dtype.kind in "fc":
            bad &= np.isfinite(raw.reshape(len(raw), -1)).all(axis=1)
        if not bad.any():
            return
        j = int(np.flatnonzero(bad)[0])
        k = j if idx is None else int(idx[j])
        if not phase:
            in_epi = self.in_epi[k] and self.first_row[k] <= t
            phase = f"step {t - int(self.first_row[k]) + 1}" if in_epi else f"engine step {t + 1}"
        raise self.slots.prepro_error(k, out[j], raw[j], phase)

    # ------------------------------------------------------------------ the run
    def run(self, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Step until every slot met its quotas; the episodes packed (``pack_columns``)."""
        slots, history, prepro = self.slots, self.history, self.task.prepro
        n = len(slots)
        raw0 = slots.reset_all()
        starting = np.flatnonzero(self._under(np.arange(n)))
        if not len(starting):
            return self._pack(None)
        obs0 = np.asarray(apply_prepro(prepro, raw0, self.batched) if prepro else raw0)
        ob_shape = slots.ob_shape = tuple(obs0.shape[1:])
        outputs = self.outputs = StepOutputs(history)
        actor = make_actor(self.task, ob_shape, outputs, self.starts)
        obs_buf = history.add("obs", ob_shape, np.float32)
        rews_buf = history.add("rews", (), np.float32)
        raw_buf = history.add("raw_obs", raw0.shape[1:], raw0.dtype) if prepro else None
        self.ended_epis.add("finals", ob_shape, np.float32)
        obs_buf[0] = obs0
        if raw_buf is not None:
            raw_buf[0] = raw0
            self._check_prepro(raw0, obs_buf[0], None, -1, "reset")
        self._begin(starting, 0)
        self._check_row(obs_buf[0], -1)
        mode = slots.mode
        # NEXT_STEP: a resetting slot must still get an action, and equality with the per-env
        # engine is out of reach anyway (the reset step shifts the draws): act on all slots.
        act_all = mode == AutoresetMode.NEXT_STEP
        last_actions: np.ndarray | None = None
        owned = False  # last_actions is the loop's own array (not a view of the outputs)
        t = 0
        next_cut = self._next_cut(t)
        live = self.in_epi.copy()
        while live.any():
            if should_stop is not None and should_stop():
                raise SamplingAborted
            if history.ensure(t + 2):
                obs_buf, rews_buf = history.fields["obs"], history.fields["rews"]
                raw_buf = history.fields.get("raw_obs")
                outputs.refresh()
            in_epi = self.in_epi
            rows: Any = Ellipsis
            if not act_all and not in_epi.all() and in_epi.any():
                rows = np.flatnonzero(in_epi)
            ac_real = actor.act(obs_buf[t], rows, t)
            if t == 0:
                self._check_action_shape(ac_real, rows)
            if rows is Ellipsis:
                actions = last_actions = ac_real
                owned = False
            else:
                # The idle slots' sub-environments step too: they repeat a valid action.
                if last_actions is None:
                    last_actions = np.repeat(ac_real[:1], n, axis=0)
                elif not owned:
                    last_actions = np.array(last_actions)
                owned = True
                last_actions[rows] = ac_real
                actions = last_actions
            obs, rews, terms, truncs, infos = slots.step(actions, f"engine step {t + 1}")
            rews_buf[t] = rews
            next_row = obs_buf[t + 1]
            try:
                self._observe(obs, next_row, None if raw_buf is None else raw_buf[t + 1], t)
            except (TypeError, ValueError) as exc:
                raise slots.error(
                    f"engine step {t + 1}",
                    None,
                    f"returned observations of shape {np.shape(obs)} (after prepro "
                    f"{np.shape(next_row)} expected)"
                    if prepro
                    else f"returned observations of shape {np.shape(obs)} where "
                    f"{(n, *ob_shape)} was expected",
                ) from exc
            if infos:
                self._store_infos(infos, t)
            env_end = np.logical_or(terms, truncs)
            self.just_ended[:] = False
            self._step_bookkeeping(t, env_end, terms, truncs, infos, next_row, raw_buf)
            if t >= next_cut:
                next_cut = self._cut(t, next_row, raw_buf)
            if mode == AutoresetMode.DISABLED:
                self._reset_ended(env_end, t, next_row, raw_buf)
            self._check_row(next_row, t)
            live = self.in_epi | self.resetting | self.waiting
            t += 1
        return self._pack(self.ended_epis.fields["finals"])

    def _next_cut(self, t: int) -> float:
        """A row at or before the first at which an episode in progress reaches the cap."""
        if self.cap is None:
            return float("inf")
        firsts = self.first_row[self.in_epi]
        first = int(firsts.min()) if len(firsts) else t + 1
        return min(first + self.cap - 1, t + self.cap)

    def _step_bookkeeping(
        self,
        t: int,
        env_end: np.ndarray,
        terms: np.ndarray,
        truncs: np.ndarray,
        infos: dict[str, Any],
        next_row: np.ndarray,
        raw_buf: np.ndarray | None,
    ) -> None:
        """Step ``t``'s episode ends and starts, as masks over the slots."""
        mode = self.slots.mode
        ended = self.in_epi & env_end  # before this step's starts (a waiting slot's env ends)
        # NEXT_STEP: the slots that spent this step resetting begin at the next row.
        if mode == AutoresetMode.NEXT_STEP and self.resetting.any():
            idx = np.flatnonzero(self.resetting)
            self.resetting[idx] = False
            self._begin(idx, t + 1)
        # Slots cut earlier whose sub-environment has now ended: their next episode follows.
        if self.waiting.any():
            self._end_waits(t, env_end)
        if not ended.any():
            return
        idx = np.flatnonzero(ended)
        finals = self._finals(idx, infos, next_row, t)
        self._record(idx, t, np.asarray(terms)[idx], np.asarray(truncs)[idx], finals)
        go_on = idx[self._under(idx)]
        if not len(go_on):
            return
        if mode == AutoresetMode.NEXT_STEP:
            self.resetting[go_on] = True
        elif mode == AutoresetMode.SAME_STEP:
            self._begin(go_on, t + 1)  # the row holds their reset observation already
        # DISABLED: reset with the other ended sub-environments (_reset_ended), which begins them

    def _end_waits(self, t: int, env_end: np.ndarray) -> None:
        bound = self.slots.own_limit()
        over = self.waiting & (t - self.wait_since >= bound)
        if over.any():
            k = int(np.flatnonzero(over)[0])
            raise self.slots.env_error(
                k,
                f"engine step {t + 1}",
                None,
                f"did not end within {bound:,} steps after its episode was cut at "
                f"max_episode_steps={self.cap}, and this vector environment cannot reset one "
                "sub-environment (no reset_mask): give it a time limit of its own (e.g. "
                "gymnasium.make_vec(..., max_episode_steps=N)) or pass max_episode_steps=None",
            )
        done = np.flatnonzero(self.waiting & env_end)
        if not len(done):
            return
        self.waiting[done] = False
        if self.slots.mode == AutoresetMode.NEXT_STEP:
            self.resetting[done] = True
        else:
            self._begin(done, t + 1)

    def _finals(
        self, idx: np.ndarray, infos: dict[str, Any], next_row: np.ndarray, t: int
    ) -> np.ndarray:
        """The final observations (after prepro) of the episodes of slots ``idx`` that their
        sub-environments ended at step ``t``."""
        if self.slots.mode != AutoresetMode.SAME_STEP:
            return next_row[idx]  # the returned observation is the final one
        final_obs = infos.get("final_obs") if infos else None
        if final_obs is None:
            raise self.slots.error(
                "step",
                None,
                "is in SAME_STEP autoreset mode but gave no info['final_obs'] for the "
                f"sub-environments {idx.tolist()} that ended",
            )
        raw = np.stack([np.asarray(final_obs[k]) for k in idx.tolist()])
        if self.task.prepro is None:
            return raw.astype(np.float32, copy=False)
        out = apply_prepro(self.task.prepro, raw, self.batched).astype(np.float32, copy=False)
        self._check_prepro(raw, out, idx, t)
        return out

    def _record(
        self, idx: np.ndarray, t: int, terms: np.ndarray, truncs: np.ndarray, finals: np.ndarray
    ) -> None:
        """Record the episodes of slots ``idx`` ended at step ``t``, their final observations."""
        lengths = t - self.first_row[idx] + 1
        first = self.num_ended
        self.ended_epis.ensure(first + len(idx))
        stored = self.ended_epis.fields["finals"]
        stored[first : first + len(idx)] = finals
        self.num_ended += len(idx)
        self.chunks.append(
            (idx, self.first_row[idx].copy(), lengths, terms.astype(bool), truncs.astype(bool))
        )
        self.steps_done[idx] += lengths
        self.in_epi[idx] = False
        self.just_ended[idx] = True
        if not all_finite(stored[first : first + len(idx)]):
            bad = ~np.isfinite(stored[first : first + len(idx)].reshape(len(idx), -1)).all(1)
            j = int(np.flatnonzero(bad)[0])
            k = int(idx[j])
            error = self.slots.non_finite_error(k, stored[first + j], f"step {int(lengths[j])}")
            raise self._blame(k, t, error, int(self.first_row[k]))

    def _cut(self, t: int, next_row: np.ndarray, raw_buf: np.ndarray | None) -> float:
        """Cut the episodes that reach the cap at step ``t`` (truncated, final observation in
        the next row); reset their sub-environments or let them wait; the next row to look."""
        cut = self.in_epi & (t - self.first_row + 1 >= self.cap)
        if cut.any():
            idx = np.flatnonzero(cut)
            if self.cap_source == "default" and not self.slots.warned_cap:
                self.slots.warned_cap = True
                self._warn_cap(int(idx[0]))
            falses = np.zeros(len(idx), bool)
            self._record(idx, t, falses, ~falses, next_row[idx])
            go_on = idx[self._under(idx)]
            if len(go_on) and self.slots.mode != AutoresetMode.DISABLED:
                if self.slots.masked_reset:
                    mask = np.zeros(len(self.slots), bool)
                    mask[go_on] = True
                    self._reset_mask(mask, t, next_row, raw_buf)
                else:
                    self.waiting[go_on] = True
                    self.wait_since[go_on] = t
            # DISABLED: cut sub-environments are reset below (_reset_ended) with the ended ones
        return self._next_cut(t)

    def _warn_cap(self, k: int) -> None:
        import warnings

        warnings.warn(
            f"environment {self.slots.slot_ids[k]}: an episode reached {self.cap:,} steps and "
            "was cut (truncated); the vector environment's spec has no max_episode_steps, so "
            "that is the sampler's default cap: pass EpiSampler(..., max_episode_steps=N) "
            "(None: never cut)",
            RuntimeWarning,
            stacklevel=3,
        )

    def _reset_ended(
        self, env_end: np.ndarray, t: int, next_row: np.ndarray, raw_buf: np.ndarray | None
    ) -> None:
        """DISABLED mode: reset every sub-environment that ended (or was cut) at step ``t``;
        those of slots going on begin their next episode at the next row."""
        mask = env_end | (self.just_ended & self._under(np.arange(len(env_end))))
        if mask.any():
            self._reset_mask(mask, t, next_row, raw_buf)

    def _reset_mask(
        self, mask: np.ndarray, t: int, next_row: np.ndarray, raw_buf: np.ndarray | None
    ) -> None:
        """Reset the sub-environments of ``mask``; those whose slot has an episode to begin
        (ended under its quotas, not idle) begin at the next row."""
        raw = self.slots.reset_some(mask)
        idx = np.flatnonzero(mask)
        prepro = self.task.prepro
        next_row[idx] = apply_prepro(prepro, raw, self.batched) if prepro else raw
        if raw_buf is not None:
            raw_buf[t + 1][idx] = raw
        if prepro:
            self._check_prepro(raw, next_row[idx], idx, t, "reset")
        # Which of them begin: those whose episode ended (or was cut) at this step, under
        # their quotas (not idle ones, whose sub-environment only had to be reset).
        begins = self.just_ended[idx] & ~self.in_epi[idx] & self._under(idx)
        if begins.any():
            self._begin(idx[begins], t + 1)

    def _check_row(self, row: np.ndarray, t: int) -> None:
        """The observations of row ``t + 1`` are finite where a slot is in an episode; an
        idle slot's non-finite observation is zeroed (the policy still reads it)."""
        if all_finite(row):
            return
        bad = np.flatnonzero(~np.isfinite(row.reshape(len(row), -1)).all(axis=1))
        live = self.in_epi[bad]
        if live.any():
            k = int(bad[live][0])
            first = int(self.first_row[k]) == t + 1
            phase = "reset" if first else f"step {t - int(self.first_row[k]) + 1}"
            error = self.slots.non_finite_error(k, row[k], phase)
            raise error if first else self._blame(k, t, error)
        row[bad] = 0.0

    def _store_infos(self, infos: dict[str, Any], t: int) -> None:
        """Step ``t``'s numeric per-slot infos into history fields ``e_is/<key>`` and where
        each slot had the key into ``e_is_mask/<key>`` (gymnasium's ``_<key>`` masks)."""
        n, fields = len(self.slots), self.history.fields
        final = infos.get("final_info")
        if isinstance(final, dict) and final:
            infos = _step_infos(infos, final, n)
        for key, value in infos.items():
            if key.startswith("_") or key in _SKIPPED_INFOS:
                continue
            if not _numeric(value, n):
                continue
            name = "e_is/" + key
            if name not in fields:
                self.history.add(name, value.shape[1:], value.dtype)
                self.history.add("e_is_mask/" + key, (), bool)
            elif value.dtype != fields[name].dtype:  # e.g. 0 first, then floats
                self.history.widen(name, value.dtype)
            try:
                fields[name][t] = value
            except ValueError:
                continue  # a shape that changed: the key is not kept for this step
            mask = infos.get("_" + key)
            fields["e_is_mask/" + key][t] = True if mask is None else mask

    def _pack(self, finals: np.ndarray | None) -> dict[str, Any]:
        if self.chunks:
            slots, firsts, lengths, terms, truncs = (
                np.concatenate([c[j] for c in self.chunks]) for j in range(5)
            )
        else:
            slots = firsts = lengths = np.zeros(0, np.int64)
            terms = truncs = np.zeros(0, bool)
        packed = pack_columns(
            self.history,
            finals if finals is not None else np.zeros((0,)),
            slots.astype(np.int64),
            firsts,
            lengths,
            terms,
            truncs,
            self.slots.discrete_acs,
        )
        if len(slots):
            self._check_packed(packed)
        return packed
