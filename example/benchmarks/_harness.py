"""Side-by-side timing: contenders alternate, several repetitions, medians and ratios."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import torch


def machine() -> str:
    """One line naming the machine the numbers come from.

    Besides the model name, the CPU family and model and whether it has AVX-512: machines
    that share a name ("AMD EPYC") differ in generation and speed, and float kernels may
    differ with the instruction set, so a result names the exact CPU it came from.
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            fields = [line.split(":", 1) for line in f if ":" in line]
        info = {}
        for key, value in fields:  # the first processor's entries
            info.setdefault(key.strip(), value.strip())
        count = sum(1 for key, _ in fields if key.strip() == "processor")
        if "model name" in info:
            isa = "avx512" if "avx512f" in info.get("flags", "").split() else "no-avx512"
            generation = f"family {info.get('cpu family', '?')} model {info.get('model', '?')}"
            cpu = f"{info['model name']} ({generation} {isa}) x{count}"
    except OSError:
        pass
    return f"{cpu}, Python {platform.python_version()}, torch {torch.__version__}"


# The distributions whose versions can move a learning curve: the simulator, the float
# kernels, the environments' wrappers and the reference library.
PACKAGES = ("torch", "numpy", "gymnasium", "pybullet", "stable-baselines3")


def packages(names: tuple[str, ...] = PACKAGES) -> str:
    """One line of the installed versions of ``names`` ("absent" for one not installed),
    then machina's git commit ("+dirty" when ``machina/`` or ``example/`` differ from it):
    runs on one CPU model that learn differently across sessions can then be told apart by
    what was installed, not only by the machine."""
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} absent")
    return ", ".join([*parts, f"machina {_commit()}"])


def _commit() -> str:
    """The repository's short commit, "+dirty" if its code differs; "unknown" outside git."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise OSError(out.stderr.strip())
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "machina", "example")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def quiet_sb3(model: Any) -> Any:
    """Give a stable-baselines3 model a logger that writes nothing: its default one makes a
    new folder in the temporary directory for every run. Returns the model."""
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def alternate(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run every contender once per round, ``repeats`` rounds, in alternating order.

    Each contender returns its own measurement (a rate or a duration); alternating spreads
    the machine's slow and fast moments over all contenders alike.
    """
    results: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(contenders[name]())
    return results


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """A Markdown table, ready to paste into the README."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(_fmt(x) for x in row) + " |")


def _fmt(x: object) -> str:
    if isinstance(x, float):
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.2f}"
    return str(x)


class Curve:
    """Evaluation schedule and learning curve of one run: (seconds, env steps, return).

    Wall-clock seconds are the measure; the process's CPU seconds are recorded too, as a
    check that is less sensitive to other programs sharing the machine.
    """

    def __init__(self, eval_every: int, solved_return: float) -> None:
        self.eval_every = eval_every
        self.solved_return = solved_return
        self.next_eval = eval_every
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.cpu = 0.0
        self.points: list[tuple[float, int, float]] = []
        self.solved = False

    def due(self, steps: int) -> bool:
        return steps >= self.next_eval

    def record(self, steps: int, eval_return: float) -> bool:
        """Store one evaluation; True once solved."""
        self.points.append((time.perf_counter() - self.start, steps, eval_return))
        self.cpu = time.process_time() - self.cpu_start
        while self.next_eval <= steps:
            self.next_eval += self.eval_every
        self.solved = eval_return >= self.solved_return
        return self.solved

    def result(self, steps: int) -> dict:
        """Seconds, CPU seconds and env steps to the solving evaluation (or so far), the curve."""
        seconds, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu_start
        if self.solved:
            seconds, steps, cpu = self.points[-1][0], self.points[-1][1], self.cpu
        return dict(solved=self.solved, seconds=seconds, cpu=cpu, steps=steps, curve=self.points)


def run_seeds(
    contenders: dict[str, Callable[[int, int, int], dict]],
    seeds: list[int],
    max_steps: int,
    eval_every: int,
) -> dict[str, list[dict]]:
    """Each contender's time-to-solve run on every seed, alternating who goes first.

    ``contenders[name](seed, max_steps, eval_every)`` returns a :meth:`Curve.result` dict.
    Odd seeds reverse the order, so that the machine's slow and fast moments fall on both.
    """
    names = list(contenders)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for seed in seeds:
        for name in names if seed % 2 == 0 else names[::-1]:
            res = contenders[name](seed, max_steps, eval_every)
            runs[name].append(res)
            status = "solved" if res["solved"] else "NOT solved"
            last = res["curve"][-1][2] if res["curve"] else math.nan
            print(
                f"{name} seed {seed}: {status} in {res['seconds']:.1f} s "
                f"({res['cpu']:.1f} CPU s), {res['steps']} env steps, last eval {last:.1f}",
                flush=True,
            )
    return runs


def print_solve_tables(
    title: str, runs: dict[str, list[dict]], seeds: list[int], settings: str
) -> list[float]:
    """Print every run and the medians of :func:`run_seeds`' results; return the ratios of
    the first contender's medians over the second's (wall-clock, CPU, env steps; NaN where a
    contender did not solve the median run). Further contenders (ablations, equal-settings
    variants) get a ratio row over the second contender too."""
    names = list(runs)
    rows = []
    for name in names:
        for seed, res in zip(seeds, runs[name]):
            solved = "yes" if res["solved"] else "no"
            rows.append([name, seed, solved, res["seconds"], res["cpu"], res["steps"]])
    print_table(
        f"{title}, every run",
        ["contender", "seed", "solved", "wall-clock s", "CPU s", "env steps"],
        rows,
    )

    def med(name: str, key: str) -> float:
        # A run that did not solve counts as infinitely slow.
        return median([r[key] if r["solved"] else math.inf for r in runs[name]])

    keys = ["seconds", "cpu", "steps"]
    summary = []
    for name in names:
        solved = sum(r["solved"] for r in runs[name])
        shown = ["not solved" if math.isinf(med(name, k)) else med(name, k) for k in keys]
        summary.append([name, f"{solved}/{len(seeds)}", *shown])

    def ratios_over_reference(name: str) -> list[float]:
        pairs = [(med(name, k), med(names[1], k)) for k in keys]
        return [math.nan if math.isinf(a) or math.isinf(b) else a / b for a, b in pairs]

    for name in [names[0], *names[2:]]:
        row = ratios_over_reference(name)
        summary.append([f"{name} / {names[1]}", "", *("n/a" if math.isnan(r) else r for r in row)])
    ratios = ratios_over_reference(names[0])
    print_table(
        f"{title}: medians over {len(seeds)} seeds ({settings})",
        ["contender", "solved", "wall-clock s", "CPU s", "env steps"],
        summary,
    )
    return ratios
