"""A run folder (progress.csv, TensorBoard events, log.txt, models/) and ``Run``, the
bookkeeping every training script shares."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from machina.logger import default
from machina.logger.default import add_tabular_output, add_tensorboard_output, set_logger
from machina.logger.logger import Logger
from machina.logger.progress import progress


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


def save_models(log_dir: str | os.PathLike, **modules: torch.nn.Module | torch.Tensor) -> None:
    """Save each module's ``state_dict`` (or a tensor) as ``log_dir/models/<name>_last.pt``.

    The files load with ``torch.load``'s default ``weights_only=True``.
    """
    for name, module in modules.items():
        state = module.detach() if isinstance(module, torch.Tensor) else module.state_dict()
        torch.save(state, os.path.join(os.fspath(log_dir), "models", f"{name}_last.pt"))


class Run:
    """The tail every training script shares: run folder, progress bar, evaluation schedule,
    per-iteration records, saved models, checkpoints and the final status line.

    The script keeps its loop and calls :meth:`record` once per iteration::

        run = logger.Run(args.log, max_steps=args.max_steps, desc=args.env_name,
                         eval_interval=2000, solve_return=475.0)
        with run:
            while not run.done:
                epis = sampler.sample(pol, max_steps=512)
                ...
                result_dict = ppo_clip.train(...)
                run.record(epis, result_dict,
                           evaluate=lambda: sampler.sample(pol, max_epis=10, deterministic=True),
                           models=dict(pol=pol, vf=vf))

    Parameters
    ----------
    log_dir : str or os.PathLike
        The run folder (``start_run``): progress.csv, TensorBoard events, log.txt,
        learning_curve.png, models/ and, with :meth:`checkpoint`, the run's checkpoints.
    max_steps : int
        Env-step budget: :attr:`done` once ``total_step`` reaches it.
    desc : str
        Label of the progress bar, title of the learning curve and first word of the status.
    eval_interval : int, optional
        Env steps between evaluations (the ``evaluate`` callable given to :meth:`record`);
        the last iteration is evaluated too. None: every iteration that passes one.
    solve_return : float, optional
        :attr:`done` once an evaluation's mean return reaches it.
    unit : str
        What ``max_steps`` counts: ``"step"`` (env steps) or ``"episode"``.
    resume : bool
        Continue the run in ``log_dir``: progress.csv is appended to, and :meth:`restore`
        brings back the objects and counters of its newest checkpoint.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        max_steps: int,
        desc: str,
        eval_interval: int | None = None,
        solve_return: float | None = None,
        unit: str = "step",
        resume: bool = False,
    ) -> None:
        if unit not in ("step", "episode"):
            raise ValueError(f"unit: expected 'step' or 'episode', given {unit!r}")
        self.log_dir = os.fspath(log_dir)
        self.max_steps = int(max_steps)
        self.desc = desc
        self.eval_interval = eval_interval
        self.solve_return = solve_return
        self.unit = unit
        self.resume = resume
        self.score_file = start_run(self.log_dir, append=resume)
        self.total_epi = 0
        self.total_step = 0
        self.eval_return = -math.inf
        self.next_eval = eval_interval or 0
        self._bar = None

    # ---------------------------------------------------------------- state
    @property
    def progress_count(self) -> int:
        return self.total_step if self.unit == "step" else self.total_epi

    @property
    def solved(self) -> bool:
        return self.solve_return is not None and self.eval_return >= self.solve_return

    @property
    def done(self) -> bool:
        """The budget is spent or an evaluation reached ``solve_return``."""
        return self.progress_count >= self.max_steps or self.solved

    def _counters(self) -> dict[str, Any]:
        return dict(
            total_epi=self.total_epi,
            total_step=self.total_step,
            eval_return=None if math.isinf(self.eval_return) else self.eval_return,
            next_eval=self.next_eval,
        )

    def checkpoint(self, **objects: Any) -> None:
        """Save the run (networks, optimisers, samplers, replay, prepro, RNGs, counters) in
        ``log_dir`` with :func:`machina.checkpoint.save_run`, so that ``resume`` continues it
        bit for bit."""
        from machina.checkpoint import save_run

        save_run(self.log_dir, objects, extra=self._counters())

    def restore(self, **objects: Any) -> bool:
        """With ``resume``, load the newest checkpoint of ``log_dir`` into ``objects`` and the
        counters; returns whether a checkpoint was restored (False starts from scratch)."""
        from machina.checkpoint import latest_checkpoint, load_run

        if not self.resume or latest_checkpoint(self.log_dir) is None:
            return False
        counters = load_run(self.log_dir, objects)
        self.total_epi = counters["total_epi"]
        self.total_step = counters["total_step"]
        eval_return = counters["eval_return"]
        self.eval_return = -math.inf if eval_return is None else eval_return
        self.next_eval = counters["next_eval"]
        if self._bar is not None:
            self._bar.update(self.progress_count)
        return True

    # ---------------------------------------------------------------- per iteration
    def eval_due(self) -> bool:
        """Whether the iteration just recorded should be evaluated."""
        return self.total_step >= self.next_eval or self.progress_count >= self.max_steps

    def record(
        self,
        epis: Sequence[Mapping[str, Any]],
        result_dict: dict[str, Any],
        evaluate: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
        models: Mapping[str, torch.nn.Module | torch.Tensor] | None = None,
        num_step: int | None = None,
        **postfix: Any,
    ) -> None:
        """Count, evaluate when due, write the row, save the models, advance the bar.

        Parameters
        ----------
        epis : sequence of episode dicts
            This iteration's episodes; their returns are the row's ``Reward*`` columns.
        result_dict : dict
            What ``train`` returned; ``EvalReturn`` is added when an evaluation ran.
        evaluate : callable, optional
            Returns evaluation episodes (e.g. deterministic ones from a sampler).
        models : mapping, optional
            Saved as ``models/<name>_last.pt`` (``save_models``).
        num_step : int, optional
            Env steps of this iteration; by default the episodes' lengths.
        **postfix
            Extra numbers shown on the progress bar.
        """
        if num_step is None:
            num_step = int(sum(len(epi["rews"]) for epi in epis))
        before = self.progress_count
        self.total_epi += len(epis)
        self.total_step += num_step
        if evaluate is not None and self.eval_due():
            if self.eval_interval:
                while self.next_eval <= self.total_step:
                    self.next_eval += self.eval_interval
            eval_epis = evaluate()
            self.eval_return = float(np.mean([np.sum(epi["rews"]) for epi in eval_epis]))
            result_dict["EvalReturn"] = self.eval_return
        rewards = [float(np.sum(epi["rews"])) for epi in epis]
        default.record_results(
            self.log_dir,
            result_dict,
            self.score_file,
            self.total_epi,
            num_step,
            self.total_step,
            rewards,
            plot_title=self.desc,
        )
        if models:
            save_models(self.log_dir, **models)
        if self._bar is not None:
            self._bar.update(self.progress_count - before)
            shown = {"train": f"{np.mean(rewards):.1f}"} if rewards else {}
            if not math.isinf(self.eval_return):
                shown["eval"] = f"{self.eval_return:.1f}"
            shown.update({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in postfix.items()})
            self._bar.set_postfix(shown)

    # ---------------------------------------------------------------- start and end
    def __enter__(self) -> Run:
        self._bar = progress(total=self.max_steps, desc=self.desc, disable=False)
        self._bar.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._bar.__exit__(*exc_info)
        self._bar = None
        default.close()
        if exc_info[0] is None:
            print(self.status())

    def status(self) -> str:
        """The final two lines: solved or not, after how many steps, and the run folder."""
        if self.solve_return is None:
            state = "done"
        else:
            state = "solved" if self.solved else "not solved"
        ret = "" if math.isinf(self.eval_return) else f" (eval return {self.eval_return:.1f})"
        return (
            f"{self.desc}: {state} after {self.total_step} steps{ret};\n"
            f"run folder: {os.path.abspath(self.log_dir)}"
        )
