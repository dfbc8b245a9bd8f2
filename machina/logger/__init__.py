"""Logging for training runs: messages, CSV and TensorBoard rows, learning curves, progress bars.

Use a ``Logger`` of your own, or the module-level functions, which forward to a default
instance exactly as machina 0.x's ``logger`` module was used::

    from machina import logger

    score_file = os.path.join(log_dir, "progress.csv")
    logger.add_tabular_output(score_file)
    logger.add_tensorboard_output(log_dir)
    ...
    logger.record_results(log_dir, result_dict, score_file, total_epi, step, total_step,
                          rewards, plot_title="Pendulum-v1")

Modules: ``logger`` (the ``Logger``), ``csv_output``, ``tensorboard_output``, ``plot``,
``progress`` and ``default`` (the default instance and the functions bound to it);
``output`` (the interface of ``Logger.add_output``), ``wandb_output`` and ``mlflow_output``
(Weights & Biases and MLflow, optional extras imported when used).
"""

from machina.logger.csv_output import CsvOutput
from machina.logger.default import (
    add_output,
    add_tabular_output,
    add_tensorboard_output,
    add_text_output,
    close,
    dump_tabular,
    get_logger,
    log,
    mkdir_p,
    pop_prefix,
    pop_tabular_prefix,
    prefix,
    push_prefix,
    push_tabular_prefix,
    record_results,
    record_results_bc,
    record_tabular,
    record_tabular_misc_stat,
    remove_output,
    remove_tabular_output,
    remove_tensorboard_output,
    remove_text_output,
    set_logger,
    tabular_prefix,
)
from machina.logger.logger import Logger, colorize
from machina.logger.mlflow_output import MLflowOutput
from machina.logger.output import Output, namespaced
from machina.logger.plot import plot_learning_curve, read_csv_columns
from machina.logger.progress import progress
from machina.logger.run import Run, save_models, start_run
from machina.logger.tensorboard_output import TensorBoardOutput
from machina.logger.wandb_output import WandbOutput

__all__ = [
    "Logger",
    "CsvOutput",
    "TensorBoardOutput",
    "plot_learning_curve",
    "read_csv_columns",
    "progress",
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
    "record_results_bc",
    "push_prefix",
    "pop_prefix",
    "prefix",
    "push_tabular_prefix",
    "pop_tabular_prefix",
    "tabular_prefix",
    "colorize",
    "mkdir_p",
    "close",
    "save_models",
    "start_run",
    "Run",
    "Output",
    "namespaced",
    "WandbOutput",
    "MLflowOutput",
    "add_output",
    "remove_output",
]
