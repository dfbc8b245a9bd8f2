"""``Logger``: timestamped messages and one row of scalars per iteration, sent to every output.

A ``Logger`` owns its outputs (text files, CSV files, TensorBoard directories) and the row
being built; nothing is global. ``machina.logger`` also keeps one default instance so that
machina 0.x's ``from machina import logger; logger.log(...)`` style keeps working.
"""

from __future__ import annotations

import contextlib
import datetime
import numbers
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import numpy as np

from machina.logger.csv_output import CsvOutput
from machina.logger.output import Output
from machina.logger.plot import plot_learning_curve
from machina.logger.tensorboard_output import TensorBoardOutput
from machina.utils.tensors import to_numpy

__all__ = ["Logger"]

# Names of the columns ``record_results`` writes besides the result dict's own.
REWARD_PREFIX = "Reward"
EPISODES_PER_ITER = "EpisodePerIter"
TOTAL_EPISODES = "TotalEpisode"
STEPS_PER_ITER = "StepPerIter"
TOTAL_STEPS = "TotalStep"
LEARNING_CURVE_PNG = "learning_curve.png"
CURRENT_EPOCH = "CurrentEpoch"

# ANSI colour codes of ``colorize``.
_COLORS = dict(
    gray=30, red=31, green=32, yellow=33, blue=34, magenta=35, cyan=36, white=37, crimson=38
)
#: ANSI colour code of each name ``colorize`` accepts (machina 0.x's ``color2num``).
color2num = _COLORS


def colorize(string: str, color: str, bold: bool = False, highlight: bool = False) -> str:
    """``string`` wrapped in the ANSI codes of ``color`` (one of ``gray``, ``red``,
    ``green``, ``yellow``, ``blue``, ``magenta``, ``cyan``, ``white``, ``crimson``)."""
    if color not in _COLORS:
        raise ValueError(f"color: expected one of {sorted(_COLORS)}, got {color!r}")
    codes = [str(_COLORS[color] + (10 if highlight else 0))]
    if bold:
        codes.append("1")
    return f"\x1b[{';'.join(codes)}m{string}\x1b[0m"


