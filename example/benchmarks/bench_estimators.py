"""Estimator throughput: machina's ``ef`` on a Traj against a per-step Python reference.

    python example/benchmarks/bench_estimators.py            # 1,000,000 steps, ~4 minutes
    python example/benchmarks/bench_estimators.py --quick    # smoke run: 20,000 steps

The data: 1,000,000 steps in 5,000 episodes whose lengths are random (uniform cut points,
so mostly short with a long tail), each ending terminated, truncated or both at random
(fixed seed), with ``obs`` (T, 3), ``acs`` (T, 1), ``rews``, ``terms``, ``truncs``,
``dones``, ``a_is.mean`` and precomputed ``vs`` / ``next_vs`` (V(obs) of a fixed linear
function), so that the value network is not what is measured: ``compute_vs`` is left out
on both sides. The episodes carry no ``next_obs``, so ``add_next_obs`` does real work on
both sides (it shifts ``obs``).

Contenders, alternating round by round (the harness), medians and ratios from one run
(9 rounds after an untimed warm-up round; 5 for iterate, whose naive reference is slow):

- *estimators*: ``add_next_obs``, ``compute_rets``, ``compute_advs``, ``centerize_advs`` and
  ``compute_h_masks`` on a Traj holding the episodes as pending (``add_epis`` is timed on
  its own, below), against two per-step Python references on the list of episodes, each
  written to be obviously right, bootstrapping truncated episodes exactly as machina does
  (a check asserts that all agree):
  (a) the original machina's way: a loop over episodes, and over steps for the two
  recursions (returns and GAE), indexing numpy arrays one step at a time; the functions
  that need no recursion (``next_obs`` by shifting ``obs``, ``h_masks``, centring) are
  vectorised per episode, as the original did them;
  (b) the same, but each episode's arrays converted to Python lists first, so that the
  recursions run on Python floats (the fastest plain-Python form).
- *estimators on a list*: the same machina estimators given the list of episode dicts
  instead of a Traj (each call concatenates the keys it reads, except the columns an
  earlier estimator added, which it reads flat), against the numpy-indexing reference.
- *storage*: ``Traj.add_epis`` (concatenates the raw episodes into pending columns) plus
  ``Traj.register_epis`` (appends them, with the estimators' new columns, to an empty Traj:
  adopted without a copy), against concatenating every key of the reference's estimated
  episodes into tensors (what any store of per-episode arrays must do before batching).
- *iterate*: one epoch of ``Traj.iterate(batch_size=256)`` over the registered columns,
  against (a) the same with plain numpy (a permutation, fancy-indexing every column per
  batch, ``torch.from_numpy``): the floor, and (b) naive batching from the list of episode
  dicts, one step at a time.

torch runs on one thread so that the numbers do not depend on the other process sharing
the machine's two cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import alternate, machine, median, print_table, timed  # noqa: E402

from machina.traj import Traj  # noqa: E402
from machina.traj import epi_functional as ef  # noqa: E402

GAMMA, LAM = 0.99, 0.95
OB_DIM = 3
BATCH_SIZE = 256
SHUFFLE = np.random.default_rng(1)


# ------------------------------------------------------------------------------ data
def make_epis(num_steps: int, num_epis: int, seed: int = 0) -> list[dict]:
    """``num_epis`` episodes of random length summing to ``num_steps``, ends mixed."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, num_steps), size=num_epis - 1, replace=False))
    lengths = np.diff(np.concatenate([[0], cuts, [num_steps]]))
    w = rng.normal(size=OB_DIM).astype(np.float32)
    epis = []
    for length in lengths:
        obs = rng.normal(size=(length + 1, OB_DIM)).astype(np.float32)
        values = obs @ w
        end = int(rng.integers(3))  # terminated, truncated, or both (terminated wins)
        terms = np.zeros(length, dtype=bool)
        truncs = np.zeros(length, dtype=bool)
        terms[-1] = end in (0, 2)
        truncs[-1] = end in (1, 2)
        epis.append(
            dict(
                obs=obs[:-1],
                acs=rng.normal(size=(length, 1)).astype(np.float32),
                rews=rng.normal(size=length).astype(np.float32),
                terms=terms,
                truncs=truncs,
                dones=terms | truncs,
                vs=values[:-1],
                next_vs=values[1:],
                a_is=dict(mean=rng.normal(size=(length, 1)).astype(np.float32)),
                e_is={},
            )
        )
    return epis


# ------------------------------------------------------------------------- machina
def pending_traj(epis: list[dict]) -> Traj:
    traj = Traj()
    traj.add_epis(epis)
    return traj


def machina_estimators(traj: Traj) -> Traj:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "episodes without next_obs": expected here
        traj = ef.add_next_obs(traj)
    traj = ef.compute_rets(traj, GAMMA)
    traj = ef.compute_advs(traj, GAMMA, LAM)
    traj = ef.centerize_advs(traj)
    return ef.compute_h_masks(traj)


