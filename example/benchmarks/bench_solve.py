"""Time to solve CartPole-v1: machina's PPO against stable-baselines3's, side by side.

    python example/benchmarks/bench_solve.py            # 3 seeds each, table + plot
    python example/benchmarks/bench_solve.py --quick    # smoke run: 1 seed, small cap
    python example/benchmarks/bench_solve.py --ablation # + machina without each choice below

Both contenders train PPO on CartPole-v1 until a deterministic evaluation returns >= 475, on
one torch thread, alternating seed by seed (machina first on even seeds, stable-baselines3
first on odd ones) so that the machine's slow and fast moments fall on both alike.

Protocol, the same for both:

- imports and first calls are warmed up once before any run; each run's clock starts
  before its environments and networks are built;
- every ``--eval_every`` training env steps (checked when the policy has just been updated:
  after each machina iteration, at the start of each stable-baselines3 rollout), the policy
  plays 10 deterministic episodes on a separate evaluation environment (10 copies, one
  episode each); the evaluation's wall time is counted, its steps are not; the run stops
  at the first mean return >= 475;
- a run that has not solved after ``--max_steps`` training env steps is reported as not
  solved (and counts as infinitely slow in the medians).

stable-baselines3 runs rl-zoo's hyperparameters for CartPole-v1 (8 envs, n_steps 32, batch
256, gae_lambda 0.8, gamma 0.98, 20 epochs, ent_coef 0, learning rate and clip range linear
from 1e-3 and 0.2 to 0 over the run) and evaluates with its ``evaluate_policy``. The default
cap is rl-zoo's budget for CartPole-v1, 1e5 steps, so its schedules are exactly rl-zoo's.
machina runs the README's loop (``EpiSampler`` with ``num_envs``, the ``ef`` estimators,
``ppo_clip.train``) with the hyperparameters in ``MACHINA`` below, which are the defaults of
``example/run_ppo.py`` (4 envs, 512 steps per iteration rounded up to whole episodes, 20
epochs of minibatches of 512 steps, at most 2 per epoch, policy lr 3e-3, value lr 1e-2, both
Adam with ``fused=True``, gamma 0.99, lambda 0.97 for the advantages and the value targets
(TD(lambda) returns, ``ef.compute_rets(traj, gamma, lam)``), clip 0.2, no entropy bonus,
gradient norm 0.5, 64x64 nets), and evaluates with a second ``EpiSampler``. They were chosen
on seeds 10-21, 30-41, 100-159 and checked on 200-239, never on the seeds reported here:

- each env finishes the episode it is in, so an iteration holds at least one whole episode
  per env: 4 envs rather than 8 halve the late iterations (4 x 500 steps);
- TD(lambda) value targets instead of Monte-Carlo returns (which, over 500-step episodes at
  gamma 0.99, are noisy targets for a value net trained 20 epochs at lr 1e-2), with lambda
  0.97 instead of 0.95: median env steps to solve 9.3k -> 7.5k on seeds 200-239 (seeds
  with more than 10k: 18 -> 8 of 40); neither change alone helped there;
- fused Adam: the same updates in about 10% less CPU time per env step.

Each run's seed is used for everything: network initialisation, training environments
(``seed + i`` for copy i) and the evaluation environments (``10_000 + seed + i``).

The learning curves (evaluation return against wall-clock seconds) of every run go to
``assets/ppo_cartpole_vs_sb3.png``.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Curve, machine, print_solve_tables, quiet_sb3, run_seeds  # noqa: E402

ENV_ID = "CartPole-v1"
SOLVED = 475.0
EVAL_EPIS = 10
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# machina's hyperparameters: the defaults of example/run_ppo.py.
MACHINA = dict(
    num_envs=4,
    steps_per_iter=512,
    epoch=20,
    batch_size=512,
    max_minibatches=2,
    pol_lr=3e-3,
    vf_lr=1e-2,
    gamma=0.99,
    lam=0.97,
    rets_lam=0.97,  # TD(lambda) value targets; 1.0 gives Monte-Carlo returns
    fused=True,
    clip_param=0.2,
    ent_beta=0.0,
    max_grad_norm=0.5,
    h_size=64,
)

# rl-zoo's hyperparameters for PPO on CartPole-v1 (rl_zoo3/hyperparams/ppo.yml).
SB3 = dict(
    n_envs=8,
    n_timesteps=100_000,
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=1e-3,  # linear to 0 over n_timesteps ("lin_0.001")
    clip_range=0.2,  # linear to 0 over n_timesteps ("lin_0.2")
)


def minibatch_size(num_step: int, batch_size: int, max_minibatches: int) -> int:
    """Steps per minibatch: ``batch_size``, but at most ``max_minibatches`` per epoch.

    Whole episodes make iterations grow as the policy improves (8 episodes of 500 steps);
    the cap keeps those late iterations from costing more updates than early ones.
    """
    return min(num_step, max(batch_size, -(-num_step // max_minibatches)))


def run_machina(seed: int, max_steps: int, eval_every: int, hp: dict | None = None) -> dict:
    """The README's loop until solved with ``hp`` (default ``MACHINA``); evaluation on a
    second sampler."""
    from machina.algos import ppo_clip
    from machina.envs import GymEnv
    from machina.pols import make_pol
    from machina.samplers import EpiSampler
    from machina.traj import Traj
    from machina.traj import epi_functional as ef
    from machina.vfuncs import make_vf

    hp = MACHINA if hp is None else hp
    curve = Curve(eval_every, SOLVED)
    torch.manual_seed(seed)
    env = GymEnv(ENV_ID)
    pol = make_pol(env.observation_space, env.action_space, h_size=hp["h_size"])
    vf = make_vf(env.observation_space, h_size=hp["h_size"])
    optim_pol = torch.optim.Adam(pol.parameters(), hp["pol_lr"], fused=hp["fused"])
    optim_vf = torch.optim.Adam(vf.parameters(), hp["vf_lr"], fused=hp["fused"])
    sampler = EpiSampler(env, pol, num_envs=hp["num_envs"], seed=seed)
    evaluator = EpiSampler(GymEnv(ENV_ID), pol, num_envs=EVAL_EPIS, seed=10_000 + seed)
    steps = 0
    with sampler, evaluator:
        while steps < max_steps:
            traj = Traj()
            traj.add_epis(sampler.sample(pol, max_steps=hp["steps_per_iter"]))
            traj = ef.compute_vs(traj, vf)
            traj = ef.compute_rets(traj, hp["gamma"], hp["rets_lam"])
            traj = ef.compute_advs(traj, hp["gamma"], hp["lam"])
            traj = ef.centerize_advs(traj)
            traj = ef.compute_h_masks(traj)
            traj.register_epis()
            ppo_clip.train(
                traj=traj,
                pol=pol,
                vf=vf,
                optim_pol=optim_pol,
                optim_vf=optim_vf,
                epoch=hp["epoch"],
                batch_size=minibatch_size(traj.num_step, hp["batch_size"], hp["max_minibatches"]),
                clip_param=hp["clip_param"],
                ent_beta=hp["ent_beta"],
                max_grad_norm=hp["max_grad_norm"],
                log_enable=False,
            )
            steps += traj.num_step
            if curve.due(steps) or steps >= max_steps:
                epis = evaluator.sample(pol, max_epis=EVAL_EPIS, deterministic=True)
                if curve.record(steps, float(np.mean([epi["rews"].sum() for epi in epis]))):
                    break
    return curve.result(steps)


def run_sb3(seed: int, max_steps: int, eval_every: int) -> dict:
    """stable-baselines3 PPO with rl-zoo's CartPole-v1 hyperparameters until solved."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    hp = SB3

    def linear(initial: float):
        # rl-zoo's "lin_x": from initial to 0 over the run (progress_remaining from 1 to 0).
        return lambda remaining: initial * remaining

    class Eval(BaseCallback):
        """Evaluate when the policy has just been updated (start of a rollout)."""

        def __init__(self) -> None:
            super().__init__()
            self.stop = False

        def _on_rollout_start(self) -> None:
            if curve.due(self.num_timesteps):
                mean, _ = evaluate_policy(
                    self.model, eval_env, n_eval_episodes=EVAL_EPIS, deterministic=True
                )
                self.stop = curve.record(self.num_timesteps, float(mean))

        def _on_step(self) -> bool:
            return not self.stop

    curve = Curve(eval_every, SOLVED)
    env = make_vec_env(ENV_ID, n_envs=hp["n_envs"], seed=seed)
    eval_env = make_vec_env(ENV_ID, n_envs=EVAL_EPIS, seed=10_000 + seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=hp["n_steps"],
        batch_size=hp["batch_size"],
        gae_lambda=hp["gae_lambda"],
        gamma=hp["gamma"],
        n_epochs=hp["n_epochs"],
        ent_coef=hp["ent_coef"],
        learning_rate=linear(hp["learning_rate"]),
        clip_range=linear(hp["clip_range"]),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    cb = Eval()
    quiet_sb3(model).learn(total_timesteps=max_steps, callback=cb)
    if not curve.solved and (not curve.points or curve.points[-1][1] < model.num_timesteps):
        # The cap is reached: evaluate the policy trained on the last rollout too.
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPIS, deterministic=True)
        curve.record(model.num_timesteps, float(mean))
    env.close()
    eval_env.close()
    return curve.result(model.num_timesteps)


