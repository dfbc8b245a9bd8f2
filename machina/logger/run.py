"""A run folder: progress.csv, TensorBoard events, log.txt and models/."""

from __future__ import annotations

import os

import torch

from machina.logger.default import add_tabular_output, add_tensorboard_output, set_logger
from machina.logger.logger import Logger


def start_run(log_dir: str | os.PathLike, stdout: bool = False) -> str:
    """Make ``log_dir`` a run folder and point the default logger at it.

    Creates ``log_dir/models``, sends messages and per-iteration tables to ``log_dir/log.txt``
    (and to stdout when ``stdout``; scripts with a progress bar keep the terminal for it), rows
    to ``log_dir/progress.csv`` and scalars to TensorBoard event files in ``log_dir``.

    Returns
    -------
    str
        Path of ``progress.csv``, the ``score_file`` that ``record_results`` takes.
    """
    log_dir = os.fspath(log_dir)
    os.makedirs(os.path.join(log_dir, "models"), exist_ok=True)
    score_file = os.path.join(log_dir, "progress.csv")
    set_logger(Logger(text_file=os.path.join(log_dir, "log.txt"), stdout=stdout))
    add_tabular_output(score_file)
    add_tensorboard_output(log_dir)
    return score_file


def save_models(log_dir: str | os.PathLike, **modules: torch.nn.Module | torch.Tensor) -> None:
    """Save each module's ``state_dict`` (or a tensor) as ``log_dir/models/<name>_last.pt``.

    The files load with ``torch.load``'s default ``weights_only=True``.
    """
    for name, module in modules.items():
        state = module.detach() if isinstance(module, torch.Tensor) else module.state_dict()
        torch.save(state, os.path.join(os.fspath(log_dir), "models", f"{name}_last.pt"))
