"""Timing a block of a training script."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

__all__ = ["measure"]


@contextlib.contextmanager
def measure(name: str, log_enable: bool = True) -> Iterator[None]:
    """Log ``"<name>: <seconds>sec"`` through ``machina.logger`` when the block ends.

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
        # machina.logger sits above this bottom-layer package; it is only needed at the moment
        # a message is written, so it is imported here rather than at module level.
        from machina import logger

        logger.log(f"{name}: {time.perf_counter() - start:.4f}sec")