CONTENDERS = {"machina": run_machina, "stable-baselines3": run_sb3}

# Ablations of the two choices above (``--ablation``), each alone: the same runs with
# Monte-Carlo value targets, and with Adam's per-tensor loop instead of the fused kernel.
ABLATIONS = {
    "machina, MC value targets": functools.partial(run_machina, hp={**MACHINA, "rets_lam": 1.0}),
    "machina, unfused Adam": functools.partial(run_machina, hp={**MACHINA, "fused": False}),
}


def plot(runs: dict[str, list[dict]], path: str, seeds: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = iter(["tab:green", "tab:red", "tab:purple"])
    colors = {"machina": "tab:blue", "stable-baselines3": "tab:orange"}
    colors.update({name: next(palette) for name in runs if name not in colors})
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, results in runs.items():
        for seed, res in zip(seeds, results):
            if not res["curve"]:
                continue
            t, _, r = zip(*res["curve"])
            label = name if seed == seeds[0] else None
            ax.plot(t, r, color=colors[name], alpha=0.8, marker=".", label=label)
    ax.axhline(SOLVED, color="gray", linestyle="--", linewidth=1, label=f"solved ({SOLVED:.0f})")
    ax.set_xlabel("wall-clock seconds (evaluation included, 1 torch thread)")
    ax.set_ylabel(f"deterministic eval return ({EVAL_EPIS} episodes)")
    ax.set_title(f"PPO on {ENV_ID}: machina vs stable-baselines3 (rl-zoo), {len(seeds)} seeds")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds per contender")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument(
        "--max_steps",
        type=int,
        default=SB3["n_timesteps"],
        help="env-step cap per run; stable-baselines3's linear schedules span it",
    )
    parser.add_argument("--eval_every", type=int, default=2_000, help="env steps")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 20k-step cap")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also run machina without TD(lambda) value targets, and without fused Adam",
    )
    parser.add_argument(
        "--plot",
        default=None,
        help="PNG path (default assets/ppo_cartpole_vs_sb3.png; --quick: none)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.max_steps = 1, 20_000
    elif args.plot is None:
        args.plot = os.path.join(REPO, "assets", "ppo_cartpole_vs_sb3.png")
    torch.set_num_threads(1)
    contenders = {**CONTENDERS, **(ABLATIONS if args.ablation else {})}
    # Warm-up: imports and first calls (torch's optimiser imports, env registration) are
    # not part of any contender's time.
    for fn in contenders.values():
        fn(0, 1, 10**9)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    runs = run_seeds(contenders, seeds, args.max_steps, args.eval_every)
    ratios = print_solve_tables(
        f"Time to solve {ENV_ID} (deterministic eval return >= {SOLVED:.0f})",
        runs,
        seeds,
        f"eval every {args.eval_every} steps, cap {args.max_steps} steps",
    )
    print(f"\nmachine: {machine()}; torch threads: {torch.get_num_threads()}")
    got = ["n/a (a contender did not solve)" if math.isnan(r) else f"{r:.2f}" for r in ratios]
    print(f"targets: wall-clock ratio <= 0.5 (got {got[0]}), env-steps ratio <= 1 (got {got[2]})")
    if args.plot:
        plot(runs, args.plot, seeds)
        print(f"plot: {os.path.relpath(args.plot, REPO)}")


if __name__ == "__main__":
    main()
