"""Table and learning-curve plots of ``bench_bullet.py``'s CSV, without rerunning anything.

    python example/benchmarks/bullet_report.py [assets/bullet_results.csv] [--out_dir DIR]
    python example/benchmarks/bench_bullet.py --report      # the same

Prints a Markdown table per algorithm and task (final deterministic return: median and
range over the finished seeds; training wall-clock; env steps per second; the ratio of
machina's median wall-clock to stable-baselines3's) and writes
``bullet_<algo>_<task>.png`` (into ``assets/`` for the committed CSV, else beside the CSV,
or into ``--out_dir``): median (line) and range (band) over seeds of the
evaluation return against env steps, training wall-clock and training CPU seconds (where
runs shared the machine with other programs, CPU seconds are the steadier measure of cost).
Unfinished runs are drawn up to where they are (the legend counts them as partial).
Below the table, the machines that ran each task's runs and the installed versions of
the packages that can move a result, from the sidecar ``<csv>_machines.csv`` (CPU seconds
compare only on one machine; a learning curve may move with the CPU or with a version),
and, when the file ``<csv>_check.csv`` exists, a same-machine check of the CPU ratios:
short reruns of some runs (``bench_bullet.py --budget 20000 --csv <csv>_check.csv``), both
libraries on one machine, against the same segment of the reported runs
(:func:`machine_check`).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

LIB_NAMES = {"machina": "machina", "sb3": "stable-baselines3"}
COLORS = {"machina": "tab:blue", "sb3": "tab:orange"}
# The segment the same-machine check compares, per algorithm: past the off-policy runs'
# 10k-step random warm-up, so it holds updates; PPO's second 25k-step evaluation interval;
# short enough to rerun both libraries in minutes. Then the slack past each mark within
# which an evaluation counts: one iteration of whole episodes (PPO's: up to ~4,000 steps).
CHECK_SEGMENT = {
    "sac": (10_000, 20_000, 1_500),
    "td3": (10_000, 20_000, 1_500),
    "ppo": (25_000, 50_000, 4_000),
}


def load(path: str) -> dict[tuple, list[dict[str, Any]]]:
    """Rows grouped by run, ``(lib, algo, env, seed, budget)`` -> rows of one attempt in
    order of steps: the finished attempt, or else the one that got furthest (the latest of
    those that got equally far). A resumed attempt keeps its id, so one that was killed and
    restarted from scratch (before checkpoints existed) does not hide the further one."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    attempts: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for k in ("seed", "budget", "steps", "final"):
            r[k] = int(r[k])
        for k in ("wall_s", "cpu_s", "eval_s", "eval_cpu_s", "eval_return", "eval_std", "load1"):
            r[k] = float(r[k])
        key = (r["lib"], r["algo"], r["env"], r["seed"], r["budget"])
        attempts[key][r["attempt"]].append(r)
    runs = {}
    for key, by_attempt in attempts.items():
        done = [a for a, rs in by_attempt.items() if any(r["final"] for r in rs)]
        chosen = (
            done[-1]
            if done
            else max(by_attempt, key=lambda a: (max(r["steps"] for r in by_attempt[a]), a))
        )
        runs[key] = sorted(by_attempt[chosen], key=lambda r: r["steps"])
    return runs


def machines_path(path: str) -> str:
    """The machines sidecar of the results file ``path``: ``<name>_machines.csv``."""
    return _beside(path, "machines")


def load_machines(path: str) -> dict[tuple, set[str]]:
    """The machines (CPU model and count) that ran the pieces of each attempt,
    ``(lib, algo, env, seed, budget, attempt)`` -> names, from the sidecar of the results
    file ``path`` (``<name>_machines.csv``, written by ``bench_bullet.py``; empty if none)."""
    return _load_sidecar(path, lambda r: r["machine"].split(",")[0])


