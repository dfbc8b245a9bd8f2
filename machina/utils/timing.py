"""Timing a block of a training script."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

__all__ = ["measure", "set_sink"]

# Where ``measure`` writes. ``machina.logger`` sits above this bottom floor, so it is not
# imported here; instead it installs its ``log`` when it is imported (dependency inversion).
# Until then (a script that never imports the logger) messages are printed.
_sink: Callable[[str], None] = print


def set_sink(sink: Callable[[str], None] | None) -> Callable[[str], None]:
    """Send :func:`measure`'s messages to ``sink``; return the previous sink.

    ``machina.logger`` installs its ``log`` (timestamped, copied to the text outputs) when it
    is imported; before that, and after ``set_sink(None)``, messages are printed.

    Parameters
    ----------
    sink : callable taking one str, or None
        Receives each message ``"<name>: <seconds>sec"``; None restores ``print``.
    """
    global _sink
    previous, _sink = _sink, print if sink is None else sink
    return previous


@contextlib.contextmanager
def measure(name: str, log_enable: bool = True) -> Iterator[None]:
    """Log ``"<name>: <seconds>sec"`` when the block ends.

    The message goes through ``machina.logger.log`` once ``machina.logger`` is imported
    (before that, to ``print``; see :func:`set_sink`).

    Parameters
    ----------
    name : str
        What the block does (``"sample"``, ``"train"``).
    log_enable : bool
        False times nothing and logs nothing (e.g. on ranks other than 0).
    """
    start = time.perf_counter()
    yield
    if log_enable:
        _sink(f"{name}: {time.perf_counter() - start:.4f}sec")
