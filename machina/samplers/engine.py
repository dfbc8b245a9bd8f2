"""Batch engine: steps several environments with one policy call per step.

The engine is what runs inside one process: the user's own (``num_parallel=1``), a worker
process (``machina.samplers._worker``) or a Ray actor (``machina.samplers._ray_backend``). It
knows nothing about transports. It is three parts: the environments (``_env_slots.EnvSlots``,
or ``_vector_slots.VectorSlots`` when the factory makes a gymnasium ``VectorEnv``, stepped by
``_vector_loop.VectorStepLoop``),
the policy's RNG kept across runs (here), and one ``_step_loop.StepLoop`` per run, which picks
how to run the policy once (``_actors.make_actor``) and packs the episodes
(``_buffers.pack_episodes``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from machina.samplers._blas import single_thread_blas
from machina.samplers._buffers import pack_episodes, unpack_episodes
from machina.samplers._env_slots import EnvSlots
from machina.samplers._setup import (
    EnvCopier,
    as_env_factory,
    engine_rng_seed,
    slot_seeds,
    split_budget,
)
from machina.samplers._step_loop import StepLoop
from machina.samplers._task import (
    EngineSpec,
    EnvFactory,
    Episode,
    Quotas,
    SampleTask,
    SamplingAborted,
)
from machina.samplers._vector_loop import VectorStepLoop
from machina.samplers._vector_slots import VectorSlots, is_vector_env

__all__ = [
    "BatchEngine",
    "EngineSpec",
    "EnvCopier",
    "EnvFactory",
    "Episode",
    "Quotas",
    "SampleTask",
    "SamplingAborted",
    "as_env_factory",
    "engine_rng_seed",
    "pack_episodes",
    "split_budget",
    "unpack_episodes",
]


def make_slots(
    env_fn: EnvFactory,
    slot_ids: Sequence[int],
    seed: int | None,
    seeded: Sequence[bool] | None = None,
    vector_size_from_env: bool = False,
) -> EnvSlots | VectorSlots:
    """The engine's environments: ``env_fn`` is called once first; a gymnasium ``VectorEnv``
    is the engine's only environment (its sub-environments are the slots), anything else the
    first of ``len(slot_ids)`` environments.

    ``vector_size_from_env``: a ``VectorEnv`` gives the number of slots (from
    ``slot_ids[0]`` on) instead of having to match ``len(slot_ids)``.
    """
    slot_ids = list(slot_ids)
    try:
        first = env_fn()
    except Exception as exc:
        raise RuntimeError(
            f"environment {slot_ids[0]} (seed {slot_seeds(seed, slot_ids[:1])[0]}) raised "
            f"{type(exc).__name__}: {exc} during creation (env factory call)"
        ) from exc
    if is_vector_env(first):
        if vector_size_from_env:
            slot_ids = list(range(slot_ids[0], slot_ids[0] + int(first.num_envs)))
        try:
            return VectorSlots(first, slot_ids, seed, seeded)
        except BaseException:
            try:
                first.close()
            except Exception:
                pass
            raise
    return EnvSlots(env_fn, slot_ids, seed, seeded, first_env=first)


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
        vector_size_from_env: bool = False,
    ) -> None:
        self._env_fn, self._seed = env_fn, seed
        self.slots = make_slots(env_fn, slot_ids, seed, seeded, vector_size_from_env)
        self.slot_ids = self.slots.slot_ids
        self.seeds = self.slots.seeds
        self.observation_space = self.slots.observation_space
        self.action_space = self.slots.action_space
        # The policy's sampling RNG lives here, not in torch's global state, so that sampling
        # is reproducible per engine and the user's own RNG stream is left untouched.
        with torch.random.fork_rng(devices=[]):
            if rng_seed is None:
                torch.seed()
            else:
                torch.manual_seed(rng_seed)
            self._rng_state = torch.get_rng_state()

    @classmethod
    def from_spec(cls, env_fn: EnvFactory, spec: EngineSpec) -> BatchEngine:
        """The engine a transport builds remotely from ``spec``."""
        return cls(env_fn, spec.slot_ids, spec.seed, spec.rng_seed, spec.seeded)

    @property
    def envs(self) -> list:
        return self.slots.envs

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
        """Sample whole episodes until every slot has met its quotas.

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
            Act with a numpy copy of the policy when the policy offers one
            (``pol.numpy_inference()``: machina's feed-forward MLP policies on the CPU);
            other policies, or False, call ``pol`` itself.

        Returns
        -------
        epis : list of dict
            Whole episodes ordered by slot, then by start within the slot. Their arrays are
            views of columns shared by all episodes of the call.
        """
        task = SampleTask(pol, bool(deterministic), prepro, bool(fast_inference))
        return unpack_episodes(self.run_task(task, Quotas(epi_quotas, step_quotas), should_stop))

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
        """Like ``run``, but the episodes come packed (see ``pack_episodes``)."""
        task = SampleTask(pol, bool(deterministic), prepro, bool(fast_inference))
        return self.run_task(task, Quotas(epi_quotas, step_quotas), should_stop)

    def run_task(
        self,
        task: SampleTask,
        quotas: Quotas,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """One run: the episodes packed (``pack_episodes``), what a transport sends back, a
        few arrays whatever the number of episodes.

        Parameters
        ----------
        task : SampleTask
            The policy and how to act.
        quotas : Quotas
            One episode and one step quota per slot of this engine.
        should_stop : callable, optional
            Polled once per step; True aborts with ``SamplingAborted``.
        """
        # Inference mode skips autograd's bookkeeping altogether, a little cheaper than
        # no_grad per call. Not for recurrent policies: they keep their hidden state, which
        # would then be an inference tensor that a later training call could not use.
        rnn = bool(getattr(task.pol, "rnn", False))
        self._remake_dead_vector_env()
        grad_mode = torch.no_grad() if rnn else torch.inference_mode()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            try:
                with grad_mode, single_thread_blas():
                    loop_cls = VectorStepLoop if isinstance(self.slots, VectorSlots) else StepLoop
                    return loop_cls(self.slots, task, quotas).run(should_stop)
            finally:
                self._rng_state = torch.get_rng_state()

    def _remake_dead_vector_env(self) -> None:
        """A vector environment that can no longer step (gymnasium's ``AsyncVectorEnv``
        closes the worker of a sub-environment that raised, for good) is made anew by the
        factory, as a replaced worker's environments are: its first resets unseeded (the seeds
        were used). The caller's own instance, which the factory returns again, cannot be."""
        old = self.slots
        if not (isinstance(old, VectorSlots) and old.dead()):
            return
        new = make_slots(self._env_fn, old.slot_ids, self._seed, [True] * len(old.slot_ids))
        if getattr(new, "vec", None) is old.vec:
            why = "cannot step again: gymnasium closed the worker of a sub-environment that raised"
            if getattr(old.vec.unwrapped, "closed", False):
                why = "was closed"
            raise RuntimeError(
                f"{old.describe()} {why}. Pass a new VectorEnv, or a factory of them (e.g. "
                "lambda: gymnasium.make_vec(...)), which the sampler remakes after a failure"
            )
        old.close()
        self.slots = new

    def state_dict(self) -> dict[str, Any]:
        """What makes this engine's next run exact: the policy's torch RNG (uint8 tensor),
        each environment's RNG (JSON text) and the "first reset seeded" flags. Between two
        runs no environment is mid-episode (every run resets the slots it uses), so nothing
        else is needed."""
        self._remake_dead_vector_env()  # a state of environments that can step
        # a tensor (torch's own generator state), so torch.save/torch.load(weights_only=True)
        # of a sampler's state_dict work as for a module's
        return {"policy_rng": self._rng_state.clone(), **self.slots.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly from ``state`` (``state_dict`` of an engine over the same slots)."""
        self._remake_dead_vector_env()
        self.slots.load_state_dict(state)
        rng = state["policy_rng"]  # a tensor, or a numpy array (states saved before)
        if torch.is_tensor(rng):
            self._rng_state = rng.detach().to("cpu", torch.uint8).clone()
        else:
            self._rng_state = torch.from_numpy(np.array(rng, dtype=np.uint8))

    def close(self) -> None:
        """Close every environment, ignoring errors (closing is best effort)."""
        self.slots.close()
