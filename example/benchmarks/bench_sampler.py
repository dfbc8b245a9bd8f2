"""Sampler throughput: EpiSampler against a raw stepping loop and stable-baselines3.

    python example/benchmarks/bench_sampler.py            # full run, table of medians
    python example/benchmarks/bench_sampler.py --quick    # smoke run: few steps, 2 rounds
    python example/benchmarks/bench_sampler.py --clock cpu --only single  # on a shared machine

Env steps per second, policy inference included, with a 64x64 MLP policy for every contender
(``make_pol(..., h_size=64)``; stable-baselines3's ``PPO("MlpPolicy",
policy_kwargs=dict(net_arch=[64, 64]))``), on CartPole-v1 and Pendulum-v1 made by
``gymnasium.make`` (same wrappers for everyone).

In one process, with 1, 8 and 64 environments:

- **raw loop**: the same environments stepped in a Python loop with pre-drawn random actions
  (drawn before the clock starts, so the action sampler is not what is measured), finished
  ones reset, nothing stored and no policy: the physical limit of one process;
- **SB3**: ``model.collect_rollouts`` with ``DummyVecEnv`` of the same environments and
  ``n_steps`` = steps per measurement / envs (no training step);
- **EpiSampler**: ``sampler.sample(pol, max_steps=...)`` with ``num_envs`` environments,
  counting the steps of the whole episodes it returns; once with its default numpy inference
  of the policy (``fast_inference=True``) and once calling the PyTorch policy
  (``fast_inference=False``): the ratios to the other contenders are given for both;
- **user nn.Sequential**: ``EpiSampler`` (default ``fast_inference=True``) with a user's own
  64x64 Tanh net instead of ``make_pol``'s: ``CategoricalPol`` on ``nn.Sequential(Linear,
  Tanh, Linear, Tanh, Linear, Softmax)``, ``GaussianPol`` on ``nn.Sequential(Linear, Tanh,
  Linear, Tanh, PolHead)`` (machina's stochastic head: ``(mean, log_std)``), SB3's own
  activation; its ratio to SB3 is given too.

Worker processes: ``EpiSampler(num_parallel=2)`` against ``num_parallel=1`` (its engine in this
process): 2 workers x 64 envs against 1 x 64 (``num_envs`` is per process: what raising
``num_parallel`` alone does), and 2 x 32 against 1 x 64, 2 x 8 against 1 x 16 (the same
environments split over two processes, so each policy call serves half as many). These need
both cores: run them on an idle machine. Their table also gives the cores used (CPU seconds
of the sampling processes per wall-clock second): about 2 for two workers on an idle machine;
less means the machine was shared and the ratio measures the scheduler, not the sampler.

Every measurement collects about ``--steps`` env steps (a quarter of that with one env);
contenders of one row group alternate
(the order reversed every round), ``--repeats`` rounds, and the ratio is the median over the
rounds of the ratio within a round. Samplers and models are built (and warmed up by one
collection) before the clock starts: their construction is not measured.

``--clock cpu`` times the one-process contenders by this process's CPU time instead of the
wall clock: on a machine shared with other jobs, time spent waiting for a core then counts for
no one, so rates and ratios stay close to an idle machine's (the worker-process rows always
use the wall clock; what they measure is the use of a second core). The full run also draws
``assets/sampler_throughput.png``: steps/s against the number of environments.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings
from collections.abc import Callable

import gymnasium as gym
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import alternate, machine, median, print_table, quiet_sb3  # noqa: E402

from machina.nets._layers import PolHead  # noqa: E402
from machina.pols import CategoricalPol, GaussianPol, make_pol  # noqa: E402
from machina.samplers import EpiSampler  # noqa: E402

ENV_IDS = ("CartPole-v1", "Pendulum-v1")
NUM_ENVS = (1, 8, 64)
# (num_parallel, num_envs) pairs compared, the first against the second: num_envs is per
# process, so 2 x 64 against 1 x 64 is what raising num_parallel alone does; 2 x 32 against
# 1 x 64 and 2 x 8 against 1 x 16 split the same environments over two processes.
PARALLEL = (((2, 64), (1, 64)), ((2, 32), (1, 64)), ((2, 8), (1, 16)))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAW = "raw loop (random actions, no policy)"
SB3_NAME = "stable-baselines3 collect_rollouts"
NO_FAST = "EpiSampler fast_inference=False"
USER = "EpiSampler, user nn.Sequential policy (64x64 Tanh)"
#: the clocks of ``--clock``: wall-clock seconds, or this process's CPU seconds
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def steps_for(num_envs: int, steps: int) -> int:
    """Steps per measurement: fewer with one env, where every contender is slowest."""
    return steps // 4 if num_envs == 1 else steps


class RawLoop:
    """The same environments stepped with pre-drawn random actions and no policy."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        steps: int,
        seed: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.clock = clock
        self.envs = [gym.make(env_id) for _ in range(num_envs)]
        for i, env in enumerate(self.envs):
            env.reset(seed=seed + i)
            env.action_space.seed(seed + i)
        space = self.envs[0].action_space
        self.steps = steps
        self.actions = [space.sample() for _ in range(steps + num_envs)]

    def __call__(self) -> float:
        envs, actions = self.envs, self.actions
        count = 0
        start = self.clock()
        while count < self.steps:
            for env in envs:
                _, _, term, trunc, _ = env.step(actions[count])
                count += 1
                if term or trunc:
                    env.reset()
        return count / (self.clock() - start)