def machina_register(estimated: Traj) -> Traj:
    traj = Traj().with_pending(estimated.pending)  # a fresh, empty Traj each round
    traj.register_epis()
    return traj


def machina_iterate(traj: Traj) -> None:
    for _ in traj.iterate(BATCH_SIZE):
        pass


# ----------------------------------------------------------------------- reference
def ref_next_obs(epi: dict) -> np.ndarray:
    obs = epi["obs"]
    return np.concatenate([obs[1:], obs[-1:]])  # the final observation was never stored


def ref_bootstrap(epi: dict) -> float:
    """V(s_T) after the last step: 0 when terminated, next_vs when only truncated."""
    return 0.0 if epi["terms"][-1] else float(epi["next_vs"][-1])


def ref_rets(epi: dict, gamma: float) -> np.ndarray:
    rews = epi["rews"]
    rets = np.empty(len(rews), dtype=np.float32)
    ret = ref_bootstrap(epi)
    for t in reversed(range(len(rews))):
        ret = rews[t] + gamma * ret
        rets[t] = ret
    return rets


def ref_advs(epi: dict, gamma: float, lam: float) -> np.ndarray:
    rews, vs = epi["rews"], epi["vs"]
    length = len(rews)
    advs = np.empty(length, dtype=np.float32)
    adv = 0.0
    for t in reversed(range(length)):
        next_v = ref_bootstrap(epi) if t == length - 1 else vs[t + 1]
        delta = rews[t] + gamma * next_v - vs[t]
        adv = delta + gamma * lam * adv
        advs[t] = adv
    return advs


def ref_estimators(epis: list[dict]) -> list[dict]:
    epis = [{**epi, "next_obs": ref_next_obs(epi)} for epi in epis]
    epis = [{**epi, "rets": ref_rets(epi, GAMMA)} for epi in epis]
    epis = [{**epi, "advs": ref_advs(epi, GAMMA, LAM)} for epi in epis]
    all_advs = np.concatenate([epi["advs"] for epi in epis])
    mean, std = all_advs.mean(), all_advs.std()
    epis = [{**epi, "advs": (epi["advs"] - mean) / (std + 1e-6)} for epi in epis]
    out = []
    for epi in epis:
        h_masks = np.zeros(len(epi["rews"]), dtype=np.float32)
        h_masks[0] = 1.0
        out.append({**epi, "h_masks": h_masks})
    return out


def ref_returns_lists(rews: list, vs: list, boot: float, gamma: float, lam: float):
    """Returns and GAE of one episode, step by step on Python floats."""
    length = len(rews)
    rets, advs = [0.0] * length, [0.0] * length
    ret, adv = boot, 0.0
    for t in reversed(range(length)):
        ret = rews[t] + gamma * ret
        rets[t] = ret
    for t in reversed(range(length)):
        next_v = boot if t == length - 1 else vs[t + 1]
        adv = rews[t] + gamma * next_v - vs[t] + gamma * lam * adv
        advs[t] = adv
    return rets, advs


def ref_estimators_lists(epis: list[dict]) -> list[dict]:
    out = []
    for epi in epis:
        rets, advs = ref_returns_lists(
            epi["rews"].tolist(), epi["vs"].tolist(), ref_bootstrap(epi), GAMMA, LAM
        )
        out.append(
            {
                **epi,
                "next_obs": ref_next_obs(epi),
                "rets": np.array(rets, dtype=np.float32),
                "advs": np.array(advs, dtype=np.float32),
            }
        )
    all_advs = np.concatenate([epi["advs"] for epi in out])
    mean, std = all_advs.mean(), all_advs.std()
    for epi in out:
        epi["advs"] = (epi["advs"] - mean) / (std + 1e-6)
        epi["h_masks"] = np.zeros(len(epi["rews"]), dtype=np.float32)
        epi["h_masks"][0] = 1.0
    return out


def ref_register(epis: list[dict]) -> dict[str, torch.Tensor]:
    keys = [k for k in epis[0] if k not in ("a_is", "e_is")]
    columns = {k: torch.as_tensor(np.concatenate([epi[k] for epi in epis])) for k in keys}
    columns["mean"] = torch.as_tensor(np.concatenate([epi["a_is"]["mean"] for epi in epis]))
    return columns


def numpy_iterate(columns: dict[str, np.ndarray]) -> None:
    n = len(columns["rews"])
    perm = SHUFFLE.permutation(n)
    for start in range(0, n, BATCH_SIZE):
        idx = perm[start : start + BATCH_SIZE]
        {k: torch.from_numpy(v[idx]) for k, v in columns.items()}


