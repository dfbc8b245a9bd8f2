"""A run folder (progress.csv, TensorBoard events, log.txt, models/) and ``Run``, the
bookkeeping every training script shares."""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import itertools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from machina.checkpoint import (
    latest_checkpoint,
    load_run,
    read_extra,
    remove_checkpoints,
    restore_point,
    save_run,
)
from machina.logger import default
from machina.logger.default import add_tabular_output, add_tensorboard_output, set_logger
from machina.logger.logger import LEARNING_CURVE_PNG, TOTAL_STEPS, Logger
from machina.logger.plot import plot_learning_curve
from machina.logger.progress import progress
from machina.logger.tensorboard_output import event_files, truncate_events
from machina.utils.files import write_atomic

#: What ``Run`` can count: env steps, episodes, or iterations (calls of ``record``).
UNITS = ("step", "episode", "iteration")
#: Column of an evaluation's mean return.
EVAL_RETURN = "EvalReturn"


def start_run(log_dir: str | os.PathLike, stdout: bool = False, append: bool = False) -> str:
    """Make ``log_dir`` a run folder and point the default logger at it.

    Creates ``log_dir/models``, sends messages and per-iteration tables to ``log_dir/log.txt``
    (and to stdout when ``stdout``; scripts with a progress bar keep the terminal for it), rows
    to ``log_dir/progress.csv`` (continued instead of truncated when ``append``, to resume a
    run) and scalars to TensorBoard event files in ``log_dir``.

    Returns
    -------
    str
        Path of ``progress.csv``, the ``score_file`` that ``record_results`` takes.
    """
    log_dir = os.fspath(log_dir)
    os.makedirs(os.path.join(log_dir, "models"), exist_ok=True)
    score_file = os.path.join(log_dir, "progress.csv")
    set_logger(Logger(text_file=os.path.join(log_dir, "log.txt"), stdout=stdout))
    add_tabular_output(score_file, append=append)
    add_tensorboard_output(log_dir)
    return score_file


def check_resume_settings(
    saved: Mapping[str, Any],
    given: Mapping[str, Any],
    resumable: Iterable[str],
    log_dir: str | os.PathLike,
) -> None:
    """A ValueError naming every setting that both the checkpoint's ``saved`` settings and
    the resuming run's ``given`` ones name with another value, apart from ``resumable``
    (``Run``'s check; a script checkpointing without ``Run`` calls it too). A name only one
    side has (a flag added to a script since) is not compared."""

    def shown(value: Any) -> str:
        # as JSON text, so that NaN equals NaN and dicts compare in any key order
        return json.dumps(value, sort_keys=True)

    differ = [
        f"{name}: saved {shown(saved[name])}, given {shown(given[name])}"
        for name in sorted(set(saved) & set(given) - set(resumable))
        if shown(saved[name]) != shown(given[name])
    ]
    if differ:
        raise ValueError(
            f"settings: the run in {os.fspath(log_dir)} was saved with other settings "
            f"({'; '.join(differ)}); resume it with the settings it was started with, or start "
            "a new run folder"
        )


def truncate_rows(score_file: str | os.PathLike, rows: int) -> None:
    """Keep the header and the first ``rows`` rows of the CSV ``score_file`` (none left when
    ``rows`` is 0; nothing when the file is missing): a resumed run's rows written after its
    checkpoint go, to be written again."""
    if not os.path.exists(score_file):
        return
    with open(score_file, newline="", encoding="utf-8") as f:
        kept = list(itertools.islice(csv.reader(f), rows + 1))
    text = io.StringIO(newline="")
    csv.writer(text).writerows(kept if rows else [])
    # replaced atomically: a resume killed here keeps every row (the checkpoint counts them)
    write_atomic(score_file, lambda f: f.write(text.getvalue().encode("utf-8")))


def save_models(log_dir: str | os.PathLike, **modules: torch.nn.Module | torch.Tensor) -> None:
    """Save each module's ``state_dict`` (or a tensor) as ``log_dir/models/<name>_last.pt``.

    The files load with ``torch.load``'s default ``weights_only=True``. Each is replaced
    atomically: a run killed while saving keeps the previous iteration's file.
    """
    for name, module in modules.items():
        state = module.detach() if isinstance(module, torch.Tensor) else module.state_dict()
        path = os.path.join(os.fspath(log_dir), "models", f"{name}_last.pt")
        write_atomic(path, lambda f, state=state: torch.save(state, f))


