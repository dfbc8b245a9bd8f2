"""machina 0.x's Ray helpers: ``init_ray`` and trainers launched as Ray actors that
form one ``torch.distributed`` group (``BaseDistributedRayTrainer``, ``TrainManager``), plus
its Redis handle functions.

Ray is optional: it is imported when these are used, so ``machina.utils`` imports without it.
"""

from __future__ import annotations

import copy
import datetime
import os
import random
import socket
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from machina.utils.device import set_device
from machina.utils.distributed import set_grad_averaging
from machina.utils.rng import global_rng_state, set_global_rng_state
from machina.utils.tensors import state_dict_to_cpu

__all__ = [
    "import_ray",
    "init_ray",
    "BaseDistributedRayTrainer",
    "TrainManager",
    "make_redis",
    "set_redis",
    "get_redis",
]

_REDIS: Any = None


#: how to install the optional Ray dependency (named in every error about a missing Ray)
RAY_INSTALL_HINT = 'pip install -e ".[ray]"'


def import_ray() -> Any:
    """The ``ray`` module, imported on first use (Ray is an optional dependency of machina).

    The one place machina imports Ray: ``EpiSampler(backend="ray")``, ``init_ray`` and the Ray
    trainers all call it.

    Raises
    ------
    ImportError
        When Ray is not installed, saying how to install it.
    """
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "Ray is not installed; it is an optional dependency of machina "
            '(EpiSampler(backend="ray"), the Ray trainers of machina.utils). Install it with: '
            f"{RAY_INSTALL_HINT} (or pip install 'ray[default]>=2.9')"
        ) from exc
    return ray


def init_ray(
    num_cpus: int | None = None, num_gpus: int | None = None, ray_redis_address: str | None = None
) -> None:
    """Connect to the Ray cluster at ``ray_redis_address`` (``"host:port"``; else at
    ``RAY_ADDRESS`` when set), or start a new local Ray with ``num_cpus`` / ``num_gpus`` (all
    GPUs torch sees by default), even when a cluster started by ``ray start`` runs on this
    machine (``ray.init()`` alone would join it, and refuse the resource arguments)."""
    ray = import_ray()
    address = ray_redis_address or os.environ.get("RAY_ADDRESS")
    if address:
        if num_cpus is not None or num_gpus is not None:
            warnings.warn(
                f"init_ray: num_cpus={num_cpus}, num_gpus={num_gpus} are not used: joining the "
                f"cluster at {address}, whose nodes say what they have",
                RuntimeWarning,
                stacklevel=2,
            )
        ray.init(address=address)
        return
    if num_gpus is None:
        num_gpus = torch.cuda.device_count()
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)


