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
(Weights & Biases and MLflow, optional extras imported when used). The rest of machina 0.x's
logger functions: ``table`` (``tabulate``, ``csv2table``), ``snapshot``
(``save_itr_params``), ``params`` (``log_parameters_lite``, ``log_variant``) and
``console`` (``Message``, ``tweak``, ``query_yes_no``).
"""

from machina.logger.console import (
    MESSAGE_DEPTH,
    Message,
    SimpleMessage,
    collect_args,
    color2num,
    prefix_log,
    query_yes_no,
    tee_log,
    tweak,
    tweakfun,
    tweakval,
    type_hint,
)
from machina.logger.csv_output import CsvOutput
from machina.logger.default import (
    add_output,
    add_tabular_output,
    add_tensorboard_output,
    add_text_output,
    close,
    dump_tabular,
    get_log_tabular_only,
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
    set_log_tabular_only,
    set_logger,
    tabular_prefix,
    write_to_tensorboard,
)
from machina.logger.logger import Logger, colorize
from machina.logger.mlflow_output import MLflowOutput
from machina.logger.output import Output, namespaced
from machina.logger.params import (
    MyEncoder,
    log_parameters,
    log_parameters_lite,
    log_variant,
    stub_to_json,
)
from machina.logger.plot import (
    async_plot_scores,
    plot_learning_curve,
    plot_scores,
    read_csv_columns,
)
from machina.logger.progress import progress
from machina.logger.run import Run, save_models, start_run
from machina.logger.snapshot import (
    get_snapshot_dir,
    get_snapshot_gap,
    get_snapshot_mode,
    save_itr_params,
    set_snapshot_dir,
    set_snapshot_gap,
    set_snapshot_mode,
)
from machina.logger.table import (
    DataRow,
    Line,
    TableFormat,
    TerminalTablePrinter,
    csv2table,
    simple_separated_format,
    table_printer,
    tabulate,
    tabulate_formats,
)
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
    # machina 0.x's other logger functions (from rllab)
    "set_log_tabular_only",
    "get_log_tabular_only",
    "write_to_tensorboard",
    "plot_scores",
    "async_plot_scores",
    "tabulate",
    "tabulate_formats",
    "simple_separated_format",
    "Line",
    "DataRow",
    "TableFormat",
    "TerminalTablePrinter",
    "table_printer",
    "csv2table",
    "set_snapshot_dir",
    "get_snapshot_dir",
    "set_snapshot_mode",
    "get_snapshot_mode",
    "set_snapshot_gap",
    "get_snapshot_gap",
    "save_itr_params",
    "log_parameters",
    "log_parameters_lite",
    "log_variant",
    "stub_to_json",
    "MyEncoder",
    "color2num",
    "SimpleMessage",
    "Message",
    "MESSAGE_DEPTH",
    "prefix_log",
    "tee_log",
    "collect_args",
    "type_hint",
    "tweak",
    "tweakval",
    "tweakfun",
    "query_yes_no",
]
