"""Entry point of a sampler worker process: ``python -m machina.samplers._worker FD``.

The worker talks to its parent over one end of a ``socket.socketpair`` (file descriptor FD)
wrapped in a ``multiprocessing.connection.Connection``. Messages are cloudpickled tuples;
payloads that run user code on unpickling (env factory, policy) are pickled separately so a
failure to load them is reported with the task it belongs to.

Protocol (parent -> worker / worker -> parent)::

    ("init", sys_path, env_fn_bytes, spec)    -> ("ready", "init", observation_space, action_space)
    ("sample", task_id, task_bytes, quotas)   -> ("epis", task_id, packed) | ("aborted", task_id)

``spec`` is an ``EngineSpec``, ``task_bytes`` a pickled ``SampleTask`` and ``quotas`` a
``Quotas`` (``machina.samplers._task``).
    ("get_state", id)                         -> ("state", id, engine.state_dict())
    ("set_state", id, state)                  -> ("ok", id)
    ("abort", task_id)                           (stops the running task, if it is that one)
    ("close",) or end of file                    (exit)
    any failure                               -> ("error", task_id, message, cause, traceback)

``packed`` is ``BatchEngine.run_task``'s result: the episodes as a few flat arrays and their
boundaries, cheap to pickle whatever the number of episodes.

The worker exits when its connection reaches end of file, which is how it notices that the
parent died: it never outlives the sampler that started it.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from multiprocessing.connection import Connection

import cloudpickle

from machina.samplers._protocol import error_message, recv, run_recording_warnings, send


def serve(conn: Connection) -> None:
    """Answer the parent's messages until "close" or end of file."""
    from machina.samplers.engine import BatchEngine, SamplingAborted

    engine = None
    try:
        while True:
            msg = recv(conn)
            cmd = msg[0]
            if cmd == "close":
                return
            if cmd == "abort":
                continue  # the task it meant has already been answered
            if cmd == "init":
                try:
                    _, parent_path, env_fn_bytes, spec = msg
                    # Same import path as the parent, so objects pickled by reference (classes
                    # of the user's modules, test modules) load here too.
                    sys.path[:] = parent_path + [p for p in sys.path if p not in parent_path]
                    engine = BatchEngine.from_spec(cloudpickle.loads(env_fn_bytes), spec)
                    send(conn, ("ready", "init", engine.observation_space, engine.action_space))
                except Exception as exc:
                    send(conn, error_message("init", exc))
                continue
            if cmd in ("get_state", "set_state"):
                try:
                    if engine is None:
                        raise RuntimeError(f"{cmd} before a successful init")
                    if cmd == "get_state":
                        reply = ("state", msg[1], engine.state_dict())
                    else:
                        engine.load_state_dict(msg[2])
                        reply = ("ok", msg[1])
                except Exception as exc:
                    reply = error_message(msg[1], exc)
                send(conn, reply)
                continue
            if cmd == "sample":
                task_id = msg[1]
                try:
                    if engine is None:
                        raise RuntimeError("sample before a successful init")
                    task = cloudpickle.loads(msg[2])
                    run = functools.partial(engine.run_task, task, msg[3], should_stop=conn.poll)
                    packed = run_recording_warnings(run)
                    reply = ("epis", task_id, packed)
                except SamplingAborted:
                    reply = ("aborted", task_id)
                except Exception as exc:
                    reply = error_message(task_id, exc)
                send(conn, reply)
    finally:
        if engine is not None:
            engine.close()


def main(argv: list[str]) -> None:
    import torch

    # One thread per worker: the workers are the parallelism, and many threads per process
    # on a few cores only contend.
    torch.set_num_threads(1)
    sock = socket.socket(fileno=int(argv[1]))
    conn = Connection(sock.detach())
    try:
        serve(conn)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # the parent is gone or closing: nothing to report to
    finally:
        conn.close()


if __name__ == "__main__":
    main(sys.argv)
    # Skip interpreter teardown (atexit handlers of user modules, thread joins): the worker
    # has nothing left to flush.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
