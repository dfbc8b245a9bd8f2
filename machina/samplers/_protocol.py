"""Messages between the sampler and its workers: cloudpickled tuples over a Connection."""

from __future__ import annotations

import traceback
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle


def send(conn: Connection, msg: tuple) -> None:
    """Send one message (a tuple whose first item names it)."""
    conn.send_bytes(cloudpickle.dumps(msg))


def recv(conn: Connection) -> tuple:
    """Receive one message; EOFError when the other end is gone."""
    return cloudpickle.loads(conn.recv_bytes())


def error_message(task_id: Any, exc: BaseException) -> tuple:
    """An ("error", ...) reply carrying the original exception when it pickles."""
    cause = exc.__cause__ if isinstance(exc, RuntimeError) and exc.__cause__ else exc
    try:
        cause_bytes = cloudpickle.dumps(cause)
    except Exception:
        cause_bytes = None
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # The engine's RuntimeErrors already name the environment and the original exception.
    message = str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}"
    return ("error", task_id, message, cause_bytes, tb)