def _open_text(path: str) -> TextIO:
    """Open a text output for appending, creating its directories."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return open(path, "a", encoding="utf-8")


def _add_path_output(
    outputs: dict[str, Any], path: str | os.PathLike, make: Callable[[str], Any]
) -> None:
    """Add ``make(absolute path)`` to ``outputs`` under that path, unless it is there."""
    key = os.path.abspath(os.fspath(path))
    if key not in outputs:
        outputs[key] = make(key)


def _remove_path_output(
    outputs: dict[str, Any], path: str | os.PathLike, method: str, kind: str
) -> None:
    """Close and remove the output of ``path``; a path never added is a ValueError naming
    ``method`` and the outputs there are."""
    key = os.path.abspath(os.fspath(path))
    if key not in outputs:
        raise ValueError(
            f"{method}: {os.fspath(path)!r} is not a {kind} output of this logger; its "
            f"{kind} outputs are {list(outputs)}"
        )
    outputs.pop(key).close()


class Logger:
    """Print timestamped messages and write rows of scalars to CSV and TensorBoard.

    Use ``record_tabular`` to fill the current row during an iteration and
    ``dump_tabular`` to write it to every output, print it as a table and start a new row.

    Parameters
    ----------
    text_file : str or os.PathLike, optional
        A text file that receives a copy of every message (appended to).
    stdout : bool, default True
        Whether messages and tables are printed to standard output.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with Logger(stdout=False) as lg:
    ...     lg.add_tabular_output(os.path.join(d, "progress.csv"))
    ...     lg.record_tabular("Loss", 0.5)
    ...     row = lg.dump_tabular(step=0)
    >>> row
    {'Loss': 0.5}
    """

    def __init__(self, text_file: str | os.PathLike | None = None, stdout: bool = True) -> None:
        self.stdout = stdout
        self._text_files: dict[str, TextIO] = {}
        self._csv_outputs: dict[str, CsvOutput] = {}
        self._tensorboard_outputs: dict[str, TensorBoardOutput] = {}
        self._outputs: list[Output] = []  # add_output's (W&B, MLflow, ...)
        self._tabular: dict[str, Any] = {}
        self._prefixes: list[str] = []
        self._tabular_prefixes: list[str] = []
        self._num_dumps = 0
        if text_file is not None:
            self.add_text_output(text_file)

    # ------------------------------------------------------------------ messages
    def log(
        self,
        msg: Any,
        with_prefix: bool = True,
        with_timestamp: bool = True,
        color: str | None = None,
    ) -> None:
        """Print a message, prefixed with the local time, and copy it to the text files.

        Parameters
        ----------
        msg : object
            The message; converted with ``str``.
        with_prefix : bool, default True
            Start it with the prefixes pushed by :meth:`push_prefix` (none by default).
        with_timestamp : bool, default True
            Prefix ``YYYY-mm-dd HH:MM:SS.ffffff TZ | `` as machina 0.x did.
        color : str, optional
            Print in this colour (see :func:`colorize`).
        """
        out = str(msg)
        if with_prefix:
            out = "".join(self._prefixes) + out
        if with_timestamp:
            now = datetime.datetime.now().astimezone()
            out = f"{now.strftime('%Y-%m-%d %H:%M:%S.%f %Z')} | {out}"
        if color is not None:
            out = colorize(out, color)
        self._emit(out)

    def push_prefix(self, prefix: str) -> None:
        """Start every following message with ``prefix`` (after the earlier prefixes)."""
        self._prefixes.append(str(prefix))

    def pop_prefix(self) -> None:
        """Remove the prefix pushed last."""
        if not self._prefixes:
            raise IndexError("pop_prefix: no prefix was pushed")
        self._prefixes.pop()

    @contextlib.contextmanager
    def prefix(self, prefix: str) -> Iterator[None]:
        """Messages logged inside the block start with ``prefix``."""
        self.push_prefix(prefix)
        try:
            yield
        finally:
            self.pop_prefix()

    def push_tabular_prefix(self, prefix: str) -> None:
        """Start every following ``record_tabular`` key with ``prefix``."""
        self._tabular_prefixes.append(str(prefix))

    def pop_tabular_prefix(self) -> None:
        """Remove the tabular prefix pushed last."""
        if not self._tabular_prefixes:
            raise IndexError("pop_tabular_prefix: no tabular prefix was pushed")
        self._tabular_prefixes.pop()

    @contextlib.contextmanager
    def tabular_prefix(self, prefix: str) -> Iterator[None]:
        """Keys recorded inside the block start with ``prefix``."""
        self.push_tabular_prefix(prefix)
        try:
            yield
        finally:
            self.pop_tabular_prefix()

    def _emit(self, text: str) -> None:
        if self.stdout:
            # Looked up at call time so redirections (pytest, notebooks) are honoured.
            print(text, file=sys.stdout, flush=True)
        for f in self._text_files.values():
            f.write(text + "\n")
            f.flush()

    def add_text_output(self, path: str | os.PathLike) -> None:
        """Copy every message and table to a text file (appended to; directories created)."""
        _add_path_output(self._text_files, path, _open_text)

    def remove_text_output(self, path: str | os.PathLike) -> None:
        """Stop copying messages to ``path`` and close it."""
        _remove_path_output(self._text_files, path, "remove_text_output", "text")

    # ------------------------------------------------------------------ outputs
    @property
    def tabular_outputs(self) -> list[str]:
        """Absolute paths of the CSV files rows are written to."""
        return list(self._csv_outputs)

    @property
    def tensorboard_outputs(self) -> list[str]:
        """Absolute paths of the TensorBoard directories rows are written to."""
        return list(self._tensorboard_outputs)

    def add_tabular_output(self, csv_path: str | os.PathLike, append: bool = False) -> None:
        """Write every dumped row to a CSV file.

        Parameters
        ----------
        csv_path : str or os.PathLike
            The CSV file; parent directories are created. Adding a file twice does nothing.
        append : bool, default False
            False truncates an existing file (as machina 0.x did); True continues it,
            keeping its header, e.g. when resuming a run.
        """
        _add_path_output(self._csv_outputs, csv_path, lambda key: CsvOutput(key, append=append))

    def remove_tabular_output(self, csv_path: str | os.PathLike) -> None:
        """Stop writing rows to ``csv_path`` and close it."""
        _remove_path_output(self._csv_outputs, csv_path, "remove_tabular_output", "tabular")

    def add_tensorboard_output(self, log_dir: str | os.PathLike) -> None:
        """Write every dumped row as TensorBoard scalars in ``log_dir``.

        Each key is a scalar tag, recorded at the ``step`` given to ``dump_tabular``.
        Adding the same directory twice does nothing; several directories may be added.
        """
        _add_path_output(self._tensorboard_outputs, log_dir, TensorBoardOutput)

    def remove_tensorboard_output(self, log_dir: str | os.PathLike) -> None:
        """Stop writing rows to the TensorBoard directory ``log_dir`` and close its file."""
        _remove_path_output(
            self._tensorboard_outputs, log_dir, "remove_tensorboard_output", "TensorBoard"
        )

    @property
    def outputs(self) -> list[Output]:
        """The outputs added with :meth:`add_output`, in order."""
        return list(self._outputs)

    def add_output(self, output: Output) -> Output:
        """Send every dumped row to ``output`` as ``output.write(row, step)``.

        Parameters
        ----------
        output : machina.logger.output.Output
            Anything with ``write(row, step)`` and ``close()``: ``WandbOutput``,
            ``MLflowOutput``, ``TensorBoardOutput``, ``CsvOutput`` or your own. The logger
            closes it in :meth:`close`. Adding the same object twice does nothing.

        Returns
        -------
        Output
            ``output``, e.g. to remove it later.
        """
        if not isinstance(output, Output):
            raise TypeError(
                f"add_output: output needs write(row, step) and close(), got "
                f"{type(output).__name__}"
            )
        if not any(o is output for o in self._outputs):
            self._outputs.append(output)
        return output

    def remove_output(self, output: Output) -> None:
        """Stop sending rows to ``output`` (added with :meth:`add_output`) and close it."""
        for i, o in enumerate(self._outputs):
            if o is output:
                del self._outputs[i]
                output.close()
                return
        raise ValueError(f"remove_output: {output!r} is not an output of this logger")

    # ------------------------------------------------------------------ tabular
    def record_tabular(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` in the current row (a later call for the key wins).

        Parameters
        ----------
        key : str
            Column name.
        value : scalar
            A number, a one-element numpy array or torch tensor (converted with
            ``.item()``), a string, or None. Arrays with several elements are refused: use
            ``record_tabular_misc_stat`` to record their statistics.
        """
        self._tabular["".join(self._tabular_prefixes) + str(key)] = _to_scalar(key, value)

    def record_tabular_misc_stat(self, key: str, values: Any) -> None:
        """Record ``{key}Average``, ``Std``, ``Median``, ``Min`` and ``Max`` of ``values``.

        Parameters
        ----------
        key : str
            Column-name prefix.
        values : array-like, shape (n,) with n >= 1
            Numbers, a numpy array, a torch tensor or a list of scalar tensors.
        """
        arr = _to_float_array(key, values).ravel()
        if arr.size == 0:
            raise ValueError(f"record_tabular_misc_stat: {key!r} has no values")
        self.record_tabular(key + "Average", float(np.mean(arr)))
        self.record_tabular(key + "Std", float(np.std(arr)))
        self.record_tabular(key + "Median", float(np.median(arr)))
        self.record_tabular(key + "Min", float(np.min(arr)))
        self.record_tabular(key + "Max", float(np.max(arr)))

    def dump_tabular(self, step: int | None = None, no_print: bool = False) -> dict[str, Any]:
        """Write the current row to every output, print it, and start an empty row.

        Parameters
        ----------
        step : int, optional
            TensorBoard step of the row; by default the number of rows dumped before.
        no_print : bool, default False
            Do not print the table (it is still written to the CSV and TensorBoard).

        Returns
        -------
        dict of str to scalar
            The row that was written; empty (and nothing written) if nothing was recorded.
        """
        row, self._tabular = self._tabular, {}
        if not row:
            return row
        if step is None:
            step = self._num_dumps
        self._num_dumps += 1
        for csv_output in self._csv_outputs.values():
            csv_output.write(row)
        for tb_output in self._tensorboard_outputs.values():
            tb_output.write(row, step)
        for output in self._outputs:
            output.write(row, step)
        if not no_print:
            self._emit(_format_table(row))
        return row

    def write_to_tensorboard(self, row: Mapping[str, Any], step: int | None = None) -> None:
        """Write ``row`` to the TensorBoard outputs only (not to CSV files, not printed).

        Parameters
        ----------
        row : mapping of str to scalar
            Tag to value.
        step : int, optional
            TensorBoard step; by default the number of rows dumped before, which this call
            then counts as one more.
        """
        values = {key: _to_scalar(key, value) for key, value in row.items()}
        if step is None:
            step = self._num_dumps
            self._num_dumps += 1
        for tb_output in self._tensorboard_outputs.values():
            tb_output.write(values, step)

    # ------------------------------------------------------------------ results
    def record_results(
        self,
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
        """Record one iteration of training, dump it, and redraw the learning curve.

        Records, then dumps at TensorBoard step ``total_step``:

        - for each list or array in ``result_dict`` (e.g. ``PolLoss``: one loss per update),
          ``{key}Average``, ``{key}Std``, ``{key}Median``, ``{key}Min``, ``{key}Max`` (empty
          lists are skipped); for each scalar (e.g. ``new_kl_beta``, also as a 0-d
          tensor), its value under ``key``;
        - with ``rewards``: ``RewardAverage``, ``RewardStd``, ``RewardMedian``,
          ``RewardMin``, ``RewardMax`` and ``EpisodePerIter``;
        - ``TotalEpisode``, ``StepPerIter`` and ``TotalStep``.

        Parameters
        ----------
        log_dir : str or os.PathLike
            The run's directory, printed as machina 0.x did.
        result_dict : mapping of str to scalar or array-like
            What an algorithm's ``train`` returned.
        score_file : str or os.PathLike
            The progress CSV. Registered as a tabular output if it is not one yet.
        total_epi : int
            Episodes sampled since the start.
        step : int
            Steps sampled in this iteration.
        total_step : int
            Steps sampled since the start.
        rewards : array-like, shape (n_epi,), optional
            Return (sum of rewards) of each episode sampled in this iteration.
        plot_title : str, optional
            Title of the learning-curve figure, e.g. the environment name.
        async_plot : bool, default False
            Accepted for compatibility with machina 0.x and ignored: the figure is drawn
            in-process (tens of milliseconds with Agg), so it is current when this returns.

        Returns
        -------
        str or None
            Path of the learning-curve PNG, ``learning_curve.png`` in the directory of
            ``score_file``; None when ``rewards`` is not given (nothing to plot).
        """
        del async_plot  # see docstring
        self.log(f"outdir {os.path.abspath(os.fspath(log_dir))}")
        score_file = os.path.abspath(os.fspath(score_file))
        if score_file not in self._csv_outputs:
            self.add_tabular_output(score_file)

        for key, value in result_dict.items():
            arr = _to_float_array(key, value) if _is_array_like(value) else None
            if arr is None:
                self.record_tabular(key, value)
            elif arr.ndim == 0:
                self.record_tabular(key, arr.item())
            elif arr.size >= 1:
                self.record_tabular_misc_stat(key, arr)
        if rewards is not None:
            rewards_arr = _to_float_array("rewards", rewards).ravel()
            if rewards_arr.size >= 1:
                self.record_tabular_misc_stat(REWARD_PREFIX, rewards_arr)
            self.record_tabular(EPISODES_PER_ITER, int(rewards_arr.size))
        self.record_tabular(TOTAL_EPISODES, total_epi)
        self.record_tabular(STEPS_PER_ITER, step)
        self.record_tabular(TOTAL_STEPS, total_step)
        self.dump_tabular(step=int(total_step))

        if rewards is None:
            return None
        try:
            return plot_learning_curve(
                score_file,
                os.path.join(os.path.dirname(score_file), LEARNING_CURVE_PNG),
                x=TOTAL_STEPS,
                y=REWARD_PREFIX + "Average",
                title=plot_title,
            )
        except KeyError:
            # No RewardAverage yet (every iteration so far had zero episodes).
            return None

    def record_results_bc(
        self,
        log_dir: str | os.PathLike,
        result_dict: Mapping[str, Any],
        score_file: str | os.PathLike,
        epoch: int,
        rewards: Sequence[float] | np.ndarray | None = None,
        plot_title: str | None = None,
        async_plot: bool = True,
    ) -> str | None:
        """Record one epoch of supervised training (behaviour cloning), dump it, and plot.

        Records the result dict as :meth:`record_results` does, ``Reward*`` statistics with
        ``rewards``, and ``CurrentEpoch``; dumps at TensorBoard step ``epoch``.

        Parameters
        ----------
        log_dir : str or os.PathLike
            The run's directory, printed.
        result_dict : mapping of str to scalar or array-like
            What ``behavior_clone.train`` (or ``test``) returned.
        score_file : str or os.PathLike
            The progress CSV; registered as a tabular output if it is not one yet.
        epoch : int
            The epoch just finished.
        rewards : array-like, shape (n_epi,), optional
            Returns of evaluation episodes.
        plot_title : str, optional
            Title of the figure.
        async_plot : bool, default True
            Accepted for compatibility with machina 0.x and ignored (see
            :meth:`record_results`).

        Returns
        -------
        str or None
            Path of ``learning_curve.png`` beside ``score_file``: ``RewardAverage`` against
            ``CurrentEpoch`` with ``rewards``, else the first recorded list's average; None
            when nothing can be plotted.
        """
        del async_plot  # see docstring
        self.log(f"outdir {os.path.abspath(os.fspath(log_dir))}")
        score_file = os.path.abspath(os.fspath(score_file))
        if score_file not in self._csv_outputs:
            self.add_tabular_output(score_file)
        curve = None
        for key, value in result_dict.items():
            arr = _to_float_array(key, value) if _is_array_like(value) else None
            if arr is None:
                self.record_tabular(key, value)
            elif arr.ndim == 0:
                self.record_tabular(key, arr.item())
            elif arr.size >= 1:
                self.record_tabular_misc_stat(key, arr)
                curve = curve or key + "Average"
        if rewards is not None:
            rewards_arr = _to_float_array("rewards", rewards).ravel()
            if rewards_arr.size >= 1:
                self.record_tabular_misc_stat(REWARD_PREFIX, rewards_arr)
                curve = REWARD_PREFIX + "Average"
        self.record_tabular(CURRENT_EPOCH, epoch)
        self.dump_tabular(step=int(epoch))
        if curve is None:
            return None
        try:
            return plot_learning_curve(
                score_file,
                os.path.join(os.path.dirname(score_file), LEARNING_CURVE_PNG),
                x=CURRENT_EPOCH,
                y=curve,
                title=plot_title,
            )
        except KeyError:
            return None

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close every output. The logger stays usable: add outputs again to reuse it."""
        for f in self._text_files.values():
            f.close()
        outputs: list[Output] = [
            *self._csv_outputs.values(),
            *self._tensorboard_outputs.values(),
            *self._outputs,
        ]
        for output in outputs:
            output.close()
        self._outputs.clear()
        self._text_files.clear()
        self._csv_outputs.clear()
        self._tensorboard_outputs.clear()

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Logger(text={list(self._text_files)}, csv={self.tabular_outputs}, "
            f"tensorboard={self.tensorboard_outputs})"
        )


def _is_array_like(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) or hasattr(value, "detach")


def _to_float_array(key: str, value: Any) -> np.ndarray:
    """Convert numbers, arrays, tensors or lists of scalar tensors to a float array."""
    try:
        return np.asarray(to_numpy(value, bfloat16_as_float32=True), dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{key!r}: expected numbers, a numpy array or a torch tensor, got "
            f"{type(value).__name__} ({e})"
        ) from e


def _to_scalar(key: str, value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    # numpy scalars (np.bool_ is not a numbers.Number: it would be logged as 'True')
    if isinstance(value, (numbers.Number, np.generic)) and hasattr(value, "item"):
        return value.item()
    if _is_array_like(value):
        arr = np.asarray(to_numpy(value, bfloat16_as_float32=True))
        if arr.size != 1:
            raise TypeError(
                f"record_tabular: {key!r} must be a scalar, got an array of shape "
                f"{arr.shape}; use record_tabular_misc_stat to record its statistics"
            )
        return arr.item()
    if isinstance(value, numbers.Number):
        return value
    return str(value)


def _format_table(row: Mapping[str, Any]) -> str:
    cells = [(key, _format_value(value)) for key, value in row.items()]
    key_width = max(len(k) for k, _ in cells)
    value_width = max(len(v) for _, v in cells)
    rule = "-" * (key_width + value_width + 7)
    lines = [rule]
    lines += [f"| {k:<{key_width}} | {v:>{value_width}} |" for k, v in cells]
    lines.append(rule)
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