class BaseDistributedRayTrainer:
    """Base class of a trainer that runs as a Ray actor and joins a ``torch.distributed``
    group; subclass it with ``__init__`` building nets and optimisers and ``train(**kwargs)``.

    ``backend="nccl"`` falls back to ``"gloo"`` when the actor has no GPU. Gradient averaging
    in every ``train`` function's optimiser step is turned on.
    """

    @classmethod
    def as_remote(cls, num_gpus: float | None = None, resources: dict | None = None) -> Any:
        """The Ray actor class; ``num_gpus`` defaults to 1 when torch sees a GPU and the
        running Ray cluster has one (a Ray started with ``num_gpus=0`` could never place an
        actor asking for one: the trainers waited forever), else 0."""
        ray = import_ray()
        if num_gpus is None:
            has_gpu = torch.cuda.is_available()
            if has_gpu and ray.is_initialized():  # else (Ray not started yet) as it was
                has_gpu = ray.cluster_resources().get("GPU", 0) >= 1
            num_gpus = 1 if has_gpu else 0
        return ray.remote(num_cpus=0, num_gpus=num_gpus, resources=resources)(cls)

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        master_address: str | None = None,
        backend: str = "nccl",
        seed: int = 1234,
        timeout: float | None = None,
    ) -> None:
        cuda = torch.cuda.is_available()
        if backend == "nccl" and not cuda:
            backend = "gloo"
        kwargs: dict[str, Any] = {}
        if timeout is not None:  # seconds a collective waits for the other trainers
            kwargs["timeout"] = datetime.timedelta(seconds=timeout)
        dist.init_process_group(
            backend=backend, init_method=master_address, world_size=world_size, rank=rank, **kwargs
        )
        # Ray sets CUDA_VISIBLE_DEVICES for the actor: its GPU is cuda:0.
        self.device = "cuda:0" if cuda else "cpu"
        # machina 0.x seeds the global RNGs for users' code; Python's too, so that a trainer's
        # random.* draws repeat from run to run as its numpy and torch draws do
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        torch.manual_seed(seed)
        set_device(self.device)
        if cuda:
            torch.cuda.set_device(0)
        set_grad_averaging(True)

    def get_state(self, name: str) -> dict:
        """A CPU copy of the state dict of attribute ``name`` (a module or optimiser)."""
        return state_dict_to_cpu(copy.deepcopy(getattr(self, name).state_dict()))

    def _stateful(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in sorted(vars(self).items())
            if isinstance(value, _STATEFUL_TYPES)
        }

    def state_dict(self) -> dict[str, Any]:
        """This rank's run state, for a checkpoint (``TrainManager.state_dict``): CPU copies
        of the state dicts of its modules, optimisers and learning-rate schedulers (its
        attributes, by name) and its process's global torch / numpy / python RNG states
        (a ``Traj`` made in ``train`` seeds its batch order from torch's). A subclass with
        other state (a replay ``Traj``) extends both methods."""
        return {
            "objects": {name: self.get_state(name) for name in self._stateful()},
            "rng": global_rng_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s result into this rank's objects and RNGs.

        Raises
        ------
        ValueError
            When the state names other attributes than this trainer has.
        """
        objects, saved = self._stateful(), state["objects"]
        if set(objects) != set(saved):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: state['objects']: expected the "
                f"trainer's modules, optimisers and schedulers {sorted(objects)}, given "
                f"{sorted(saved)}"
            )
        for name, obj in objects.items():
            obj.load_state_dict(saved[name])
        set_global_rng_state(state["rng"])


_STATEFUL_TYPES = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)


def _free_local_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


# Seconds the other trainers get to finish after one failed, before they count as stuck.
_GRACE_S = 10.0


class TrainManager:
    """Start ``num_trainer`` actors of ``trainer_cls`` (a ``BaseDistributedRayTrainer``) as one
    ``torch.distributed`` group and drive them.

    ``master_address`` (``"tcp://host:port"``) defaults to a free port on 127.0.0.1, which
    suits trainers on one machine. Ray is started locally if it is not running.
    """

    def __init__(
        self,
        trainer_cls: type,
        num_trainer: int = 1,
        master_address: str | None = None,
        **kwargs: Any,
    ) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            init_ray()
        if master_address is None:
            master_address = _free_local_address()
        self._failed: int | None = None
        remote_cls = trainer_cls.as_remote()
        self.trainers = [
            remote_cls.remote(
                **kwargs, rank=i, world_size=num_trainer, master_address=master_address
            )
            for i in range(num_trainer)
        ]

    def get_state(self, name: str) -> dict:
        """Rank 0's CPU state dict of its attribute ``name``."""
        ray = import_ray()
        self._check_open()
        return ray.get(self.trainers[0].get_state.remote(name))

    def state_dict(self) -> dict[str, Any]:
        """Every trainer's :meth:`BaseDistributedRayTrainer.state_dict`, by rank: a
        ``TrainManager`` is one of the objects ``machina.checkpoint.save_run`` saves (and
        ``load_run`` restores into a new one of as many trainers)."""
        ray = import_ray()
        self._check_open()
        return {"ranks": ray.get([trainer.state_dict.remote() for trainer in self.trainers])}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s result, each rank's into the trainer of that rank.

        Raises
        ------
        ValueError
            When the state holds another number of trainers, or a trainer refuses its state
            (the rank named; ranks before it may have loaded theirs).
        """
        ray = import_ray()
        self._check_open()
        ranks = state.get("ranks") if isinstance(state, Mapping) else None
        if not isinstance(ranks, list | tuple) or len(ranks) != len(self.trainers):
            given = f"{len(ranks)} trainers" if isinstance(ranks, list | tuple) else repr(state)
            raise ValueError(
                f"TrainManager.load_state_dict: state['ranks']: expected the states of "
                f"{len(self.trainers)} trainers, given {given}"
            )
        calls = [t.load_state_dict.remote(s) for t, s in zip(self.trainers, ranks)]
        for rank, call in enumerate(calls):
            try:
                ray.get(call)
            except ray.exceptions.RayTaskError as exc:
                raise ValueError(
                    f"TrainManager.load_state_dict: trainer rank {rank} refused its state"
                ) from exc

    def train(self, **kwargs: Any) -> Any:
        """Call ``train(**kwargs)`` on every trainer (arguments go through the object store
        once) and return rank 0's result (all ranks hold the same parameters).

        Raises
        ------
        RuntimeError
            When a trainer fails, naming its rank (its error as the cause; a trainer whose
            process died is named before one whose collective its death broke). If its process
            died, or the others have not finished 10 s later, every trainer is stopped: they
            would wait for it in a collective (gloo's default: 30 minutes), and every later
            call behind them; then make a new ``TrainManager``.
        """
        ray = import_ray()
        self._check_open()
        args = {k: ray.put(v) for k, v in kwargs.items()}
        world = len(self.trainers)
        pending = {t.train.remote(**args): rank for rank, t in enumerate(self.trainers)}
        results: dict[int, Any] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            rank = pending.pop(ready[0])
            try:
                results[rank] = ray.get(ready[0])
            except ray.exceptions.RayError as own:
                exc: Exception = own
                # the others fail too (the same bad argument) or wait for it in a collective
                done, stuck = ray.wait(list(pending), num_returns=len(pending), timeout=_GRACE_S)
                # a peer's death shows first as another rank's collective error: name the dead
                died = _dead_rank(ray, {ref: pending[ref] for ref in done})
                also = ""
                if died is not None:  # another rank than this one (`done` excludes it)
                    also = f" (rank {rank} failed too: {_last_line(exc)})"
                    rank, exc = died
                dead = isinstance(exc, ray.exceptions.RayActorError)  # its process is gone
                if not stuck and not dead:
                    raise RuntimeError(
                        f"TrainManager.train: trainer rank {rank} of {world} failed"
                    ) from exc
                self.close()
                self._failed = rank
                why = (
                    "its process died"
                    if dead
                    else (
                        f"the others were still waiting {_GRACE_S:.0f} s later (for it, in a "
                        "collective)"
                    )
                )
                raise RuntimeError(
                    f"TrainManager.train: trainer rank {rank} of {world} failed; {why}, so "
                    f"every trainer was stopped: make a new TrainManager{also}"
                ) from exc
        return results[0]

    def close(self) -> None:
        """Stop the trainer actors. Idempotent."""
        if self.trainers:
            ray = import_ray()
            for trainer in self.trainers:
                try:
                    ray.kill(trainer, no_restart=True)
                except Exception:  # already gone
                    pass
        self.trainers = []

    def _check_open(self) -> None:
        if not self.trainers:
            why = (
                f"its trainer rank {self._failed} failed"
                if self._failed is not None
                else "it was closed"
            )
            raise RuntimeError(f"TrainManager: {why}; make a new TrainManager")


def _last_line(exc: BaseException) -> str:
    """The last line of ``exc``'s message (a Ray task error's is its cause's type and text)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _dead_rank(ray: Any, finished: Mapping[Any, int]) -> tuple[int, Exception] | None:
    """The lowest rank among ``finished`` (call ref -> rank) whose process died, with its
    error; ``None`` when none did."""
    for ref, rank in sorted(finished.items(), key=lambda item: item[1]):
        try:
            ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            return rank, exc
        except ray.exceptions.RayError:
            pass
    return None


def make_redis(redis_host: str, redis_port: str | int) -> None:
    """Kept for machina 0.x's scripts: machina no longer uses Redis (its distributed
    sampler runs on Ray). Stores a client when the ``redis`` package is installed, else
    ``None``, for :func:`get_redis`."""
    try:
        import redis
    except ImportError:
        warnings.warn(
            "machina.utils.make_redis: machina no longer uses Redis (the distributed sampler "
            "runs on Ray); the call is ignored",
            stacklevel=2,
        )
        set_redis(None)
        return
    set_redis(redis.StrictRedis(redis_host, int(redis_port)))


def set_redis(r: Any) -> None:
    """Store a Redis client for :func:`get_redis`."""
    global _REDIS
    _REDIS = r


def get_redis() -> Any:
    """The client stored by :func:`make_redis` / :func:`set_redis` (``None`` before)."""
    return _REDIS
