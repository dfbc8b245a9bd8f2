"""Worker processes of ``EpiSampler(num_parallel > 1)``: start, talk, watch, stop.

Workers are fresh interpreters started with ``subprocess.Popen`` running
``machina.samplers._worker``, not ``multiprocessing`` children: ``fork`` is unsafe once torch
has started its threads, and ``spawn`` re-runs the user's ``__main__``. Each worker is
connected by a ``socket.socketpair``; a worker that dies closes its end, so the parent sees
end of file at once, and the parent also polls the process's exit code, so ``sample`` never
waits on a dead worker.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from machina.samplers._buffers import unpack_episodes
from machina.samplers._protocol import recv, reemit_warnings, send
from machina.samplers._setup import engine_rng_seed, slot_seeds
from machina.samplers._task import EngineSpec, Episode, Quotas, SampleTask

# How often the parent looks at the workers' exit codes while it waits for replies, in
# seconds: a worker's death is normally seen at once through end of file, this is a backstop.
_POLL_INTERVAL = 0.5
# A worker that has not imported torch and built its environments by then is reported
# (and stopped) rather than waited on forever.
_START_TIMEOUT = 300.0


class _RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the cause of the re-raised exception."""

    def __str__(self) -> str:
        return self.args[0]


def _exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "closed its connection"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class _Worker:
    """One worker process and the parent's end of its connection."""

    def __init__(self, index: int, slot_ids: list[int], seeds: list[int | None]) -> None:
        self.index = index
        self.slot_ids = slot_ids
        self.seeds = seeds
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.pending: Any = None  # task id sent and not yet answered
        self.sampled = False  # a task was sent: the slots' seeded first resets have happened
        self.restarts = 0

    def describe(self) -> str:
        pid = self.proc.pid if self.proc is not None else None
        return (
            f"sampler worker {self.index} (pid {pid}, env slots {self.slot_ids}, "
            f"seeds {self.seeds})"
        )

    def start(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        # The worker must import machina even when the user's script found it on sys.path
        # rather than installed; the rest of sys.path is sent with the init message.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env.setdefault("OMP_NUM_THREADS", "1")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "machina.samplers._worker", str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            # The parent keeps no copy of the child's end: end of file must mean the child died.
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.pending = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit; terminate, then kill, if it does not in time."""
        if self.conn is not None:
            try:
                send(self.conn, ("close",))
            except OSError:
                pass
            self.conn.close()
            self.conn = None
        if self.proc is not None:
            _reap(self.proc, timeout)
            self.proc = None


def _reap(proc: subprocess.Popen, timeout: float) -> None:
    for action in (None, proc.terminate, proc.kill):
        if action is not None:
            try:
                action()
            except OSError:
                pass
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _shutdown(workers: list[_Worker]) -> None:
    """Finaliser: stop every worker (also run at interpreter exit)."""
    for w in workers:
        w.stop(timeout=1.0)


class WorkerPool:
    """``num_workers`` processes, each running a ``BatchEngine`` over ``num_envs`` slots.

    Parameters
    ----------
    env_fn : callable
        Zero-argument environment factory; cloudpickled once and sent to every worker.
    num_workers, num_envs : int
        Worker ``w`` owns global slots ``w * num_envs ... (w + 1) * num_envs - 1``.
    seed : int or None
        Slot ``i`` first resets with ``seed + i``.
    timeout : float or None
        Seconds a worker may take to answer one ``sample``; past it the worker is killed (and
        replaced at the next call) and ``sample`` raises, naming it. None: no limit.

    Raises
    ------
    RuntimeError
        When a worker fails to start or to build its environments.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        num_workers: int,
        num_envs: int,
        seed: int | None,
        timeout: float | None = None,
    ) -> None:
        self._env_fn_bytes = cloudpickle.dumps(env_fn)
        self.timeout = timeout
        self.seed = seed
        self.num_envs = num_envs
        self._task_ids = itertools.count()
        self.workers = []
        for w in range(num_workers):
            slot_ids = list(range(w * num_envs, (w + 1) * num_envs))
            self.workers.append(_Worker(w, slot_ids, slot_seeds(seed, slot_ids)))
        self._finalizer = weakref.finalize(self, _shutdown, self.workers)
        try:
            spaces = self._start(self.workers)
        except BaseException:
            self.close()
            raise
        self.observation_space, self.action_space = spaces[0]

    def _start(self, workers: Sequence[_Worker]) -> list[tuple[Any, Any]]:
        """Start and initialise workers (all at once: interpreter start-up overlaps)."""
        for w in workers:
            w.start()
        for w in workers:
            spec = EngineSpec(
                index=w.index,
                slot_ids=w.slot_ids,
                seed=self.seed,
                rng_seed=engine_rng_seed(self.seed, w.index, w.restarts),
                # A replacement worker must not replay the seeded first resets.
                seeded=[w.sampled] * len(w.slot_ids),
            )
            send(w.conn, ("init", list(sys.path), self._env_fn_bytes, spec))
            w.pending = "init"
        replies = self._collect(workers, "init", timeout=_START_TIMEOUT)
        return [(msg[2], msg[3]) for msg in replies]

    def sample(self, task: SampleTask, quotas: Sequence[Quotas]) -> list[Episode]:
        """Run one task on every worker and return all episodes in worker order.

        Parameters
        ----------
        task : SampleTask
            Pickled once (policy weights included), sent to every worker.
        quotas : sequence of Quotas, one per worker
        """
        self._recover()
        task_id = next(self._task_ids)
        # Pickled once (policy weights included), whatever the number of workers.
        task_bytes = cloudpickle.dumps(task)
        for w, worker_quotas in zip(self.workers, quotas):
            try:
                send(w.conn, ("sample", task_id, task_bytes, worker_quotas))
            except OSError as exc:
                raise self._failure(w, None, exc) from exc
            w.pending = task_id
            w.sampled = True
        replies = self._collect(self.workers, task_id, timeout=self.timeout)
        for w, msg in zip(self.workers, replies):
            reemit_warnings(msg[2], w.describe())
        return [epi for msg in replies for epi in unpack_episodes(msg[2])]

    def state_dict(self) -> list[dict[str, Any]]:
        """Every worker's ``BatchEngine.state_dict``, in worker order (workers left busy or
        dead by an interrupted call are drained or replaced first)."""
        self._recover()
        task_id = next(self._task_ids)
        for w in self.workers:
            send(w.conn, ("get_state", task_id))
            w.pending = task_id
        replies = self._collect(self.workers, task_id, timeout=self.timeout or _START_TIMEOUT)
        states = [msg[2] for msg in replies]
        for state, w in zip(states, self.workers):
            state["restarts"] = w.restarts
        return states

    def load_state_dict(self, states: Sequence[dict[str, Any]]) -> None:
        """Load one engine state per worker (``state_dict``'s list)."""
        self._recover()
        task_id = next(self._task_ids)
        for w, state in zip(self.workers, states):
            send(w.conn, ("set_state", task_id, state))
            w.pending = task_id
        self._collect(self.workers, task_id, timeout=self.timeout or _START_TIMEOUT)
        for w, state in zip(self.workers, states):
            w.restarts = int(state.get("restarts", w.restarts))
            # A replacement must not replay seeded first resets that already happened.
            w.sampled = not any(state["needs_seed"])

    def _recover(self) -> None:
        """Make every worker idle: drain answers of interrupted tasks, replace dead workers."""
        dead = [w for w in self.workers if w.conn is None or not w.alive()]
        for w in dead:
            w.stop(timeout=1.0)
            w.restarts += 1
        busy = [w for w in self.workers if w not in dead and w.pending is not None]
        for w in busy:
            try:
                send(w.conn, ("abort", w.pending))
            except OSError:
                pass
        for w in busy:
            try:
                self._collect([w], w.pending, stale_ok=True, timeout=self.timeout)
            except RuntimeError:
                w.stop(timeout=1.0)
                w.restarts += 1
                dead.append(w)
        if dead:
            self._start(dead)

    def _collect(
        self,
        workers: Sequence[_Worker],
        task_id: Any,
        stale_ok: bool = False,
        timeout: float | None = None,
    ) -> list:
        """Wait for each worker's answer to ``task_id``; raise at the first failure.

        On failure the other workers are told to abort; their late answers are drained by
        the next call (``_recover``), so the pool stays usable.
        """
        replies: dict[int, tuple] = {}
        waiting = {w.conn: w for w in workers}
        deadline = None if timeout is None else time.monotonic() + timeout
        while waiting:
            if deadline is not None and time.monotonic() > deadline:
                raise self._timed_out(list(waiting.values()), timeout)
            ready = wait(list(waiting), timeout=_POLL_INTERVAL)
            for conn in ready:
                w = waiting[conn]
                try:
                    msg = recv(conn)
                except (EOFError, OSError) as exc:
                    raise self._failure(w, None, exc) from exc
                if msg[1] != task_id:
                    continue  # a late answer to a task that was given up
                w.pending = None
                del waiting[conn]
                if msg[0] == "error" and not stale_ok:
                    raise self._failure(w, msg)
                replies[w.index] = msg
            for conn, w in list(waiting.items()):
                # Backstop for a death without end of file (the socket inherited elsewhere).
                if not w.alive() and not conn.poll(0):
                    raise self._failure(w, None)
        return [replies[w.index] for w in workers]

    def _timed_out(self, late: list[_Worker], timeout: float) -> RuntimeError:
        """Kill the workers that did not answer in time (stopped, or stuck in C code: they
        cannot be asked); the others are told to stop their task. Replaced at the next call."""
        described = "; ".join(w.describe() for w in late)
        for w in late:
            w.pending = None
            if w.proc is not None:
                try:
                    w.proc.kill()  # SIGKILL: works on a stopped process too
                except OSError:
                    pass
            w.stop(timeout=1.0)
        for other in self.workers:
            if other not in late and other.pending is not None and other.conn is not None:
                try:
                    send(other.conn, ("abort", other.pending))
                except OSError:
                    pass
        return RuntimeError(
            f"{described} did not answer within {timeout:g} s (timeout): killed; a new worker "
            "replaces it at the next sample call"
        )

    def _failure(
        self, w: _Worker, msg: tuple | None, exc: BaseException | None = None
    ) -> RuntimeError:
        """The RuntimeError for worker ``w``; the other workers are told to stop their task.

        ``msg`` is the worker's ("error", ...) reply, or None when the worker died.
        """
        for other in self.workers:
            if other is not w and other.pending is not None and other.conn is not None:
                try:
                    send(other.conn, ("abort", other.pending))
                except OSError:
                    pass
        if msg is None:
            returncode = None
            if w.proc is not None:
                try:
                    returncode = w.proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    pass
            error = RuntimeError(
                f"{w.describe()} {_exit_description(returncode)}; a new worker replaces it at "
                "the next sample call"
            )
            w.stop(timeout=1.0)
            if exc is not None:
                error.__cause__ = exc
            return error
        _, _, message, cause_bytes, tb = msg
        cause = None
        if cause_bytes is not None:
            try:
                cause = cloudpickle.loads(cause_bytes)
            except Exception:
                cause = None
        if cause is None:
            cause = _RemoteTraceback(tb)
        else:
            cause.__cause__ = _RemoteTraceback(f'\n"""\n{tb}"""')
        error = RuntimeError(f"{w.describe()}: {message}")
        error.__cause__ = cause
        return error

    def close(self) -> None:
        """Stop every worker and reap its process."""
        self._finalizer()