def load_packages(path: str) -> dict[tuple, set[str]]:
    """The installed versions (``_harness.packages``'s line) that ran the pieces of each
    attempt, keyed as :func:`load_machines`; attempts from before the sidecar recorded them
    (session 22) are absent."""
    return _load_sidecar(path, lambda r: r.get("packages") or "")


def _load_sidecar(path: str, value: Callable[[dict], str]) -> dict[tuple, set[str]]:
    """``value(row)`` of the machines sidecar's rows, by attempt (empty values dropped)."""
    side = machines_path(path)
    if not os.path.exists(side):
        return {}
    out: dict[tuple, set[str]] = defaultdict(set)
    with open(side, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["lib"], r["algo"], r["env"], int(r["seed"]), int(r["budget"]), r["attempt"])
            found = value(r)
            if found:
                out[key].add(found)
    return dict(out)


def machines(runs: dict[tuple, list[dict]], recorded: dict[tuple, set[str]]) -> str:
    """Markdown list, one line per algorithm and task: for each library, the machines of
    the runs in the table and how many runs each ran ("not recorded" before the sidecar)."""
    groups: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (lib, algo, env, seed, budget), rs in sorted(runs.items()):
        names = recorded.get((lib, algo, env, seed, budget, rs[-1]["attempt"]), set())
        groups[(algo, env, budget)][lib].append(" + ".join(sorted(names)) or "not recorded")
    lines = []
    for (algo, env, _budget), by_lib in sorted(groups.items()):
        parts = [
            f"{LIB_NAMES[lib]}: "
            + "; ".join(f"{m} ({n})" for m, n in sorted(Counter(by_lib[lib]).items()))
            for lib in ("machina", "sb3")
            if by_lib.get(lib)
        ]
        lines.append(f"- {algo.upper()} {env}: " + ", ".join(parts))
    return "\n".join(lines)


def check_path(path: str) -> str:
    """The same-machine check file of the results file ``path``: ``<name>_check.csv``."""
    return _beside(path, "check")


def _beside(path: str, what: str) -> str:
    """``<name>_<what>.csv`` beside the results file ``<name>.csv``."""
    return f"{os.path.splitext(path)[0]}_{what}.csv"


def segment_cpu(rs: list[dict], lo: int, hi: int, slack: int = 1_500) -> float:
    """CPU milliseconds per env step between a run's evaluations at ``lo`` and ``hi`` env
    steps (the first evaluation within ``slack`` steps past each mark: machina's off-policy
    loops evaluate when an iteration of whole episodes ends); NaN when the run has none."""

    def at(mark: int) -> dict | None:
        return next((r for r in rs if mark <= r["steps"] <= mark + slack), None)

    a, b = at(lo), at(hi)
    if a is None or b is None or b["steps"] <= a["steps"]:
        return math.nan
    return 1e3 * (b["cpu_s"] - a["cpu_s"]) / (b["steps"] - a["steps"])


def machine_check(
    runs: dict[tuple, list[dict]],
    check: dict[tuple, list[dict]],
    lo: int,
    hi: int,
    slack: int = 1_500,
) -> str:
    """Markdown table: for each algorithm, task and seed rerun in ``check``, both libraries'
    CPU ms per env step between ``lo`` and ``hi`` env steps, rerun (one machine, side by
    side) and in the reported ``runs``, and machina's ratio to stable-baselines3 in each.
    A reported ratio far from the rerun's means the reported runs' machines differed.
    ``slack`` as :func:`segment_cpu`'s."""
    lines = [
        "| algo | task | seed | machina ms/step: rerun, reported | stable-baselines3 "
        "ms/step: rerun, reported | CPU vs SB3: rerun (one machine), reported |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    reported, reran = (
        {(lib, algo, env, seed): rs for (lib, algo, env, seed, _), rs in found.items()}
        for found in (runs, check)
    )
    for algo, env, seed in sorted({key[1:] for key in reran}):
        now, then = {}, {}
        for lib in ("machina", "sb3"):
            for found, out in ((reran, now), (reported, then)):
                rs = found.get((lib, algo, env, seed))
                out[lib] = segment_cpu(rs, lo, hi, slack) if rs else math.nan

        def ratio(d: dict[str, float]) -> str:
            r = d["machina"] / d["sb3"]
            return "n/a" if math.isnan(r) else f"{r:.2f}x"

        lines.append(
            f"| {algo.upper()} | {env} | {seed} | {_fmt(now['machina'])}, "
            f"{_fmt(then['machina'])} | {_fmt(now['sb3'])}, {_fmt(then['sb3'])} | "
            f"{ratio(now)}, {ratio(then)} |"
        )
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"