def naive_iterate(epis: list[dict]) -> None:
    """Batches gathered step by step from the episode dicts."""
    steps = [(i, t) for i, epi in enumerate(epis) for t in range(len(epi["rews"]))]
    order = SHUFFLE.permutation(len(steps))
    keys = [k for k in epis[0] if k not in ("a_is", "e_is")]
    for start in range(0, len(steps), BATCH_SIZE):
        batch = [steps[j] for j in order[start : start + BATCH_SIZE]]
        out = {k: torch.as_tensor(np.stack([epis[i][k][t] for i, t in batch])) for k in keys}
        out["mean"] = torch.as_tensor(np.stack([epis[i]["a_is"]["mean"][t] for i, t in batch]))


# ---------------------------------------------------------------------------- main
def check_agreement(traj: Traj, ref: list[dict]) -> None:
    cols = traj.pending.columns
    for key in ("next_obs", "rets", "advs", "h_masks"):
        expected = np.concatenate([epi[key] for epi in ref])
        np.testing.assert_allclose(cols[key], expected, rtol=1e-3, atol=1e-3, err_msg=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 steps")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--epis", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None, help="rounds (estimators, storage)")
    args = parser.parse_args()
    num_steps = args.steps or (20_000 if args.quick else 1_000_000)
    num_epis = args.epis or (100 if args.quick else 5_000)
    repeats = args.repeats or (2 if args.quick else 9)
    # The naive batching reference takes ~20 s an epoch: fewer rounds for iterate.
    iterate_repeats = min(repeats, 5)
    torch.set_num_threads(1)

    epis = make_epis(num_steps, num_epis)
    pending = pending_traj(epis)
    estimated = machina_estimators(pending)
    ref_estimated = ref_estimators(epis)
    check_agreement(estimated, ref_estimated)
    check_agreement(estimated, ref_estimators_lists(epis))
    registered = machina_register(estimated)
    numpy_columns = {k: v.numpy() for k, v in registered.data_map.items()}

    est = alternate(
        {
            "machina": lambda: timed(lambda: machina_estimators(pending)),
            "machina list": lambda: timed(lambda: machina_estimators(epis)),
            "numpy indexing": lambda: timed(lambda: ref_estimators(epis)),
            "lists": lambda: timed(lambda: ref_estimators_lists(epis)),
        },
        repeats + 1,
    )
    est = {name: times[1:] for name, times in est.items()}  # the first round warms up
    add_times: list[float] = []

    def machina_store() -> float:
        add_times.append(timed(lambda: pending_traj(epis)))
        return add_times[-1] + timed(lambda: machina_register(estimated))

    store = alternate(
        {
            "machina": machina_store,
            "reference": lambda: timed(lambda: ref_register(ref_estimated)),
        },
        repeats,
    )
    register_times = [s - a for s, a in zip(store["machina"], add_times)]
    it = alternate(
        {
            "machina": lambda: timed(lambda: machina_iterate(registered)),
            "numpy": lambda: timed(lambda: numpy_iterate(numpy_columns)),
            "naive": lambda: timed(lambda: naive_iterate(ref_estimated)),
        },
        iterate_repeats,
    )
    total_m = [a + b for a, b in zip(est["machina"], store["machina"])]
    total_r = [a + b for a, b in zip(est["numpy indexing"], store["reference"])]

    def row(name, ours, theirs=None, ref_name="—"):
        m = median(ours)
        if theirs is None:
            return [name, f"{m * 1e3:.1f}", "—", ref_name, "—"]
        r = median(theirs)
        return [name, f"{m * 1e3:.1f}", f"{r * 1e3:.1f}", ref_name, f"{r / m:.1f}x"]

    estimators = "add_next_obs, compute_rets, compute_advs, centerize_advs, compute_h_masks"
    epoch = f"iterate(batch_size={BATCH_SIZE}), one epoch"
    rows = [
        row(estimators, est["machina"], est["numpy indexing"], "per-step Python, numpy indexing"),
        row(estimators, est["machina"], est["lists"], "per-step Python, on lists"),
        row(
            f"{estimators}, on the list of episodes",
            est["machina list"],
            est["numpy indexing"],
            "per-step Python, numpy indexing",
        ),
        row("Traj.add_epis", add_times),
        row("Traj.register_epis", register_times),
        row("add_epis + register_epis", store["machina"], store["reference"], "concatenate keys"),
        row("all of the above", total_m, total_r, "numpy indexing + concatenate"),
        row(epoch, it["machina"], it["numpy"], "numpy permutation + fancy indexing"),
        row(epoch, it["machina"], it["naive"], "step by step from the episode dicts"),
    ]
    print_table(
        f"Estimators and storage: {num_steps:,} steps in {num_epis:,} episodes, median of "
        f"{repeats} alternating rounds after one warm-up ({iterate_repeats} for iterate)",
        ["step", "machina (ms)", "reference (ms)", "reference", "speed-up"],
        rows,
    )
    print(f"\n{machine()}")


if __name__ == "__main__":
    main()
