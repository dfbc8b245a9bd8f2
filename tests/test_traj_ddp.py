"""Traj under torch.distributed: a real 2-process gloo group launched with torchrun.

Run as a script (by torchrun), this file is the worker: it batches a Traj on each rank and
saves what every rank got. The test then rebuilds the same Traj in this single process and
checks that the ranks' shares put together are the single-process minibatches.
"""

import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist

from machina.distributed import rank_local
from machina.traj import Traj
from machina.traj import traj_functional as tf
from machina.utils import optimizer_step
from machina.utils.distributed import set_grad_averaging

WORLD = 2
# Rank 0's global seed before each call, on a fresh Traj whose generator it seeds: the
# shares must be rank 0's draw, whatever rank 1's RNG.
SEED = 1234
TIMEOUT_S = 240


def _global_draws_between_batches(traj: Traj) -> list[dict]:
    """Three epochs of ``iterate`` with global-RNG draws between the batches, as many as the
    caller's share of each batch (a policy sampling actions in a loss does that): on each
    rank half of the single-process draws. The orders come from the Traj's generator, so
    the epochs after the first still put together the single-process batches (issue 10)."""
    batches = []
    for batch in traj.iterate(16, epoch=3):
        torch.rand(len(batch["obs"]))
        batches.append(batch)
    return batches


def make_traj(
    num_epi: int, seed: int, ddp: bool = False, pris: bool = True, traj_seed: int | None = None
) -> Traj:
    """Episodes of 1..12 steps with distinct observations, priorities and window priorities
    (numpy ``seed``), in a Traj whose generator has ``traj_seed``."""
    rng = np.random.default_rng(seed)
    epis = []
    for _ in range(num_epi):
        length = int(rng.integers(1, 13))
        epi = {
            "obs": rng.normal(size=(length, 2)).astype(np.float32),
            "rews": rng.normal(size=length).astype(np.float32),
            "terms": np.arange(length) == length - 1,
        }
        if pris:
            epi["pris"] = rng.uniform(0.1, 2.0, size=length).astype(np.float32)
            epi["seq_pris"] = rng.uniform(0.1, 2.0, size=length).astype(np.float32)
        epis.append(epi)
    traj = Traj(ddp=ddp, seed=traj_seed)
    traj.add_epis(epis)
    traj.register_epis()
    return traj


# Each call: (name, function of a Traj returning a list of batches, batch axis of its columns)
CALLS = [
    ("iterate", lambda t: list(t.iterate(16, epoch=2)), 0),
    ("iterate_global_draws", _global_draws_between_batches, 0),
    (
        "random_batch_global_draws",
        lambda t: [b for b in t.random_batch(8, 4) if torch.rand(len(b["obs"])) is not None],
        0,
    ),
    ("iterate_tail1", lambda t: list(t.iterate(t.num_step - 1)), 0),
    ("iterate_indices", lambda t: list(t.iterate(7, 1, np.arange(0, t.num_step, 3))), 0),
    ("iterate_noshuffle", lambda t: list(t.iterate_once(10, None, False)), 0),
    ("iterate_step", lambda t: list(t.iterate_step(9, step=5)), 0),
    ("random_batch", lambda t: [b for b, i in t.random_batch(8, 3, return_indices=True)], 0),
    ("random_batch_once", lambda t: [t.random_batch_once(6)], 0),
    ("full_batch", lambda t: list(t.full_batch()), 0),
    ("iterate_rnn", lambda t: list(t.iterate_rnn(4, epoch=2)), 1),
    ("random_batch_rnn", lambda t: list(t.random_batch_rnn(6, seq_length=5, epoch=2)), 1),
    ("prioritized", lambda t: list(t.prioritized_random_batch(10, epoch=3)), 0),
    (
        "prioritized_rank",
        lambda t: [t.prioritized_random_batch_once(8, mode="rank_based")],
        0,
    ),
    ("prioritized_rnn", lambda t: list(t.prioritized_random_batch_rnn(6, 4, epoch=2)), 1),
]


def _flatten(batches: list[dict], name: str) -> dict[str, np.ndarray]:
    out = {f"{name}/count": np.array(len(batches))}
    for i, batch in enumerate(batches):
        for key, value in batch.items():
            out[f"{name}/{i}/{key}"] = value.numpy()
    return out


