"""Cost of one PPO update: ``ppo_clip.train`` against the same update written plainly.

    python example/benchmarks/bench_update.py                      # HalfCheetah, 9 rounds
    python example/benchmarks/bench_update.py --env HopperBulletEnv-v0 --sde
    python example/benchmarks/bench_update.py --quick              # smoke run: 2 rounds
    python example/benchmarks/bench_update.py --split              # a whole iteration's CPU

The batch: ``--steps`` (2,000) env steps of the task sampled once by ``EpiSampler`` with an
untrained 64x64 policy (``make_pol``; gSDE with ``--sde``, as PPO's Hopper entry in
``example/hyperparams.py``) and the estimators of ``run_ppo.py``. One update: 10 epochs
of 64-step minibatches, policy then value network, each with its own fused Adam and
gradient norm clipped at 0.5 (the PyBullet entries' settings).

Contenders, alternating round by round, each from the same initial networks and optimiser
states and over the same minibatches (``Traj.iterate`` reseeded):

- *machina*: ``ppo_clip.train``. Its losses read the distribution parameters through
  ``pol.pd_params`` and ``optimizer_step`` clips with ``torch.nn.utils``' arithmetic
  without the per-call grouping of ``clip_grad_norm_`` (see ``machina.utils.training``).
- *plain*: the loop anyone would write with machina's networks and no checks: the
  policy's forward pass for the parameters (it also draws an action and converts it for
  the environment), the clipped surrogate, ``backward``,
  ``torch.nn.utils.clip_grad_norm_``, ``step``; then the value network's ``0.5 * MSE`` the
  same way. machina's update does more per minibatch: it refuses a non-finite loss or
  gradient before the optimiser steps (``optimizer_step``: one host read of the loss and
  one of the gradient norm) and masks the losses (``out_masks``, for sequence batches);
  the two cheaper paths above pay for that.

A check asserts that both end with equal parameters (float32 tolerances: the two compute
the same losses from the same parameters, clipped by the same arithmetic). Times are CPU
seconds of the process (``time.process_time``) per env step of the batch, on one torch
thread, medians over the rounds after a warm-up round, and their ratio.

``--split``: where one whole PPO iteration's CPU goes, per env step, beside
stable-baselines3's. Each contender trains as ``bench_bullet.py`` does (its own code:
``machina_ppo_parts`` / ``machina_ppo_traj`` / ``machina_ppo_update`` and ``sb3_setup``),
one iteration per round, alternating, 3 rounds after a warm-up one (``--repeats``):

- *machina* with the task's entry in ``example/hyperparams.py``; with 10 epochs of 64
  (HalfCheetah's previous entry v7: as many minibatches as 20 epochs of 128, half the
  samples each); with rl-zoo's PPO recipe for these ids in machina's terms (256x256
  networks, gSDE with one matrix per environment, 8 environments of whole episodes, 20
  epochs of 128-step minibatches); and with two cheaper forms of the recipe (minibatches
  of 256 with one optimiser over both networks; the same with a 128x128 value network).
  Columns: sampling (``EpiSampler.sample`` with the observation prepro), estimators (the
  normalisers' updates, ``compute_vs`` ... ``register_epis``), update (``ppo_clip.train``).
- *stable-baselines3* with rl-zoo's settings (``bench_bullet.SB3``: 16 environments x 512
  steps, ``VecNormalize``): one ``learn`` call of one rollout, split into ``train`` (timed
  inside) and the rest (collection, its estimators and bookkeeping), in the sampling column.

The ratio column divides each contender's total by stable-baselines3's: the CPU budget of
issue 13's target (0.7x) per env step, without the evaluations (``bench_bullet.py`` excludes
them from ``cpu_s`` too).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import alternate, machine, median, print_table  # noqa: E402

import machina.envs  # noqa: E402, F401  (registers the PyBullet ids with gymnasium)
from machina.algos import ppo_clip  # noqa: E402
from machina.pols import make_pol  # noqa: E402
from machina.samplers import EpiSampler  # noqa: E402
from machina.traj import Traj  # noqa: E402
from machina.traj import epi_functional as ef  # noqa: E402
from machina.vfuncs import make_vf  # noqa: E402

EPOCH, BATCH_SIZE, CLIP, MAX_GRAD_NORM = 10, 64, 0.2, 0.5


def make_setup(env_id: str, steps: int, sde: bool, seed: int = 0):
    """Networks, optimisers and one registered batch of ``steps`` env steps."""
    torch.manual_seed(seed)
    env = gymnasium.make(env_id)
    pol = make_pol(
        env.observation_space,
        env.action_space,
        h_size=64,
        log_std_init=-2.0 if sde else 0.0,
        sde_sample_freq=4 if sde else None,
    )
    vf = make_vf(env.observation_space, h_size=64)
    with EpiSampler(lambda: gymnasium.make(env_id), pol, num_envs=2, seed=seed) as sampler:
        epis = sampler.sample(pol, max_steps=steps)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_vs(traj, vf)
    traj = ef.compute_rets(traj, 0.99, 0.95)
    traj = ef.compute_advs(traj, 0.99, 0.95)
    traj = ef.centerize_advs(traj)
    traj = ef.compute_h_masks(traj)
    traj.register_epis()
    return pol, vf, traj


def fresh(pol: torch.nn.Module, vf: torch.nn.Module):
    """Copies of the networks with new fused Adam optimisers (the same initial state)."""
    pol, vf = copy.deepcopy(pol), copy.deepcopy(vf)
    optim_pol = torch.optim.Adam(pol.parameters(), 3e-4, fused=True)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3, fused=True)
    return pol, vf, optim_pol, optim_vf


def machina_update(traj: Traj, pol, vf, optim_pol, optim_vf) -> None:
    ppo_clip.train(
        traj=traj,
        pol=pol,
        vf=vf,
        optim_pol=optim_pol,
        optim_vf=optim_vf,
        epoch=EPOCH,
        batch_size=BATCH_SIZE,
        clip_param=CLIP,
        ent_beta=0.0,
        max_grad_norm=MAX_GRAD_NORM,
        log_enable=False,
    )


def plain_step(optim: torch.optim.Optimizer, loss: torch.Tensor, module: torch.nn.Module) -> None:
    optim.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), MAX_GRAD_NORM)
    optim.step()


def plain_update(traj: Traj, pol, vf, optim_pol, optim_vf) -> None:
    for batch in traj.iterate(BATCH_SIZE, epoch=EPOCH):
        _, _, params = pol(batch["obs"])  # action, action for the env, parameters
        old = {k: batch[k] for k in params}
        log_ratio = pol.pd.llh(batch["acs"], params) - pol.pd.llh(batch["acs"], old)
        ratio = torch.exp(log_ratio)
        advs = batch["advs"]
        surrogate = torch.min(ratio * advs, torch.clamp(ratio, 1 - CLIP, 1 + CLIP) * advs)
        plain_step(optim_pol, -surrogate.mean(), pol)
        vs = vf(batch["obs"])[0]
        plain_step(optim_vf, 0.5 * ((vs - batch["rets"]) ** 2).mean(), vf)


def run(update, traj: Traj, pol, vf, seed: int) -> tuple[float, list[torch.Tensor]]:
    """CPU seconds of one update from fresh copies; the updated parameters."""
    pol, vf, optim_pol, optim_vf = fresh(pol, vf)
    traj.generator.manual_seed(seed)  # the same minibatches for every contender
    start = time.process_time()
    update(traj, pol, vf, optim_pol, optim_vf)
    seconds = time.process_time() - start
    return seconds, [p.detach().clone() for p in (*pol.parameters(), *vf.parameters())]


def check_agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    """Equal parameters after both updates, up to float32 rounding accumulated over the
    update's optimiser steps (Adam's steps are ~lr, so 1e-4 absolute is generous)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if not torch.allclose(x, y, rtol=1e-4, atol=1e-4):
            diff = float((x - y).abs().max())
            raise AssertionError(f"parameter {i}: machina and plain differ by {diff:.3g}")