def table(runs: dict[tuple, list[dict]]) -> str:
    """The README table (Markdown): per algorithm, task and library, the finished seeds'
    final return (median [min, max]), training wall-clock and CPU seconds (medians; both
    without evaluations), env steps per wall-clock and per CPU second, and machina's median
    wall-clock and CPU seconds over stable-baselines3's."""
    groups: dict[tuple, dict[str, list[list[dict]]]] = defaultdict(lambda: defaultdict(list))
    for (lib, algo, env, _seed, budget), rs in sorted(runs.items()):
        groups[(algo, env, budget)][lib].append(rs)
    lines = [
        "| algo | task | budget | library | seeds done (partial) | final return median "
        "[min, max] | wall-clock s | CPU s | env steps / s | env steps / CPU s "
        "| partial runs: last eval @ steps | wall-clock vs SB3 | CPU vs SB3 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (algo, env, budget), by_lib in sorted(groups.items()):
        med: dict[str, dict[str, float]] = {}
        rows = {}
        for lib in ("machina", "sb3"):
            done = [rs for rs in by_lib.get(lib, []) if rs[-1]["final"]]
            partial = len(by_lib.get(lib, [])) - len(done)
            last = ", ".join(
                f"{_fmt(rs[-1]['eval_return'])} @{rs[-1]['steps'] // 1000}k"
                for rs in by_lib.get(lib, [])
                if not rs[-1]["final"]
            )
            finals = [rs[-1]["eval_return"] for rs in done]

            def median_of(values: list[float]) -> float:
                return statistics.median(values) if values else math.nan

            m = {
                "wall": median_of([rs[-1]["wall_s"] for rs in done]),
                "cpu": median_of([rs[-1]["cpu_s"] for rs in done]),
                "rate": median_of([rs[-1]["steps"] / rs[-1]["wall_s"] for rs in done]),
                "cpu_rate": median_of([rs[-1]["steps"] / rs[-1]["cpu_s"] for rs in done]),
            }
            med[lib] = m
            ret = (
                f"{_fmt(statistics.median(finals))} [{_fmt(min(finals))}, {_fmt(max(finals))}]"
                if finals
                else "n/a"
            )
            rows[lib] = (
                f"| {algo.upper()} | {env} | {budget / 1000:g}k | {LIB_NAMES[lib]} | "
                f"{len(done)} ({partial}) | {ret} | {_fmt(m['wall'])} | {_fmt(m['cpu'])} | "
                f"{_fmt(m['rate'])} | {_fmt(m['cpu_rate'])} | {last} |"
            )

        def ratio(key: str, med: dict[str, dict[str, float]] = med) -> str:
            r = med["machina"][key] / med["sb3"][key]
            return "n/a" if math.isnan(r) else f"{r:.2f}x"

        lines.append(rows["machina"] + f" {ratio('wall')} | {ratio('cpu')} |")
        lines.append(rows["sb3"] + "  |  |")
    return "\n".join(lines)


def _band(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray):
    """Median, min and max over runs on ``grid``, each run interpolated within its span."""
    vals = np.full((len(curves), len(grid)), np.nan)
    for i, (x, y) in enumerate(curves):
        inside = (grid >= x[0]) & (grid <= x[-1])
        vals[i, inside] = np.interp(grid[inside], x, y)
    ok = ~np.all(np.isnan(vals), axis=0)
    with np.errstate(all="ignore"):
        return (
            grid[ok],
            np.nanmedian(vals[:, ok], axis=0),
            np.nanmin(vals[:, ok], axis=0),
            np.nanmax(vals[:, ok], axis=0),
        )


def plots(runs: dict[tuple, list[dict]], out_dir: str) -> list[str]:
    """One PNG per (algo, task, budget): return against env steps and against wall-clock."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, dict[str, list[list[dict]]]] = defaultdict(lambda: defaultdict(list))
    for (lib, algo, env, _seed, budget), rs in sorted(runs.items()):
        groups[(algo, env, budget)][lib].append(rs)
    written = []
    for (algo, env, budget), by_lib in sorted(groups.items()):
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
        for lib, run_rows in by_lib.items():
            n_done = sum(bool(rs[-1]["final"]) for rs in run_rows)
            label = f"{LIB_NAMES[lib]} ({n_done} seeds" + (
                f", {len(run_rows) - n_done} partial)" if len(run_rows) > n_done else ")"
            )
            for ax, xkey in zip(axes, ("steps", "wall_s", "cpu_s")):
                curves = [
                    (
                        np.array([r[xkey] for r in rs], float),
                        np.array([r["eval_return"] for r in rs]),
                    )
                    for rs in run_rows
                ]
                hi = max(c[0][-1] for c in curves)
                grid = np.linspace(0, hi, 200)
                x, med, lo, up = _band(curves, grid)
                ax.plot(x, med, color=COLORS[lib], label=label)
                ax.fill_between(x, lo, up, color=COLORS[lib], alpha=0.2)
        axes[0].set_xlabel("env steps")
        axes[1].set_xlabel("training wall-clock (s)")
        axes[2].set_xlabel("training CPU seconds")
        for ax in axes:
            ax.set_ylabel("deterministic eval return")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{algo.upper()} on {env}, {budget / 1000:g}k steps: median and range")
        fig.tight_layout()
        short = env.replace("BulletEnv-v0", "").lower()
        path = os.path.join(out_dir, f"bullet_{algo}_{short}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def report(path: str, out_dir: str) -> None:
    runs = load(path)
    print(table(runs))
    print("\nMachines that ran the runs (number of runs):\n")
    print(machines(runs, load_machines(path)))
    print("\nInstalled versions of the runs (number of runs):\n")
    print(machines(runs, load_packages(path)))
    if os.path.exists(check_path(path)):
        check = load(check_path(path))
        print("\nSame-machine check of the CPU ratios:")
        for algo, (lo, hi, slack) in CHECK_SEGMENT.items():
            part = {k: rs for k, rs in check.items() if k[1] == algo}
            if part:
                print(f"\n{algo.upper()}, env steps {lo // 1000}k-{hi // 1000}k:\n")
                print(machine_check(runs, part, lo, hi, slack))
    for p in plots(runs, out_dir):
        print(f"wrote {p}")


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMITTED_CSV = os.path.join(REPO, "assets", "bullet_results.csv")


def default_out_dir(csv_path: str) -> str:
    """Where the plots of ``csv_path`` go: ``assets/`` for the committed CSV, else the CSV's
    own folder, so that a smoke or tuning run never overwrites the committed plots."""
    if os.path.abspath(csv_path) == os.path.abspath(COMMITTED_CSV):
        return os.path.join(REPO, "assets")
    return os.path.dirname(os.path.abspath(csv_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", nargs="?", default=COMMITTED_CSV, help="bench_bullet.py's CSV")
    parser.add_argument(
        "--out_dir", default=None, help="plots' folder (default: assets/ for the committed "
        "CSV, else the CSV's folder)",
    )  # fmt: skip
    args = parser.parse_args()
    report(args.csv, args.out_dir or default_out_dir(args.csv))


if __name__ == "__main__":
    main()