def _error_of(fn) -> str:
    try:
        fn()
    except Exception as e:  # recorded for the test to read
        return f"{type(e).__name__}: {e}"
    return ""


def acs_traj(action: float) -> Traj:
    """Two 4-step episodes whose actions are all ``action``, in a Traj(ddp=True)."""
    terms = np.array([False, False, False, True])
    epi = {"obs": np.zeros((4, 2), np.float32), "acs": np.full((4, 1), action, np.float32),
           "rews": np.zeros(4, np.float32), "terms": terms}  # fmt: skip
    traj = Traj(ddp=True)
    traj.add_epis([epi, dict(epi)])
    traj.register_epis()
    return traj


def rank_based_memory() -> Traj:
    """A memory whose rank-based sampler has taken updates since its last sort (its order
    is rebuilt lazily: not a function of the priorities alone). Built before the process
    group exists: under a group every draw is a collective."""
    traj = make_traj(20, seed=0, traj_seed=11)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        _, idx = traj.prioritized_random_batch_once(4, return_indices=True, mode="rank_based")
        tf.update_pris(traj, torch.rand(4, generator=g) * 10, idx)
    return traj


def worker(out_dir: str) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    ranked = rank_based_memory() if rank == 0 else make_traj(3, seed=5)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    result: dict[str, np.ndarray] = {}

    # Mode 1: the same data on every rank, each taking its share of rank 0's minibatches.
    for name, call, _ in CALLS:
        torch.manual_seed(SEED + 7 * rank)  # rank 1's own RNG must not matter
        traj = make_traj(20, seed=0, ddp=True)  # its generator is seeded at the first draw
        result.update(_flatten(call(traj), name))
    result["pri_beta"] = np.array(traj.pri_beta)
    # A seeded Traj: the orders are the seed's, whatever any rank's global RNG.
    torch.manual_seed(SEED + 1 + rank)
    result.update(_flatten(list(make_traj(20, 0, ddp=True, traj_seed=5).iterate(16, 2)), "seeded"))
    torch.manual_seed(SEED)
    episodes = list(make_traj(20, seed=0, ddp=True).iterate_epi())
    result["iterate_epi/count"] = np.array(len(episodes))
    result["iterate_epi/first_obs"] = np.concatenate([e["obs"][:1].numpy() for e in episodes])

    # Mode 2: each rank its own data (rank 1 has fewer steps); the counts must agree.
    own = make_traj(20 if rank == 0 else 8, seed=10 + rank)
    result["mode2/steps"] = np.array(own.num_step)
    result["mode2/iterate"] = np.array(len(list(own.iterate(8, epoch=2))))
    result["mode2/iterate_rnn"] = np.array(len(list(own.iterate_rnn(3))))
    result["mode2/random_batch"] = np.array(len(list(own.random_batch(4, epoch=5))))
    result["mode2/iterate_epi"] = np.array(len(list(own.iterate_epi())))
    # Rank 0 alone batches and steps inside rank_local (a validation pass, say): no
    # collective, so rank 1 is not waited for; outside, the counts are agreed again.
    set_grad_averaging(True)  # as machina.distributed.init() leaves it
    with rank_local():
        if rank == 0:
            result["local/iterate"] = np.array(len(list(own.iterate(8, epoch=2))))
            w = torch.nn.Parameter(torch.ones(1))
            optimizer_step(torch.optim.SGD([w], lr=1.0), (3.0 * w).sum())
            result["local/step"] = w.detach().numpy()
    set_grad_averaging(False)

    # Errors never leave a rank waiting: each is raised on both ranks.
    # (sequences of episodes: more than held is an error; steps would make one batch)
    too_big = 2 if rank == 0 else own.num_epi + 1
    errors = {
        "too_big": lambda: list(own.iterate_rnn(too_big)),
        "ddp_unequal": lambda: list(make_traj(5 + rank, seed=3, ddp=True).iterate(2)),
        "ddp_no_pris": lambda: next(
            make_traj(5, seed=3, ddp=True, pris=False).prioritized_random_batch(4)
        ),
        "ddp_share": lambda: list(traj.iterate(1)),
        # same sizes, other episodes (each rank sampled its own): named, not trained on
        "ddp_other_data": lambda: list(acs_traj(float(rank)).iterate(4)),
        "ddp_other_data_epi": lambda: list(acs_traj(float(rank)).iterate_epi()),
    }
    for name, fn in errors.items():
        result[f"error/{name}"] = np.array(_error_of(fn))
    # tf.sync: rank 1 gets rank 0's episodes, bool columns included, and its generator.
    mine = make_traj(20, seed=0, traj_seed=9) if rank == 0 else make_traj(3, seed=5, pris=False)
    synced = tf.sync(mine)
    result["sync/epis_index"] = synced.epis_index
    result.update({f"sync/col/{k}": v.numpy() for k, v in synced.data_map.items()})
    result["sync/rng_state"] = synced.generator.get_state().numpy()
    # an unseeded Traj too: its generator is seeded on rank 0 before it is sent, so the
    # ranks' different global RNGs do not seed theirs at the first draw
    torch.manual_seed(1000 + rank)
    unseeded = tf.sync(make_traj(20, seed=0) if rank == 0 else make_traj(3, seed=5))
    result["sync/unseeded_draw"] = next(unseeded.random_batch(16))["obs"].numpy()
    # and the rank-based sampler's order: every rank then draws rank 0's steps
    _, drawn = tf.sync(ranked).prioritized_random_batch_once(
        64, return_indices=True, mode="rank_based"
    )
    result["sync/rank_based"] = drawn.numpy()

    # The group still works after the errors (no rank is stuck in a collective).
    result["after_errors"] = np.array(len(list(traj.random_batch(4, 2))))

    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **result)
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out_dir = str(tmp_path_factory.mktemp("ddp"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        os.path.abspath(__file__), out_dir,
    ]  # fmt: skip
    # Its own session, so that a timeout kills torchrun and both workers, nothing else.
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT_S} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    return [dict(np.load(os.path.join(out_dir, f"rank{r}.npz"))) for r in range(WORLD)]


