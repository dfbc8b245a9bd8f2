"""Messages between the sampler and its workers: cloudpickled tuples over a Connection."""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
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


def run_recording_warnings(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s packed episodes, with the warnings it raised (category, text) under
    ``"warnings"``: a worker's or actor's warnings reach the driver, where its filters and
    ``pytest.warns`` see them (Ray does not forward an actor's output to a machina-started
    driver; a worker process only printed them). The process's own filters still apply
    (an environment's ``filterwarnings``, Python's defaults). A category of the user's is
    sent as its nearest built-in base, its name kept in the text: the driver may not be able
    to unpickle or construct it."""
    with warnings.catch_warnings(record=True) as caught:
        packed = run()
    packed["warnings"] = [_portable(w.category, str(w.message)) for w in caught]
    return packed


def _portable(category: type[Warning], text: str) -> tuple[type[Warning], str]:
    """``(category, text)`` with a built-in category: ``category`` itself, else its nearest
    built-in base, ``text`` then prefixed with the category's name."""
    for base in category.__mro__:
        if base.__module__ == "builtins" and issubclass(base, Warning):
            return base, text if base is category else f"{category.__name__}: {text}"
    return UserWarning, f"{category.__name__}: {text}"


def reemit_warnings(packed: dict[str, Any], where: str) -> None:
    """Raise again, on the driver, the warnings ``run_recording_warnings`` kept, each
    prefixed with ``where`` (the worker or actor)."""
    for category, text in packed.pop("warnings", ()):
        warnings.warn(f"{where}: {text}", category, stacklevel=4)