def user_pol(env: gym.Env, h_size: int = 64) -> CategoricalPol | GaussianPol:
    """A policy on a user's own ``nn.Sequential`` MLP (Tanh, as SB3's default), not
    ``make_pol``'s ``PolNet``: a softmax output for Discrete actions, machina's stochastic
    head (``(mean, log_std)``) for Box ones."""
    ob_dim = env.observation_space.shape[0]
    body = [nn.Linear(ob_dim, h_size), nn.Tanh(), nn.Linear(h_size, h_size), nn.Tanh()]
    if isinstance(env.action_space, gym.spaces.Discrete):
        net = nn.Sequential(*body, nn.Linear(h_size, int(env.action_space.n)), nn.Softmax(-1))
        return CategoricalPol(env.observation_space, env.action_space, net)
    net = nn.Sequential(*body, PolHead(h_size, env.action_space, "user net"))
    return GaussianPol(env.observation_space, env.action_space, net)


class Machina:
    """``EpiSampler.sample`` with a 64x64 MLP policy (``make_pol``'s, or with ``user_net``
    a user's ``nn.Sequential``: see :func:`user_pol`)."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        steps: int,
        num_parallel: int = 1,
        seed: int = 0,
        clock: Callable[[], float] = time.perf_counter,
        fast_inference: bool = True,
        user_net: bool = False,
    ) -> None:
        self.clock = clock
        env = gym.make(env_id)
        torch.manual_seed(seed)
        if user_net:
            self.pol = user_pol(env)
        else:
            self.pol = make_pol(env.observation_space, env.action_space, h_size=64)
        self.sampler = EpiSampler(
            functools.partial(gym.make, env_id),
            self.pol,
            num_parallel=num_parallel,
            num_envs=num_envs,
            seed=seed,
            fast_inference=fast_inference,
        )
        self.steps = steps
        self.cores: list[float] = []  # CPU seconds of the sampling processes per wall second
        self()  # warm-up: first resets, first policy call, worker caches
        self.cores.clear()

    def cpu_seconds(self) -> float:
        """CPU time so far of this process and of the sampler's workers (Linux /proc)."""
        times = os.times()
        total = times.user + times.system
        pool = self.sampler._pool  # benchmark only: the worker processes' ids
        for worker in pool.workers if pool is not None else ():
            with open(f"/proc/{worker.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def __call__(self) -> float:
        cpu = self.cpu_seconds()
        wall = time.perf_counter()
        start = self.clock()
        epis = self.sampler.sample(self.pol, max_steps=self.steps)
        elapsed = self.clock() - start
        self.cores.append((self.cpu_seconds() - cpu) / (time.perf_counter() - wall))
        return sum(len(epi["rews"]) for epi in epis) / elapsed

    def close(self) -> None:
        self.sampler.close()


class SB3:
    """stable-baselines3 PPO's ``collect_rollouts`` (its value net and GAE included)."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        steps: int,
        seed: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv

        venv = DummyVecEnv([functools.partial(gym.make, env_id)] * num_envs)
        n_steps = max(steps // num_envs, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # batch size vs. n_steps * n_envs: unused here
            self.model = PPO(
                "MlpPolicy",
                venv,
                n_steps=n_steps,
                batch_size=min(64, n_steps * num_envs),
                policy_kwargs=dict(net_arch=[64, 64]),
                device="cpu",
                seed=seed,
            )
        self.steps = n_steps * num_envs
        self.clock = clock
        quiet_sb3(self.model)
        _, self.callback = self.model._setup_learn(10**12, None)
        self.callback.on_training_start(locals(), globals())
        self()  # warm-up

    def __call__(self) -> float:
        model = self.model
        start = self.clock()
        model.collect_rollouts(model.env, self.callback, model.rollout_buffer, model.n_steps)
        return self.steps / (self.clock() - start)

    def close(self) -> None:
        self.model.env.close()


def paired_ratio(results: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of the ratio within a round."""
    return median([a / b for a, b in zip(results[num], results[den])])


def bench_single(
    env_id: str,
    num_envs: int,
    steps: int,
    repeats: int,
    rows: list,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    steps = steps_for(num_envs, steps)
    contenders = {
        "EpiSampler": Machina(env_id, num_envs, steps, clock=clock),
        NO_FAST: Machina(env_id, num_envs, steps, clock=clock, fast_inference=False),
        USER: Machina(env_id, num_envs, steps, clock=clock, user_net=True),
        RAW: RawLoop(env_id, num_envs, steps, clock=clock),
        SB3_NAME: SB3(env_id, num_envs, steps, clock=clock),
    }
    try:
        results = alternate(contenders, repeats)
    finally:
        for c in contenders.values():
            if hasattr(c, "close"):
                c.close()
    targets = {
        RAW: ">= 0.80" if num_envs == 64 else "",
        SB3_NAME: ">= 3" if num_envs in (1, 8) else "",
    }
    for name, rates in results.items():
        ratio = 1.0 if name == "EpiSampler" else paired_ratio(results, "EpiSampler", name)
        rows.append([env_id, num_envs, name, median(rates), ratio, targets.get(name, "")])
    for name in (RAW, SB3_NAME):  # the same ratios without the numpy inference
        ratio = paired_ratio(results, NO_FAST, name)
        rows.append([env_id, num_envs, f"{name} (vs fast_inference=False)", "", ratio, ""])
    for name in (RAW, SB3_NAME):  # and with the user's nn.Sequential policy
        ratio = paired_ratio(results, USER, name)
        target = targets[name] if name == SB3_NAME else ""
        rows.append([env_id, num_envs, f"{name} (vs user nn.Sequential)", "", ratio, target])


def bench_parallel(env_id: str, steps: int, repeats: int, rows: list, loads: list) -> None:
    for (p2, n2), (p1, n1) in PARALLEL:
        two = f"EpiSampler num_parallel={p2} x {n2} envs"
        one = f"EpiSampler num_parallel={p1} x {n1} envs"
        contenders = {
            two: Machina(env_id, n2, steps, num_parallel=p2),
            one: Machina(env_id, n1, steps, num_parallel=p1),
        }
        loads.append(os.getloadavg()[0])
        try:
            results = alternate(contenders, repeats)
        finally:
            for c in contenders.values():
                c.close()
        loads.append(os.getloadavg()[0])
        cores = {name: median(c.cores) for name, c in contenders.items()}
        rows.append([env_id, p1 * n1, one, median(results[one]), 1.0, cores[one], ""])
        ratio = paired_ratio(results, two, one)
        rows.append([env_id, p2 * n2, two, median(results[two]), ratio, cores[two], ">= 1.6"])


def plot(rows: list, path: str, clock: str) -> None:
    """Steps/s against the number of environments, one panel per environment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_ids = list(dict.fromkeys(row[0] for row in rows))
    styles = {
        "EpiSampler": dict(color="tab:blue", marker="o", label="machina EpiSampler"),
        NO_FAST: dict(color="tab:blue", marker="o", linestyle=":", mfc="none", label=NO_FAST),
        SB3_NAME: dict(color="tab:orange", marker="s", label="stable-baselines3 rollouts"),
        RAW: dict(color="gray", marker="^", linestyle="--", label=RAW),
    }
    fig, axes = plt.subplots(1, len(env_ids), figsize=(5.2 * len(env_ids), 4), squeeze=False)
    for ax, env_id in zip(axes[0], env_ids):
        for name, style in styles.items():
            points = sorted((row[1], row[3]) for row in rows if row[0] == env_id and row[2] == name)
            if points:
                ax.plot(*zip(*points), **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(NUM_ENVS, [str(n) for n in NUM_ENVS])
        ax.minorticks_off()
        ax.set_xlabel("environments in one process")
        ax.set_ylabel(f"env steps / s ({'CPU' if clock == 'cpu' else 'wall-clock'} time)")
        ax.set_title(f"{env_id}, 64x64 MLP policy")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, 2 rounds")
    parser.add_argument("--steps", type=int, default=None, help="env steps per measurement")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5)")
    parser.add_argument(
        "--only", choices=("single", "parallel"), default=None, help="one part of the table"
    )
    parser.add_argument(
        "--envs", default=",".join(ENV_IDS), help="environment ids, comma-separated"
    )
    parser.add_argument(
        "--num-envs",
        default=",".join(map(str, NUM_ENVS)),
        help="environments per process of the one-process rows, comma-separated",
    )
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="time the one-process contenders by wall-clock or by this process's CPU time",
    )
    parser.add_argument(
        "--plot",
        default=None,
        help="PNG path (default assets/sampler_throughput.png; --quick: none; '' for none)",
    )
    args = parser.parse_args()
    if args.plot is None and not args.quick:
        args.plot = os.path.join(REPO, "assets", "sampler_throughput.png")
    steps = args.steps or (2_048 if args.quick else 32_768)
    repeats = args.repeats or (2 if args.quick else 5)
    env_ids = [e for e in args.envs.split(",") if e]
    torch.set_num_threads(1)

    rows: list = []
    parallel_rows: list = []
    loads: list = []
    if args.only in (None, "single"):
        for env_id in env_ids:
            for num_envs in [int(n) for n in args.num_envs.split(",") if n]:
                bench_single(env_id, num_envs, steps, repeats, rows, CLOCKS[args.clock])
                print(f"done: {env_id}, {num_envs} envs", file=sys.stderr, flush=True)
    if args.only in (None, "parallel"):
        for env_id in env_ids:
            bench_parallel(env_id, steps, repeats, parallel_rows, loads)
            print(f"done: {env_id}, worker processes", file=sys.stderr, flush=True)

    if rows:
        print_table(
            f"Sampler throughput, one process ({repeats} rounds, ~{steps:,} steps per measurement, "
            f"{args.clock} clock)",
            ["env", "envs", "contender", "steps/s", "ratio", "target"],
            rows,
        )
    if parallel_rows:
        print_table(
            f"Sampler throughput, worker processes ({repeats} rounds, ~{steps:,} steps per "
            "measurement)",
            ["env", "envs", "contender", "steps/s", "ratio", "cores used", "target"],
            parallel_rows,
        )
    print(
        "\nsteps/s: median over the rounds. ratio: EpiSampler's rate (fast_inference=True, "
        "its default; rows '(vs fast_inference=False)': without it) over the contender's "
        "(for worker processes: over num_parallel=1's; rows '(vs user nn.Sequential)': "
        "EpiSampler with the user's nn.Sequential policy), the median of the ratios within a "
        "round. One torch thread in this process for every contender "
        "(torch.set_num_threads(1)); sampler workers run one thread each. A 64x64 MLP "
        "policy everywhere; stable-baselines3's collect_rollouts also runs its 64x64 value "
        "net and computes GAE, as it does in training. 1 env: ~"
        f"{steps_for(1, steps):,} steps per measurement."
    )
    if loads:
        print(
            "cores used: CPU seconds of this process and the workers per wall-clock second "
            "(median); about 1 and 2 on an idle machine. Below that, the machine was shared "
            "and the worker ratio measures the scheduler's share, not the sampler (with "
            "autogroup scheduling a session gets one share however many processes it runs). "
            "Load average (1 min) around these measurements: "
            + ", ".join(f"{x:.2f}" for x in loads)
            + f" on {os.cpu_count()} cores."
        )
    if rows and args.plot:
        plot(rows, args.plot, args.clock)
        print(f"\nPlot: {args.plot}")
    print(f"\nMachine: {machine()}, load average (1 min) at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