def _batches(result: dict, name: str) -> list[dict]:
    count = int(result[f"{name}/count"])
    batches = [{} for _ in range(count)]
    for key, value in result.items():
        parts = key.split("/")
        if parts[0] == name and len(parts) == 3:
            batches[int(parts[1])][parts[2]] = value
    return batches


@pytest.mark.parametrize("name,call,axis", CALLS, ids=[c[0] for c in CALLS])
def test_ddp_shares_put_together_are_the_single_process_batches(ranks, name, call, axis):
    traj = make_traj(20, seed=0)
    torch.manual_seed(SEED)
    expected = call(traj)
    shares = [_batches(r, name) for r in ranks]
    if name == "iterate_tail1":
        assert len(expected) == 2 and len(expected[1]["obs"]) == 1
    # a last batch of fewer steps than ranks leaves a rank an empty share (iterate_tail1)
    assert [len(s) for s in shares] == [len(expected)] * WORLD
    for i, batch in enumerate(expected):
        sizes = [s[i]["obs"].shape[axis] for s in shares]
        full = batch["obs"].shape[axis]
        # disjoint, contiguous, near-equal shares
        assert sizes == [full * (r + 1) // WORLD - full * r // WORLD for r in range(WORLD)]
        assert set(shares[0][i]) == set(batch)
        for key, value in batch.items():
            # is_weights is (B,) even in time-major (L, B, ...) batches
            together = np.concatenate([s[i][key] for s in shares], axis=min(axis, value.dim() - 1))
            np.testing.assert_array_equal(together, value.numpy(), err_msg=f"{name}[{i}].{key}")


def test_ddp_anneals_beta_and_shares_episodes_on_every_rank(ranks):
    traj = make_traj(20, seed=0)
    for _name, call, _ in CALLS:
        traj.pri_beta = None
        call(traj)
    for r in ranks:
        assert float(r["pri_beta"]) == pytest.approx(traj.pri_beta, abs=1e-12)
    torch.manual_seed(SEED)
    episodes = list(make_traj(20, seed=0).iterate_epi())
    first = np.concatenate([e["obs"][:1].numpy() for e in episodes])
    per_rank = traj.num_epi // WORLD
    for rank, r in enumerate(ranks):
        assert int(r["iterate_epi/count"]) == per_rank
        mine = first[rank * per_rank : (rank + 1) * per_rank]
        np.testing.assert_array_equal(r["iterate_epi/first_obs"], mine)


def test_a_seeded_traj_draws_the_seed_s_batches_whatever_the_global_rng(ranks):
    torch.manual_seed(SEED + 3)
    expected = list(make_traj(20, 0, traj_seed=5).iterate(16, 2))
    shares = [_batches(r, "seeded") for r in ranks]
    for i, batch in enumerate(expected):
        together = np.concatenate([s[i]["obs"] for s in shares])
        np.testing.assert_array_equal(together, batch["obs"].numpy())


def test_ranks_with_their_own_data_agree_on_the_number_of_batches(ranks):
    steps = [int(r["mode2/steps"]) for r in ranks]
    assert steps[0] > steps[1]
    small = make_traj(8, seed=11)
    assert small.num_step == steps[1]
    expected = {
        "iterate": 2 * -(-small.num_step // 8),
        "iterate_rnn": -(-small.num_epi // 3),
        "random_batch": 5,
        "iterate_epi": small.num_epi,
    }
    for key, count in expected.items():
        assert [int(r[f"mode2/{key}"]) for r in ranks] == [count] * WORLD, key


def test_a_rank_batches_and_steps_alone_inside_rank_local(ranks):
    """Rank 0's own count (not the agreed minimum) and a step of its own gradient (3, not
    averaged with rank 1's nothing), while rank 1 went on: no collective waited for it."""
    big = make_traj(20, seed=10)
    assert int(ranks[0]["local/iterate"]) == 2 * -(-big.num_step // 8)
    np.testing.assert_array_equal(ranks[0]["local/step"], np.array([-2.0], np.float32))
    assert "local/iterate" not in ranks[1]


def test_sync_gives_every_rank_the_master_s_episodes(ranks):
    master = make_traj(20, seed=0)
    for r in ranks:
        np.testing.assert_array_equal(r["sync/epis_index"], master.epis_index)
        cols = {k[9:]: v for k, v in r.items() if k.startswith("sync/col/")}
        assert set(cols) == set(master.data_map)
        for k, v in master.data_map.items():
            assert cols[k].dtype == v.numpy().dtype
            np.testing.assert_array_equal(cols[k], v.numpy())
        # and its batch generator: every rank then draws what rank 0 would
        np.testing.assert_array_equal(r["sync/rng_state"], Traj(seed=9).generator.get_state())
        np.testing.assert_array_equal(r["sync/unseeded_draw"], ranks[0]["sync/unseeded_draw"])
    # a rank-based sampler's lazily kept order too (43 of 64 draws differed without it)
    _, expected = rank_based_memory().prioritized_random_batch_once(
        64, return_indices=True, mode="rank_based"
    )
    for r in ranks:
        np.testing.assert_array_equal(r["sync/rank_based"], expected.numpy())


def test_an_error_on_one_rank_is_raised_on_every_rank(ranks):
    err = [{k[6:]: str(v) for k, v in r.items() if k.startswith("error/")} for r in ranks]
    # rank 1's batch is too large for its data: it raises its own error, rank 0 names rank 1
    assert err[1]["too_big"].startswith("ValueError: batch_size")
    assert "rank 1 of 2 could not build its batches" in err[0]["too_big"]
    for r in range(WORLD):
        assert "same steps on every rank" in err[r]["ddp_unequal"]
        for key in ("ddp_other_data", "ddp_other_data_epi"):
            assert "boundaries or values differ" in err[r][key]
        assert "at least 2, got 1" in err[r]["ddp_share"]
    assert err[0]["ddp_no_pris"].startswith("KeyError") and "pris" in err[0]["ddp_no_pris"]
    assert "rank 0 could not draw the minibatch" in err[1]["ddp_no_pris"]
    assert [int(r["after_errors"]) for r in ranks] == [2, 2]


if __name__ == "__main__":
    worker(sys.argv[1])
