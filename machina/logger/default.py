"""The default ``Logger`` and module-level functions that forward to it.

They keep machina 0.x's style working unchanged::

    from machina import logger
    logger.add_tabular_output(score_file)
    logger.log("start")
    logger.record_results(log_dir, result_dict, score_file, total_epi, step, total_step, rews)

The default instance is the only state kept at module level. Code that wants its own
outputs (tests, several runs in one process) creates a ``Logger`` instead, or installs one
with ``set_logger``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from machina.logger.logger import Logger
from machina.logger.output import Output
from machina.utils import timing
from machina.utils.aliases import keyword_aliases

__all__ = [
    "get_logger",
    "set_logger",
    "log",
    "add_text_output",
    "remove_text_output",
    "record_tabular",
    "record_tabular_misc_stat",
    "dump_tabular",
    "add_tabular_output",
    "remove_tabular_output",
    "add_tensorboard_output",
    "remove_tensorboard_output",
    "record_results",
    "close",
    "add_output",
    "remove_output",
    "set_log_tabular_only",
    "get_log_tabular_only",
    "write_to_tensorboard",
]

_default_logger = Logger()


def get_logger() -> Logger:
    """Return the default ``Logger`` the module-level functions use."""
    return _default_logger


def set_logger(logger: Logger) -> Logger:
    """Make ``logger`` the default; return the previous default (not closed).

    Parameters
    ----------
    logger : Logger
        The new default.

    Returns
    -------
    Logger
        The previous default, e.g. to restore it later.
    """
    global _default_logger
    if not isinstance(logger, Logger):
        raise TypeError(f"set_logger: logger must be a Logger, got {type(logger).__name__}")
    previous, _default_logger = _default_logger, logger
    return previous


_log_tabular_only = False


@keyword_aliases(s="msg")
def log(
    msg: Any, with_prefix: bool = True, with_timestamp: bool = True, color: str | None = None
) -> None:
    """Print a timestamped message with the default logger; see ``Logger.log``.

    Nothing is printed or written while ``set_log_tabular_only(True)`` is in effect.
    """
    if _log_tabular_only:
        return
    _default_logger.log(msg, with_prefix=with_prefix, with_timestamp=with_timestamp, color=color)


def set_log_tabular_only(log_tabular_only: bool) -> None:
    """Silence ``log``'s messages (True) so that only the dumped tables are printed."""
    global _log_tabular_only
    _log_tabular_only = bool(log_tabular_only)


def get_log_tabular_only() -> bool:
    """Whether ``log``'s messages are silenced."""
    return _log_tabular_only


# machina.utils.measure writes through the default logger from now on (utils, the bottom
# floor, cannot import the logger; the logger installs itself instead).
timing.set_sink(log)


def push_prefix(prefix: str) -> None:
    """Start the following messages with ``prefix``; see ``Logger.push_prefix``."""
    _default_logger.push_prefix(prefix)


def pop_prefix() -> None:
    """Remove the prefix pushed last; see ``Logger.pop_prefix``."""
    _default_logger.pop_prefix()


@keyword_aliases(key="prefix")
def prefix(prefix: str) -> contextlib.AbstractContextManager[None]:
    """A block whose messages start with ``prefix``; see ``Logger.prefix``."""
    return _default_logger.prefix(prefix)


@keyword_aliases(key="prefix")
def push_tabular_prefix(prefix: str) -> None:
    """Start the following tabular keys with ``prefix``; see ``Logger.push_tabular_prefix``."""
    _default_logger.push_tabular_prefix(prefix)


def pop_tabular_prefix() -> None:
    """Remove the tabular prefix pushed last; see ``Logger.pop_tabular_prefix``."""
    _default_logger.pop_tabular_prefix()


@keyword_aliases(key="prefix")
def tabular_prefix(prefix: str) -> contextlib.AbstractContextManager[None]:
    """A block whose tabular keys start with ``prefix``; see ``Logger.tabular_prefix``."""
    return _default_logger.tabular_prefix(prefix)


def mkdir_p(path: str | os.PathLike) -> None:
    """Create ``path`` and its parents; nothing if it exists."""
    os.makedirs(path, exist_ok=True)


@keyword_aliases(file_name="path")
def add_text_output(path: str | os.PathLike) -> None:
    """Copy messages to a text file; see ``Logger.add_text_output``."""
    _default_logger.add_text_output(path)


