"""Side-by-side timing: contenders alternate, several repetitions, medians and ratios."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    except OSError:
        pass
    return f"{cpu}, Python {platform.python_version()}, torch {torch.__version__}"


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