def _as_json(settings: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``settings`` as the JSON a checkpoint stores them in (tuples become lists, paths and
    other objects their ``str``), so that saved and given settings compare alike."""
    if not isinstance(settings, Mapping):
        raise TypeError(f"{name}: expected a mapping (e.g. vars(args)), given {type(settings)}")
    return json.loads(json.dumps({str(k): v for k, v in settings.items()}, default=str))


class Run:
    """The tail every training script shares: run folder, progress bar, evaluation schedule,
    per-iteration records, saved models, checkpoints and the final status line.

    The script keeps its loop and calls :meth:`record` once per iteration::

        run = logger.Run(args.log, max_steps=args.max_steps, desc=args.env_name,
                         eval_interval=2000, solve_return=475.0, resume=args.resume)
        state = dict(pol=pol, vf=vf, optim_pol=optim_pol, optim_vf=optim_vf)
        with run:
            run.restore(**state)            # with resume: the newest checkpoint, else nothing
            while not run.done:
                epis = sampler.sample(pol, max_steps=512)
                ...
                result_dict = ppo_clip.train(...)
                run.record(epis, result_dict,
                           evaluate=lambda: sampler.sample(pol, max_epis=10, deterministic=True),
                           models=dict(pol=pol, vf=vf), checkpoint=state)

    Parameters
    ----------
    log_dir : str or os.PathLike
        The run folder (``start_run``): progress.csv, TensorBoard events, log.txt,
        learning_curve.png, models/ and the run's checkpoints (``machina.checkpoint``).
    max_steps : int
        Budget, counted in ``unit``: :attr:`done` once it is spent.
    desc : str
        Label of the progress bar and first word of the status line.
    eval_interval : int, optional
        How many ``unit`` between evaluations (the ``evaluate`` callable of :meth:`record`);
        the last iteration is evaluated too. None: every iteration.
    solve_return : float, optional
        :attr:`done` once an evaluation's mean return (``EvalReturn``) reaches it.
    unit : str
        What ``max_steps``, ``eval_interval`` and ``checkpoint_interval`` count: ``"step"``
        (env steps), ``"episode"`` or ``"iteration"`` (calls of :meth:`record`, e.g. epochs
        over a fixed data set).
    resume : bool
        Continue the run in ``log_dir``: progress.csv is continued, and :meth:`restore` brings
        back the objects and counters of its newest checkpoint (and cuts the rows and
        TensorBoard scalars written after it). False: a new run, which replaces a previous
        run of ``log_dir`` (its rows, checkpoints and machina's TensorBoard event files) at
        its first row or checkpoint.
    title : str, optional
        Title of the learning curve; ``desc`` by default.
    checkpoint_interval : int, optional
        How many ``unit`` between the checkpoints :meth:`record` writes when given ``checkpoint``
        objects; the last iteration is saved too. None: every iteration.
    settings : mapping, optional
        The run's settings (a script's ``vars(args)``), saved with every checkpoint. With
        ``resume`` and a checkpoint in ``log_dir``, they are compared with the checkpoint's
        before anything in the folder is touched: ValueError naming each setting both name
        with another value, apart from :attr:`RESUMABLE_SETTINGS` and ``resumable``. A
        network's activation or a learning rate given differently would otherwise load into
        the same shapes and continue another run silently. A name only one side has (a flag
        added to a script since) is not compared.
    resumable : iterable of str
        More settings that may change on resume (a script's own budget flag, an input file
        that may move).

    Raises
    ------
    ValueError
        A bad argument, or (with ``resume`` and ``settings``) settings that differ from the
        checkpoint's.
    TypeError
        ``settings`` not a mapping, or ``resumable`` a str.
    """

    #: settings that may change when a run is resumed: the resume flag, the run folder, the
    #: budget (a run continues to a larger ``max_steps``; linear schedules over the budget
    #: then stretch from there on), how often it checkpoints, and the sampler's transport
    #: (its state continues in any backend)
    RESUMABLE_SETTINGS = frozenset(
        {"resume", "log", "log_dir", "max_steps", "checkpoint_interval", "sampler_backend"}
    )

    def __init__(
        self,
        log_dir: str | os.PathLike,
        max_steps: int,
        desc: str,
        eval_interval: int | None = None,
        solve_return: float | None = None,
        unit: str = "step",
        resume: bool = False,
        title: str | None = None,
        checkpoint_interval: int | None = None,
        settings: Mapping[str, Any] | None = None,
        resumable: Iterable[str] = (),
    ) -> None:
        if unit not in UNITS:
            raise ValueError(f"unit: expected one of {UNITS}, given {unit!r}")
        for name, value in (
            ("eval_interval", eval_interval),
            ("checkpoint_interval", checkpoint_interval),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name}: expected a positive int or None, given {value!r}")
        try:
            whole = int(max_steps) == max_steps
        except (TypeError, ValueError, OverflowError):
            whole = False
        if not whole or max_steps < 1:  # a budget of 0 "ran" and reported not solved
            raise ValueError(
                f"max_steps: expected a positive whole budget of {unit}s, given {max_steps!r}"
            )
        self.log_dir = os.fspath(log_dir)
        self.max_steps = int(max_steps)
        self.desc = desc
        self.title = desc if title is None else title
        self.eval_interval = eval_interval
        self.solve_return = solve_return
        self.unit = unit
        self.resume = resume
        self.checkpoint_interval = checkpoint_interval
        self.settings = None if settings is None else _as_json(settings, "settings")
        if isinstance(resumable, str):
            raise TypeError(
                f"resumable: expected an iterable of names, given the str {resumable!r}"
            )
        extra = set(resumable)  # once: an iterator is read once
        self.resumable = self.RESUMABLE_SETTINGS | extra
        unknown = sorted(extra - set(self.settings)) if self.settings is not None else []
        if unknown:  # a misspelt name would never match and the resume be refused on it
            raise ValueError(f"resumable: names not in settings: {unknown}")
        if resume and latest_checkpoint(self.log_dir) is not None:
            self._check_settings(read_extra(self.log_dir).get("settings"))
        # A new run in a used folder replaces the old one (its rows, checkpoints and
        # TensorBoard events: a later resume must not find them), but only at its own first
        # row or checkpoint: a run that stops on a bad argument leaves the old one whole.
        self._old_events = [] if resume else event_files(self.log_dir)
        self._replace_old_run = not resume
        self.score_file = start_run(self.log_dir, append=True)
        self._logger = default.get_logger()
        self.total_iter = 0
        self.total_epi = 0
        self.total_step = 0
        #: Columns of the newest evaluation (``EvalReturn``, or what ``evaluate`` returned).
        self.evaluation: dict[str, float] = {}
        # what the checkpoint keeps instead of an evaluation due only because the budget
        # ended (see record); None: the newest evaluation
        self._kept_evaluation: dict[str, float] | None = None
        #: Mean return of the newest iteration's episodes.
        self.train_return = -math.inf
        self.next_eval = eval_interval or 0
        self.next_checkpoint = checkpoint_interval or 0
        self.rows = 0
        self._bar = None

    # ---------------------------------------------------------------- state
    @property
    def progress_count(self) -> int:
        """What the budget counts so far: steps, episodes or iterations (``unit``)."""
        return {"step": self.total_step, "episode": self.total_epi, "iteration": self.total_iter}[
            self.unit
        ]

    @property
    def eval_return(self) -> float:
        """Mean return of the newest evaluation; -inf before the first."""
        return self.evaluation.get(EVAL_RETURN, -math.inf)

    @property
    def solved(self) -> bool:
        return self.solve_return is not None and self.eval_return >= self.solve_return

    @property
    def done(self) -> bool:
        """The budget is spent or an evaluation reached ``solve_return``."""
        return self.progress_count >= self.max_steps or self.solved

    def _counters(self) -> dict[str, Any]:
        counters = dict(
            total_iter=self.total_iter,
            total_epi=self.total_epi,
            total_step=self.total_step,
            evaluation=self.evaluation if self._kept_evaluation is None else self._kept_evaluation,
            train_return=None if math.isinf(self.train_return) else self.train_return,
            next_eval=self.next_eval,
            next_checkpoint=self.next_checkpoint,
            rows=self.rows,
            saved_at=time.time(),  # the TensorBoard rows written after it go on a resume
        )
        if self.settings is not None:
            counters["settings"] = self.settings
        # which script made the run, for those that rebuild its policy (take_movie.py)
        counters["script"] = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else None
        return counters

    def _check_settings(self, saved: Mapping[str, Any] | None) -> None:
        """ValueError if a setting named by both the checkpoint's ``saved`` settings and this
        run's differs (outside :attr:`resumable`); nothing to compare when either has none."""
        if saved is not None and self.settings is not None:
            check_resume_settings(saved, self.settings, self.resumable, self.log_dir)

    def checkpoint(self, **objects: Any) -> None:
        """Save the run (networks, optimisers, samplers, replay, prepro, RNGs, counters) in
        ``log_dir`` with :func:`machina.checkpoint.save_run`, so that ``resume`` continues it
        bit for bit."""
        self._replace_old()
        save_run(self.log_dir, objects, extra=self._counters())

    def _replace_old(self) -> None:
        """Once, before a new run's first write: the folder's previous run goes."""
        if not self._replace_old_run:
            return
        self._replace_old_run = False
        remove_checkpoints(self.log_dir)
        # its settings (run_ppo.py's args.json) and models (save_models'): take_movie.py and
        # make_expert_epis.py would rebuild this run's policy with the old run's settings
        models = glob.glob(os.path.join(glob.escape(self.log_dir), "models", "*_last.pt"))
        for path in [*self._old_events, os.path.join(self.log_dir, "args.json"), *models]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        self._truncate_csv(0)

    def restore(self, **objects: Any) -> bool:
        """With ``resume``, load the newest checkpoint of ``log_dir`` into ``objects`` and the
        counters, and cut progress.csv back to the rows written before it (a run stopped after
        its last checkpoint repeats those iterations). Returns whether a checkpoint was
        restored: False (no ``resume``, or no checkpoint yet) starts from scratch."""
        if not self.resume:
            return False
        counters: dict[str, Any] = {}
        if latest_checkpoint(self.log_dir) is None:
            warnings.warn(
                f"resume: no checkpoint in {self.log_dir}; starting a new run", stacklevel=2
            )
        else:
            counters = load_run(self.log_dir, objects)
            self.total_iter = counters["total_iter"]
            self.total_epi = counters["total_epi"]
            self.total_step = counters["total_step"]
            self.evaluation = dict(counters["evaluation"])
            train_return = counters["train_return"]
            self.train_return = -math.inf if train_return is None else train_return
            self.next_eval = counters["next_eval"]
            # checkpoint_interval may change on resume: the new schedule from here (the
            # saved one, with the same interval)
            self.next_checkpoint = _next(0, self.checkpoint_interval, self.progress_count)
        self.rows = counters.get("rows", 0)
        self._truncate_csv(self.rows)
        # the rows written after the checkpoint are written again (a checkpoint of an older
        # machina has no time: its events are left as they are)
        if not counters or "saved_at" in counters:
            truncate_events(self.log_dir, counters.get("saved_at", -math.inf))
        if self._bar is not None:
            self._bar.update(self.progress_count - self._bar.n)
        return bool(counters)

    def _truncate_csv(self, rows: int) -> None:
        """Keep the header and the first ``rows`` rows of progress.csv."""
        self._logger.remove_tabular_output(self.score_file)
        truncate_rows(self.score_file, rows)
        self._logger.add_tabular_output(self.score_file, append=True)

    # ---------------------------------------------------------------- per iteration
    def eval_due(self) -> bool:
        """Whether the iteration just counted should be evaluated."""
        return self.progress_count >= self.next_eval or self.progress_count >= self.max_steps

    def record(
        self,
        epis: Sequence[Mapping[str, Any]],
        result_dict: dict[str, Any],
        evaluate: Callable[[], Sequence[Mapping[str, Any]] | Mapping[str, float]] | None = None,
        models: Mapping[str, torch.nn.Module | torch.Tensor] | None = None,
        num_step: int | None = None,
        checkpoint: Mapping[str, Any] | None = None,
        **postfix: Any,
    ) -> None:
        """Count, evaluate when due, write the row, save the models and checkpoint, advance
        the bar.

        Parameters
        ----------
        epis : sequence of episode dicts
            This iteration's episodes; their returns are the row's ``Reward*`` columns and the
            learning curve. Empty for a loop that samples nothing (behaviour cloning): the
            curve then shows ``EvalReturn``.
        result_dict : dict
            What ``train`` returned; the evaluation's columns are added when one ran.
        evaluate : callable, optional
            Returns evaluation episodes (their mean return is ``EvalReturn``, e.g.
            deterministic ones from a sampler) or a mapping of column names to numbers.
        models : mapping, optional
            Saved as ``models/<name>_last.pt`` (``save_models``).
        num_step : int, optional
            Env steps of this iteration; by default the episodes' lengths.
        checkpoint : mapping, optional
            The run's objects with state, saved with :meth:`checkpoint` every
            ``checkpoint_interval`` and at the last iteration.
        **postfix
            Extra numbers shown on the progress bar.
        """
        if num_step is None:
            num_step = int(sum(len(epi["rews"]) for epi in epis))
        self._replace_old()
        before = self.progress_count
        self.total_iter += 1
        self.total_epi += len(epis)
        self.total_step += num_step
        if evaluate is not None and self.eval_due():
            # Due only because the budget ends, this evaluation is one a run with a larger
            # budget would not make, and it moves e.g. the sampler's environments: the
            # checkpoint's objects (and the global RNGs) are put back as they were before
            # it, so that a resume with a larger budget continues bit for bit.
            rewind = None
            if checkpoint is not None and self.progress_count < self.next_eval:
                rewind = restore_point(checkpoint)
            self.next_eval = _next(self.next_eval, self.eval_interval, self.progress_count)
            before_it, self.evaluation = self.evaluation, _columns(evaluate())
            # Nor is it what a resume with a larger budget continues from: the checkpoint
            # keeps the evaluation before it (one reaching solve_return would end that run).
            self._kept_evaluation = None
            if rewind is not None:
                rewind()
                self._kept_evaluation = before_it
            result_dict.update(self.evaluation)
        rewards = [float(np.sum(epi["rews"])) for epi in epis]
        if rewards:
            self.train_return = float(np.mean(rewards))
        plotted = self._logger.record_results(
            self.log_dir,
            result_dict,
            self.score_file,
            self.total_epi,
            num_step,
            self.total_step,
            rewards or None,
            plot_title=self.title,
        )
        self.rows += 1
        if plotted is None and EVAL_RETURN in self.evaluation:
            self._plot_eval_curve()
        if models:
            save_models(self.log_dir, **models)
        if checkpoint is not None and (self.progress_count >= self.next_checkpoint or self.done):
            self.next_checkpoint = _next(
                self.next_checkpoint, self.checkpoint_interval, self.progress_count
            )
            self.checkpoint(**checkpoint)
        if self._bar is not None:
            self._bar.update(self.progress_count - before)
            shown = {"train": _fmt(self.train_return)} if rewards else {}
            for key, value in self.evaluation.items():
                shown["eval" if key == EVAL_RETURN else key] = _fmt(value)
            shown.update({k: _fmt(v) if isinstance(v, float) else v for k, v in postfix.items()})
            self._bar.set_postfix(shown)

    def _plot_eval_curve(self) -> None:
        png = os.path.join(os.path.dirname(os.path.abspath(self.score_file)), LEARNING_CURVE_PNG)
        plot_learning_curve(self.score_file, png, x=TOTAL_STEPS, y=EVAL_RETURN, title=self.title)

    # ---------------------------------------------------------------- start and end
    def __enter__(self) -> Run:
        self._bar = progress(total=self.max_steps, desc=self.desc, disable=False)
        self._bar.__enter__()
        self._bar.update(self.progress_count)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._bar.__exit__(*exc_info)
        self._bar = None
        self._logger.close()
        if exc_info[0] is None:
            print(self.status())

    def status(self) -> str:
        """The final two lines: solved or not, after how much, the newest evaluation's return
        (or the newest episodes' when nothing was evaluated), and the run folder."""
        if self.solve_return is None:
            state = "done"
        else:
            state = "solved" if self.solved else "not solved"
        spent = f"{self.total_step} steps"
        if self.unit != "step":
            spent = f"{self.progress_count} {self.unit}s, {spent}"
        if EVAL_RETURN in self.evaluation:
            ret = f" (eval return {self.eval_return:.1f})"
        elif not math.isinf(self.train_return):
            ret = f" (train return {self.train_return:.1f})"
        else:
            ret = ""
        return (
            f"{self.desc}: {state} after {spent}{ret};\nrun folder: {os.path.abspath(self.log_dir)}"
        )


def _fmt(value: float) -> str:
    """A number for the progress bar: returns with one decimal, small numbers (losses,
    accuracies) with three significant digits."""
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _next(current: int, interval: int | None, count: int) -> int:
    """The first multiple of ``interval`` after ``count`` (0 without an interval: always due)."""
    if not interval:
        return 0
    if current <= count:  # whole intervals at once: a resume may start from 0
        current += ((count - current) // interval + 1) * interval
    return current


def _columns(evaluation: Sequence[Mapping[str, Any]] | Mapping[str, float]) -> dict[str, float]:
    """An evaluation's columns: ``EvalReturn`` of episodes, or the numbers it returned."""
    if isinstance(evaluation, Mapping):
        return {str(k): float(v) for k, v in evaluation.items()}
    if not evaluation:
        raise ValueError("evaluate: expected episodes or a mapping of numbers, given no episodes")
    return {EVAL_RETURN: float(np.mean([np.sum(epi["rews"]) for epi in evaluation]))}