@keyword_aliases(file_name="path")
def remove_text_output(path: str | os.PathLike) -> None:
    """Stop copying messages to a text file; see ``Logger.remove_text_output``."""
    _default_logger.remove_text_output(path)


@keyword_aliases(val="value")
def record_tabular(key: str, value: Any) -> None:
    """Set a value in the current row; see ``Logger.record_tabular``."""
    _default_logger.record_tabular(key, value)


def record_tabular_misc_stat(key: str, values: Any) -> None:
    """Record Average/Std/Median/Min/Max; see ``Logger.record_tabular_misc_stat``."""
    _default_logger.record_tabular_misc_stat(key, values)


def dump_tabular(
    step: int | None = None,
    no_print: bool = False,
    *,
    write_header: bool | None = None,
    with_prefix: bool = True,
    with_timestamp: bool = True,
    color: str | None = None,
) -> dict[str, Any]:
    """Write the current row to every output; see ``Logger.dump_tabular``.

    ``write_header``, ``with_prefix``, ``with_timestamp`` and ``color`` are machina 0.x's
    options of its printed table; they are accepted and change nothing: a CSV file gets its
    header once, and the table is printed as ``Logger.dump_tabular`` prints it.
    """
    del write_header, with_prefix, with_timestamp, color  # see docstring
    return _default_logger.dump_tabular(step=step, no_print=no_print)


def write_to_tensorboard(tabular_dict: Mapping[str, Any]) -> None:
    """Write a row to the default logger's TensorBoard outputs only; see
    ``Logger.write_to_tensorboard``."""
    _default_logger.write_to_tensorboard(tabular_dict)


@keyword_aliases(file_name="csv_path")
def add_tabular_output(csv_path: str | os.PathLike, append: bool = False) -> None:
    """Write rows to a CSV file; see ``Logger.add_tabular_output``."""
    _default_logger.add_tabular_output(csv_path, append=append)


@keyword_aliases(file_name="csv_path")
def remove_tabular_output(csv_path: str | os.PathLike) -> None:
    """Stop writing rows to a CSV file; see ``Logger.remove_tabular_output``."""
    _default_logger.remove_tabular_output(csv_path)


@keyword_aliases(logdir="log_dir")
def add_tensorboard_output(log_dir: str | os.PathLike) -> None:
    """Write rows as TensorBoard scalars; see ``Logger.add_tensorboard_output``."""
    _default_logger.add_tensorboard_output(log_dir)


def remove_tensorboard_output(log_dir: str | os.PathLike) -> None:
    """Stop writing to a TensorBoard directory; see ``Logger.remove_tensorboard_output``."""
    _default_logger.remove_tensorboard_output(log_dir)


def record_results(
    log_dir: str | os.PathLike,
    result_dict: Mapping[str, Any],
    score_file: str | os.PathLike,
    total_epi: int,
    step: int,
    total_step: int,
    rewards: Sequence[float] | np.ndarray | None = None,
    plot_title: str | None = None,
    async_plot: bool = False,
) -> str | None:
    """Record, dump and plot one training iteration; see ``Logger.record_results``."""
    return _default_logger.record_results(
        log_dir,
        result_dict,
        score_file,
        total_epi,
        step,
        total_step,
        rewards=rewards,
        plot_title=plot_title,
        async_plot=async_plot,
    )


def record_results_bc(
    log_dir: str | os.PathLike,
    result_dict: Mapping[str, Any],
    score_file: str | os.PathLike,
    epoch: int,
    rewards: Sequence[float] | np.ndarray | None = None,
    plot_title: str | None = None,
    async_plot: bool = True,
) -> str | None:
    """Record, dump and plot one epoch of behaviour cloning; see
    ``Logger.record_results_bc``."""
    return _default_logger.record_results_bc(
        log_dir,
        result_dict,
        score_file,
        epoch,
        rewards=rewards,
        plot_title=plot_title,
        async_plot=async_plot,
    )


def close() -> None:
    """Close every output of the default logger; see ``Logger.close``."""
    _default_logger.close()


def add_output(output: Output) -> Output:
    """Send rows to any output (W&B, MLflow...); see ``Logger.add_output``."""
    return _default_logger.add_output(output)


def remove_output(output: Output) -> None:
    """Stop sending rows to an output and close it; see ``Logger.remove_output``."""
    _default_logger.remove_output(output)