# --------------------------------------------------------------------------- --split
#: rl-zoo's PPO recipe for the PyBullet ids in machina's terms, on top of the task's entry
#: (bench_bullet.py's docstring, sessions 14-17).
RECIPE: dict[str, Any] = dict(
    h_size=256, pol_lr=3e-5, vf_lr=3e-5, anneal_lr=False, epoch_per_iter=20, batch_size=128,
    clip_param=0.4, lam=0.9, log_std_init=-2.0, sde_sample_freq=4, num_envs=8,
    steps_per_iter=8000, sde_per_env_noise=True,
)  # fmt: skip
_RECIPE_256_JOINT = dict(RECIPE, batch_size=256, joint_step=True, adam_eps=1e-5)
SPLIT_CONTENDERS: dict[str, dict[str, Any]] = {
    "machina, entry": {},
    "machina, entry with 10 epochs of 64 (HalfCheetah's v7)": dict(
        epoch_per_iter=10, batch_size=64
    ),
    "machina, rl-zoo's recipe": RECIPE,
    "machina, recipe, minibatches of 256, joint optimiser": _RECIPE_256_JOINT,
    "machina, the same, value network 128x128": dict(_RECIPE_256_JOINT, vf_h_size=128),
}


class Split(NamedTuple):
    """CPU seconds of one iteration's parts, and its env steps."""

    sample: float
    estimate: float | None  # None: counted in ``sample`` (stable-baselines3's rollout)
    update: float
    steps: int


def machina_iteration(bb: Any, parts: Any, hp: dict[str, Any]) -> Split:
    """One iteration of ``bench_bullet.machina_ppo``'s loop, each part timed."""
    c0 = time.process_time()
    epis = parts.sampler.sample(parts.pol, max_steps=hp["steps_per_iter"])
    c1 = time.process_time()
    traj = bb.machina_ppo_traj(parts, hp, epis)
    c2 = time.process_time()
    bb.machina_ppo_update(parts, hp, traj, hp["clip_param"])
    return Split(c1 - c0, c2 - c1, time.process_time() - c2, traj.num_step)


def sb3_iterations(bb: Any, env_id: str, seed: int) -> tuple[Callable[[], Split], Any]:
    """A closure running one ``learn`` call of one rollout of stable-baselines3's PPO with
    rl-zoo's settings; its ``train`` is timed inside (the rest counts as sampling)."""
    hp = bb.SB3["ppo"][env_id]
    model, env, eval_env, _ = bb.sb3_setup("ppo", env_id, seed, hp)
    eval_env.close()
    steps = hp["n_envs"] * hp["n_steps"]
    train, spent = model.train, [0.0]

    def timed_train() -> None:
        c0 = time.process_time()
        train()
        spent[0] += time.process_time() - c0

    model.train = timed_train  # the instance's attribute: learn calls self.train()

    def iteration() -> Split:
        spent[0] = 0.0
        c0 = time.process_time()
        model.learn(total_timesteps=steps, reset_num_timesteps=model.num_timesteps == 0)
        total = time.process_time() - c0
        return Split(total - spent[0], None, spent[0], steps)

    return iteration, env


def split_main(env_id: str, repeats: int, seed: int = 0) -> None:
    """Per env step CPU of each contender's iteration parts; see the module docstring."""
    import bench_bullet as bb

    if env_id not in bb.SB3["ppo"]:
        raise SystemExit(
            f"--env: --split needs rl-zoo's PPO settings for the task, known for "
            f"{sorted(bb.SB3['ppo'])}; got {env_id!r}"
        )
    parts, iterations = [], {}
    for name, overrides in SPLIT_CONTENDERS.items():
        hp = bb.machina_hp("ppo", env_id, overrides)
        p = bb.machina_ppo_parts(env_id, seed, hp)
        parts.append(p)
        iterations[name] = lambda p=p, hp=hp: machina_iteration(bb, p, hp)
    sb3, sb3_env = sb3_iterations(bb, env_id, seed)
    iterations["stable-baselines3, rl-zoo"] = sb3
    try:
        splits = alternate(iterations, repeats + 1)
    finally:
        for p in parts:
            p.sampler.close()
        sb3_env.close()

    def per_step(values: list[Split], field: str) -> float:  # us per env step, median
        return median([(getattr(v, field) or 0.0) / v.steps * 1e6 for v in values[1:]])

    totals, rows = {}, []
    for name, values in splits.items():
        cols = {f: per_step(values, f) for f in ("sample", "estimate", "update")}
        totals[name] = sum(cols.values())
        estimate = "in sampling" if values[0].estimate is None else cols["estimate"]
        steps = median([v.steps for v in values[1:]])
        rows.append([name, steps, cols["sample"], estimate, cols["update"], totals[name]])
    reference = totals["stable-baselines3, rl-zoo"]
    print(f"machine: {machine()}")
    print_table(
        f"One PPO iteration on {env_id}: CPU us per env step (median of {repeats} rounds)",
        ["contender", "env steps", "sampling", "estimators", "update", "total", "vs SB3"],
        [[*row, row[-1] / reference] for row in rows],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="HalfCheetahBulletEnv-v0")
    parser.add_argument("--sde", action="store_true", help="gSDE policy (Hopper's PPO entry)")
    parser.add_argument("--steps", type=int, default=2000, help="env steps in the batch")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 9)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds")
    parser.add_argument(
        "--split", action="store_true", help="a whole iteration's CPU by part, beside SB3's"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.split:
        split_main(args.env, args.repeats or (1 if args.quick else 3))
        return
    repeats = args.repeats or (2 if args.quick else 9)

    pol, vf, traj = make_setup(args.env, args.steps, args.sde)
    seed = 0
    _, machina_params = run(machina_update, traj, pol, vf, seed)
    _, plain_params = run(plain_update, traj, pol, vf, seed)
    check_agreement(machina_params, plain_params)

    times = alternate(
        {
            "machina": lambda: run(machina_update, traj, pol, vf, seed)[0],
            "plain": lambda: run(plain_update, traj, pol, vf, seed)[0],
        },
        repeats + 1,
    )
    times = {name: t[1:] for name, t in times.items()}  # the first round warms up
    n = traj.num_step
    per_step = {name: median(t) / n * 1e3 for name, t in times.items()}
    print(f"machine: {machine()}")
    print_table(
        f"PPO update on {args.env}{' (gSDE)' if args.sde else ''}, {n} env steps, "
        f"{EPOCH} epochs of {BATCH_SIZE}: CPU ms per env step (median of {repeats})",
        ["contender", "ms / env step", "vs plain"],
        [[name, v, v / per_step["plain"]] for name, v in per_step.items()],
    )


if __name__ == "__main__":
    main()
