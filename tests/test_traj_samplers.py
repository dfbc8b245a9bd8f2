"""Prioritised replay samplers: the sum tree, i.i.d. draws by priority (chi-square), and
priorities kept aligned through updates, FIFO evictions and save/load."""

import copy
import pickle
import threading

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from machina.traj import Traj, _samplers
from machina.traj import epi_functional as ef
from machina.traj import traj_functional as tf

# Chi-square tests on fixed seeds: a correct sampler fails one with probability 1e-4.
P_MIN = 1e-4


def make_memory(rng, n_epi=30, max_len=12, max_steps=None, seq_length=None):
    epis = []
    for _ in range(n_epi):
        length = int(rng.integers(1, max_len + 1))
        epis.append(
            dict(
                obs=rng.normal(size=(length, 2)).astype(np.float32),
                rews=rng.normal(size=length).astype(np.float32),
                pris=rng.uniform(0.05, 3.0, size=length).astype(np.float32),
            )
        )
    traj = Traj(max_steps=max_steps)
    traj.add_epis(epis)
    if seq_length is not None:
        traj = ef.compute_seq_pris(traj, seq_length)
    traj.register_epis()
    return traj


def counts_of(draws: torch.Tensor, n: int) -> np.ndarray:
    return np.bincount(draws.reshape(-1).numpy(), minlength=n).astype(np.float64)


def assert_follows(counts: np.ndarray, weights: np.ndarray) -> None:
    expected = weights / weights.sum() * counts.sum()
    assert counts[weights == 0].sum() == 0
    keep = weights > 0
    assert chisquare(counts[keep], expected[keep]).pvalue > P_MIN


def rank_reference(pris: np.ndarray, alpha: float) -> np.ndarray:
    """Slow, obvious ranks: 1 for the highest priority, ties averaged."""
    ranks = np.empty(len(pris))
    for i, p in enumerate(pris):
        higher = np.sum(pris > p)
        equal = np.sum(pris == p)
        ranks[i] = higher + (equal + 1) / 2
    return ranks**-alpha


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 4097])
def test_sum_tree_finds_the_leaf_of_each_mass_and_never_a_zero_one(n):
    rng = np.random.default_rng(n)
    weights = rng.uniform(0.0, 2.0, size=n)
    weights[rng.random(n) < 0.2] = 0.0
    weights[0] = 1.0
    tree = _samplers.SumTree(torch.as_tensor(weights))
    for _ in range(5):  # updates, repeated positions included, then finds
        pos = rng.integers(0, n, size=min(n, 40))
        rep = min(3, len(pos))
        pos = np.concatenate([pos, pos[:rep]])
        new = rng.uniform(0.0, 2.0, size=len(pos))
        new[rng.random(len(pos)) < 0.2] = 0.0
        new[len(pos) - rep :] = new[:rep]  # a repeated position carries one value
        weights[pos] = new
        weights[0] = max(weights[0], 1.0)
        new = weights[pos]
        tree.update(pos, new)
        cum = np.cumsum(weights)
        assert tree.total == pytest.approx(cum[-1], rel=1e-12)
        assert tree.min == weights[weights > 0].min()
        mass = rng.uniform(0.0, cum[-1], size=500)
        mass = np.concatenate([mass, [0.0, np.nextafter(cum[-1], 0)]])
        found = tree.find(mass)
        assert (found < n).all() and (weights[found] > 0).all()
        # leaf i holds [cum[i] - w[i], cum[i]); rounding may move a mass by a few ulps
        slack = 1e-12 * cum[-1]
        assert (cum[found] - weights[found] <= mass + slack).all()
        assert (mass < cum[found] + slack).all()


@pytest.mark.parametrize("mode", ["proportional", "rank_based"])
def test_draws_follow_the_priorities_and_weights_are_exact(mode):
    rng = np.random.default_rng(1)
    traj = make_memory(rng)
    pris = traj.data_map["pris"].numpy().astype(np.float64)
    pris[:7] = pris[0]  # ties, averaged in rank-based mode
    traj.data_map["pris"] = torch.as_tensor(pris.astype(np.float32))
    pris = traj.data_map["pris"].numpy().astype(np.float64)
    weights = pris if mode == "proportional" else rank_reference(pris, 0.7)
    torch.manual_seed(0)
    drawn, counts = [], np.zeros(traj.num_step)
    for batch, idx in traj.prioritized_random_batch(150, 1000, True, mode, 0.7, 0.5, 0.0):
        counts += counts_of(idx, traj.num_step)
        drawn.append((idx, batch["is_weights"]))
    assert_follows(counts, weights)
    idx, is_weights = drawn[-1]
    expected = (weights[idx.numpy()] / weights.min()) ** -0.5
    np.testing.assert_allclose(is_weights.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("mode", ["proportional", "rank_based"])
def test_window_draws_follow_the_window_priorities(mode):
    rng = np.random.default_rng(2)
    seq_length = 4
    traj = make_memory(rng, seq_length=seq_length)
    seq_pris = traj.data_map["seq_pris"].numpy().astype(np.float64)
    index = traj.epis_index
    starts = np.concatenate(
        [np.arange(a, max(a + 1, b - seq_length + 1)) for a, b in zip(index[:-1], index[1:])]
    )
    weights = np.zeros(traj.num_step)
    ref = seq_pris[starts] if mode == "proportional" else rank_reference(seq_pris[starts], 0.6)
    weights[starts] = ref
    torch.manual_seed(1)
    counts = np.zeros(traj.num_step)
    for _, got in traj.prioritized_random_batch_rnn(150, seq_length, 1000, True, mode):
        counts += counts_of(got, traj.num_step)
    assert_follows(counts, weights)


def test_updates_are_followed_at_once_through_update_pris():
    rng = np.random.default_rng(3)
    traj = make_memory(rng, seq_length=3)
    traj.writable_column("pris")  # adopted columns are copied once, at the first write
    torch.manual_seed(2)
    next(traj.prioritized_random_batch(10))  # the samplers exist before the updates
    next(traj.prioritized_random_batch_rnn(10, 3))
    steps = traj._replay_sampler("pris", None, "", "", "proportional", 0.6)
    windows = traj._replay_sampler("seq_pris", 3, "", "", "proportional", 0.6)
    for _ in range(20):  # repeated indices included
        idx = torch.as_tensor(rng.integers(0, traj.num_step, size=25))
        tf.update_pris(traj, torch.as_tensor(rng.normal(size=25) * 3), idx, 0.6, 1e-6, True, 3)
    # updated in place, not rebuilt, and equal to the columns
    assert traj._replay_sampler("pris", None, "", "", "proportional", 0.6) is steps
    assert traj._replay_sampler("seq_pris", 3, "", "", "proportional", 0.6) is windows
    pris = traj.data_map["pris"].numpy().astype(np.float64)
    seq_pris = traj.data_map["seq_pris"].numpy().astype(np.float64)
    np.testing.assert_array_equal(steps.sampler.tree.values(np.arange(len(pris))), pris)
    got = windows.sampler.tree.values(np.arange(len(windows.cand)))
    np.testing.assert_array_equal(got, seq_pris[windows.cand])
    counts = np.zeros(traj.num_step)
    for _, idx in traj.prioritized_random_batch(150, 1000, True):
        counts += counts_of(idx, traj.num_step)
    assert_follows(counts, pris)


@pytest.mark.parametrize("copy_of", ["pickle", "deepcopy"])
def test_a_pickled_or_deep_copied_sum_tree_follows_updates(copy_of):
    """A Traj pickled or deep-copied with live samplers carries their trees, whose levels
    are views of one array: the copy must still follow updates, equal to a tree built anew
    from its weights, and leave the original alone."""
    rng = np.random.default_rng(6)
    weights = rng.uniform(0.1, 2.0, size=5000)
    tree = _samplers.SumTree(weights, top=64)
    twin = pickle.loads(pickle.dumps(tree)) if copy_of == "pickle" else copy.deepcopy(tree)
    for _ in range(3):
        pos = rng.choice(len(weights), size=300, replace=False)
        new = rng.uniform(0.01, 3.0, size=300)
        twin.update(pos, new)
        weights[pos] = new
    fresh = _samplers.SumTree(weights, top=64)
    np.testing.assert_array_equal(twin._tree[64:], fresh._tree[64:])
    np.testing.assert_array_equal(twin._running, fresh._running)
    assert twin.min == fresh.min
    masses = rng.uniform(0.0, fresh.total, size=1000)
    np.testing.assert_array_equal(twin.find(masses.copy()), fresh.find(masses.copy()))
    assert tree.total != twin.total  # the original was not written


def test_rank_based_order_is_rebuilt_after_enough_updates():
    rng = np.random.default_rng(4)
    traj = make_memory(rng)
    n = traj.num_step
    traj.writable_column("pris")  # adopted columns are copied once, at the first write
    next(traj.prioritized_random_batch(4, mode="rank_based"))
    entry = traj._replay_sampler("pris", None, "", "", "rank_based", 0.6)
    due = max(1, int(n * _samplers.RANK_REBUILD_FRACTION))
    # every update counts, so the order is redone after `due` updated priorities
    tf.update_pris(traj, torch.ones(due - 1), torch.arange(due - 1))
    assert traj._replay_sampler("pris", None, "", "", "rank_based", 0.6) is entry
    tf.update_pris(traj, torch.ones(1), torch.tensor([n - 1]))
    fresh = traj._replay_sampler("pris", None, "", "", "rank_based", 0.6)
    assert fresh is not entry
    pris = traj.data_map["pris"].numpy().astype(np.float64)
    np.testing.assert_allclose(fresh.sampler.weights(), rank_reference(pris, 0.6))


@pytest.mark.parametrize("seq_length", [None, 3])
def test_rank_order_follows_fifo_adds_without_a_new_sort(monkeypatch, seq_length):
    """After add_traj evicts and appends, the last rank order is reused for the items still
    stored (priorities moved by update_pris included) and the new ones merged in: the
    weights of a fresh sort, ties averaged, and no sort of all N."""
    rng = np.random.default_rng(9)
    reused = []
    shifted = _samplers.RankSampler._shifted_order

    def spy(self, values, shift):
        result = shifted(self, values, shift)
        reused.append(result is not None)
        return result

    monkeypatch.setattr(_samplers.RankSampler, "_shifted_order", spy)
    key = "pris" if seq_length is None else "seq_pris"
    memory = Traj(max_steps=200)
    for i in range(10):
        batch = make_memory(rng, n_epi=5, seq_length=seq_length)
        if i % 3 == 2:  # new episodes at the highest priority: ties with the stored maximum
            column = batch.data_map[key]  # windows' zeros kept
            batch.data_map[key] = torch.where(column > 0, 3.0, 0.0).to(column.dtype)
        memory.add_traj(batch)
        if seq_length is None:
            next(memory.prioritized_random_batch(4, mode="rank_based"))
        else:
            next(memory.prioritized_random_batch_rnn(4, seq_length, mode="rank_based"))
        entry = memory._replay_sampler(key, seq_length, "", "", "rank_based", 0.6)
        values = memory.data_map[key].numpy().astype(np.float64)
        if seq_length is not None:
            values = values[entry.cand]
        np.testing.assert_allclose(entry.sampler.weights(), rank_reference(values, 0.6))
        if seq_length is None:  # moved since the sort: ranked anew at the next add
            tf.update_pris(memory, torch.as_tensor(rng.uniform(0.1, 2.0, 8)), torch.arange(8))
    assert memory.num_step <= 200 and reused and all(reused)
    # priorities changed behind the sampler's back (a direct write): merged in as moved
    changed = [-1, 0] if seq_length is None else [int(entry.cand[-1]), int(entry.cand[0])]
    memory.writable_column(key)[changed] = torch.tensor([50.0, 1e-3])
    memory.add_traj(make_memory(rng, n_epi=2, seq_length=seq_length))
    if seq_length is None:
        next(memory.prioritized_random_batch(4, mode="rank_based"))
    else:
        next(memory.prioritized_random_batch_rnn(4, seq_length, mode="rank_based"))
    assert reused[-1] is True
    entry = memory._replay_sampler(key, seq_length, "", "", "rank_based", 0.6)
    values = memory.data_map[key].numpy().astype(np.float64)
    values = values if seq_length is None else values[entry.cand]
    np.testing.assert_allclose(entry.sampler.weights(), rank_reference(values, 0.6))


def test_rank_order_after_an_add_that_widens_the_priority_dtype():
    """float32 priorities stored, float64 ones added (numpy's default): the column widens;
    merged into the old float32 order, two new priorities would round into a tie."""

    def batch(pris):
        traj = Traj()
        traj.add_epis([dict(obs=np.zeros((len(pris), 1), np.float32), pris=pris)])
        traj.register_epis()
        return traj

    memory = Traj(max_steps=100, seed=0)
    memory.add_traj(batch(np.array([3.0, 2.0, 1.0], np.float32)))
    memory.prioritized_random_batch_once(2, mode="rank_based")
    memory.add_traj(batch(np.array([2.5, np.nextafter(2.5, 3.0)])))
    memory.prioritized_random_batch_once(2, mode="rank_based")
    entry = memory._replay_sampler("pris", None, "", "", "rank_based", 0.6)
    values = memory.data_map["pris"].numpy()
    assert values.dtype == np.float64
    np.testing.assert_allclose(entry.sampler.weights(), rank_reference(values, 0.6))


@pytest.mark.parametrize("mode", ["proportional", "rank_based"])
def test_a_copy_after_a_direct_write_draws_by_the_written_priorities(mode):
    """A deep copy or pickle restarts the column's version count, which the stale sampler's
    could match: the copy drew by the priorities from before the write."""
    memory = Traj(max_steps=100)
    memory.add_traj(make_memory(np.random.default_rng(8), n_epi=3))  # the copy-in: version 1
    next(memory.prioritized_random_batch(4, mode=mode))  # a sampler built at that version
    memory.writable_column("pris")[:] = 1e-3
    memory.writable_column("pris")[5] = 1000.0
    pris = memory.data_map["pris"].numpy().astype(np.float64)
    expected = pris if mode == "proportional" else rank_reference(pris, 0.6)
    for copied in (copy.deepcopy(memory), pickle.loads(pickle.dumps(memory)), memory):
        sampler = copied._replay_sampler("pris", None, "", "", mode, 0.6).sampler
        weights = sampler.tree.leaves() if mode == "proportional" else sampler.weights()
        np.testing.assert_allclose(weights, expected)
    # a current sampler stays current in the copy: the copy draws as the original
    twin = copy.deepcopy(memory)
    torch.manual_seed(1)
    _, a = memory.prioritized_random_batch_once(16, True, mode=mode)
    torch.manual_seed(1)
    _, b = twin.prioritized_random_batch_once(16, True, mode=mode)
    assert torch.equal(a, b)


def test_a_pickled_replay_keeps_its_priority_updates_through_the_next_add():
    """Unpickled, the columns were no views of the buffers the Traj thought it owned: an
    update_pris wrote the column, the next add_traj copied the stale buffer over it."""

    def batch(n, value):
        traj = Traj()
        traj.add_epis([dict(obs=np.zeros((n, 1), np.float32), pris=np.full(n, value, np.float32))])
        traj.register_epis()
        return traj

    memory = Traj(max_steps=100)
    memory.add_traj(batch(4, 1.0))
    memory.add_traj(batch(4, 2.0))
    for copied in (pickle.loads(pickle.dumps(memory)), copy.deepcopy(memory)):
        tf.update_pris(copied, torch.tensor([9.0]), torch.tensor([1]))
        updated = float(copied.data_map["pris"][1])
        copied.add_traj(batch(3, 5.0))
        assert float(copied.data_map["pris"][1]) == updated != 1.0
    assert float(memory.data_map["pris"][1]) == 1.0  # the original untouched


def test_priorities_stay_aligned_through_fifo_evictions_and_save_load(tmp_path):
    rng = np.random.default_rng(5)
    memory = Traj(max_steps=150)
    torch.manual_seed(3)
    for _ in range(8):
        memory.add_traj(make_memory(rng, n_epi=6))
        next(memory.prioritized_random_batch(8))  # a sampler over the rows before eviction
        idx = torch.as_tensor(rng.integers(0, memory.num_step, size=16))
        tf.update_pris(memory, torch.as_tensor(rng.normal(size=16)), idx)
    assert memory.num_step <= 150
    memory.save(tmp_path / "replay.npz")
    loaded = Traj.load(tmp_path / "replay.npz")
    for traj in (memory, loaded):
        pris = traj.data_map["pris"].numpy().astype(np.float64)
        counts = np.zeros(traj.num_step)
        for batch, idx in traj.prioritized_random_batch(100, 1000, True):
            counts += counts_of(idx, traj.num_step)
            # the batch's rows are those of the drawn steps: obs and priority agree
            assert torch.equal(batch["obs"], traj.data_map["obs"][idx])
        assert_follows(counts, pris)


def test_direct_writes_to_the_column_rebuild_the_sampler():
    rng = np.random.default_rng(6)
    traj = make_memory(rng)
    next(traj.prioritized_random_batch(4))
    traj.writable_column("pris")[:] = 1.0
    traj.writable_column("pris")[3] = 1000.0
    torch.manual_seed(4)
    counts = np.zeros(traj.num_step)
    for _, idx in traj.prioritized_random_batch(150, 400, True):
        counts += counts_of(idx, traj.num_step)
    assert_follows(counts, traj.data_map["pris"].numpy().astype(np.float64))
    for bad in (float("nan"), float("inf"), -float("inf"), 0.0, -1.0):
        traj.writable_column("pris")[5] = bad
        with pytest.raises(ValueError, match="pris: expected finite positive priorities"):
            next(traj.prioritized_random_batch(4))
    traj.writable_column("pris")[5] = 3.4e38  # the largest float32s are fine
    traj.writable_column("pris")[6] = 3.4e38
    next(traj.prioritized_random_batch(4))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("td, expected", [(1e-30, "min 0.0 "), (1e30, r"[1-4] non-finite")])
def test_an_update_that_a_float16_column_cannot_hold_is_caught_at_the_next_draw(td, expected):
    """float32 priorities that pass update_pris's check but round to 0 or inf in a float16
    column: the sampler does not take them in silently, the next draw names the column."""
    rng = np.random.default_rng(12)
    traj = make_memory(rng)
    traj.data_map["pris"] = traj.data_map["pris"].half()
    _, idx = next(traj.prioritized_random_batch(4, 1, True))
    tf.update_pris(traj, torch.full((4,), td), idx, alpha=1.0, epsilon=1e-30)
    with pytest.raises(ValueError, match=f"pris: expected finite positive priorities.*{expected}"):
        next(traj.prioritized_random_batch(4))


@pytest.mark.parametrize("own_buffers", [False, True])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_update_is_refused_and_writes_nothing(own_buffers, bad):
    # it was written, and every later draw failed until the step was overwritten
    rng = np.random.default_rng(7)
    traj = make_memory(rng)
    if own_buffers:  # the column stays the same tensor through the update (a replay memory)
        traj.writable_column("pris")
    next(traj.prioritized_random_batch(4))
    next(traj.prioritized_random_batch(4, mode="rank_based"))
    before = traj.data_map["pris"].clone()
    with pytest.raises(ValueError, match="td_loss: expected finite TD errors"):
        tf.update_pris(traj, torch.tensor([1.0, bad]), torch.tensor([2, 3]))
    assert torch.equal(traj.data_map["pris"], before)
    for mode in ("proportional", "rank_based"):
        next(traj.prioritized_random_batch(4, mode=mode))


def test_updates_that_would_break_later_draws_are_refused_and_write_nothing():
    """A priority underflowing to 0 (epsilon 1e-50 in float32), a NaN/inf epsilon (it
    blamed td_loss), an integer pris column (update_pris truncated into it), seq_pris made
    for shorter windows than update_pris's (rewritten over the wrong length, silently)."""
    traj = make_memory(np.random.default_rng(10), seq_length=3)
    before = {k: traj.data_map[k].clone() for k in ("pris", "seq_pris")}
    td, idx = torch.tensor([0.0, 1.0]), torch.tensor([2, 3])
    with pytest.raises(ValueError, match=r"epsilon, alpha: .* underflow to 0 .*epsilon=1e-50"):
        tf.update_pris(traj, td, idx, epsilon=1e-50)
    for epsilon in (float("nan"), float("inf"), "1e-6"):
        with pytest.raises(ValueError, match="epsilon: expected a positive finite float"):
            tf.update_pris(traj, td, idx, epsilon=epsilon)
    last = int(traj.epis_index[1]) - 1  # episode 0's last step: a window of 5 holds it
    with pytest.raises(ValueError, match=r"seq_length: seq_pris is positive at step \d+, where"):
        tf.update_pris(traj, td[:1], torch.tensor([last]), update_epi_pris=True, seq_length=5)
    for key, was in before.items():
        assert torch.equal(traj.data_map[key], was), key
    tf.update_pris(traj, td[:1], torch.tensor([last]), update_epi_pris=True, seq_length=3)
    ints = make_memory(np.random.default_rng(11))
    ints.data_map["pris"] = torch.ones(ints.num_step, dtype=torch.int64)
    with pytest.raises(ValueError, match="pris: expected a floating-point"):
        tf.update_pris(ints, td, idx)
    with pytest.raises(ValueError, match="pris: expected a floating-point priority column"):
        next(ints.prioritized_random_batch(4))


@pytest.mark.parametrize("top", [1, 4, 64])
def test_sum_tree_descent_keeps_off_zero_weights_and_min_is_exact(top):
    """Deep descents (a small top level) over weights with many zeros and a wide range, masses
    at every leaf boundary: rounding must never land on a zero weight, and ``min`` follows
    updates that overwrite, lower and raise the smallest weight."""
    rng = np.random.default_rng(top)
    for _ in range(40):
        n = int(rng.integers(1, 700))
        weights = rng.uniform(0.0, 2.0, n) * (rng.random(n) < rng.random())
        weights *= 10.0 ** rng.integers(-8, 8, n)
        weights[int(rng.integers(n))] = 1.0
        tree = _samplers.SumTree(weights, top)
        for _ in range(4):
            pos = np.unique(rng.integers(0, n, size=min(n, 30)))
            new = rng.uniform(0.0, 2.0, len(pos)) * (rng.random(len(pos)) < 0.7)
            if rng.random() < 0.3:  # overwrite every holder of the minimum
                pos = np.flatnonzero(weights == weights[weights > 0].min())
                new = np.full(len(pos), 3.0)
            weights[pos] = new
            if not (weights > 0).any():
                weights[pos[0]] = new[0] = 1.0
            tree.update(pos, new)
            assert tree.min == weights[weights > 0].min()
            cum = np.cumsum(weights)
            edges = cum[:-1][weights[1:] > 0]
            mass = np.concatenate([rng.uniform(0, cum[-1], 200), edges, np.nextafter(edges, 0)])
            mass = np.concatenate([mass[mass < cum[-1]], [0.0, np.nextafter(cum[-1], 0)]])
            found, got = tree.find(mass, with_weights=True)
            assert (weights[found] > 0).all()
            np.testing.assert_array_equal(got, weights[found])
            slack = 1e-12 * cum[-1]
            assert (cum[found] - weights[found] <= mass + slack).all()
            assert (mass < cum[found] + slack).all()


def test_rank_order_merged_after_updates_equals_a_full_sort():
    """Rebuilds after updates merge the moved items into the last order; with ties (updates
    drawn from few values) the weights equal the obvious ranks, and draws follow them."""
    rng = np.random.default_rng(8)
    traj = make_memory(rng, n_epi=60)
    traj.writable_column("pris")
    n = traj.num_step
    torch.manual_seed(5)
    next(traj.prioritized_random_batch(4, mode="rank_based", alpha=0.7))
    due = max(1, int(n * _samplers.RANK_REBUILD_FRACTION))
    for _round in range(6):
        before = traj._replay_sampler("pris", None, "", "", "rank_based", 0.7)
        for _ in range(2):
            idx = torch.as_tensor(rng.integers(0, n, size=due // 2 + 1))
            td = torch.as_tensor(rng.choice([0.5, 1.0, 2.0, 3.0], size=len(idx)))
            tf.update_pris(traj, td, idx)
        after = traj._replay_sampler("pris", None, "", "", "rank_based", 0.7)
        assert after is not before
        pris = traj.data_map["pris"].numpy().astype(np.float64)
        np.testing.assert_allclose(after.sampler.weights(), rank_reference(pris, 0.7), rtol=1e-12)
    counts = np.zeros(n)
    for _, idx in traj.prioritized_random_batch(150, 600, True, "rank_based", 0.7):
        counts += counts_of(idx, n)
    assert_follows(counts, rank_reference(pris, 0.7))


@pytest.mark.parametrize("mode", ["proportional", "rank_based"])
@pytest.mark.parametrize("copy_of", ["pickle0", "pickle", "deepcopy"])
def test_draws_use_torch_rand_numbers_and_survive_a_copy(mode, copy_of):
    """A sampler's draws come from the masses ``torch.rand`` gives on the generator (its
    reused draw buffer changes no number), and a pickled or deep-copied sampler, whose buffer
    is made anew, draws what the original draws from the same generator state."""
    rng = np.random.default_rng(11)
    pris = torch.as_tensor(rng.uniform(0.1, 2.0, size=3000))
    sampler = _samplers.make_sampler(pris, mode, 0.7)
    gen = torch.Generator().manual_seed(4)
    sampler.draw(64, 0.4, gen)  # the buffer exists before the copy
    if copy_of == "deepcopy":
        twin = copy.deepcopy(sampler)
    else:  # protocol 0 too: an empty state once left the copy's buffer unmade
        twin = pickle.loads(pickle.dumps(sampler, 0 if copy_of == "pickle0" else None))
    # the tree's leaves in its order: the steps' priorities, or the weights of ranks 1..N
    weights = pris.numpy() if mode == "proportional" else np.arange(1, 3001) ** -0.7
    where = np.arange(3000)  # a step's leaf
    if mode == "rank_based":
        where[sampler.order] = np.arange(3000)
    cum = np.cumsum(weights)
    for size in (64, 64, 10):  # the buffer is reused, then made for another size
        state = gen.get_state()
        masses = torch.rand(size, dtype=torch.float64, generator=gen).numpy() * cum[-1]
        gen.set_state(state)
        got, _ = sampler.draw(size, 0.4, gen)
        gen.set_state(state)
        again, _ = twin.draw(size, 0.4, gen)
        np.testing.assert_array_equal(got, again)
        # the leaf of each mass, up to rounding at a boundary (a few ulps of the total)
        leaf = where[got]
        slack = 1e-12 * cum[-1]
        assert (cum[leaf] - weights[leaf] <= masses + slack).all()
        assert (masses < cum[leaf] + slack).all()


def test_shallow_copies_draw_their_own_batches_from_two_threads():
    """copy.copy(traj) shares the samplers (and their draw buffers): two copies drawing at
    once from two threads each get the batches they draw alone."""
    rng = np.random.default_rng(13)
    traj = make_memory(rng, n_epi=200, max_len=50)
    next(traj.prioritized_random_batch(8))  # the sampler is built before the copies

    def draws(copy_of: Traj, seed: int, out: list) -> None:
        copy_of.generator.manual_seed(seed)
        for _ in range(500):
            out.append(next(copy_of.prioritized_random_batch(4096, 1, True))[1])

    alone = [[], []]
    for seed, out in zip((1, 2), alone):
        draws(copy.copy(traj), seed, out)
    together = [[], []]
    threads = [
        threading.Thread(target=draws, args=(copy.copy(traj), seed, out))
        for seed, out in zip((1, 2), together)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for a, b in zip(alone, together):
        assert len(b) == 500 and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("mode", ["proportional", "rank_based"])
def test_a_bfloat16_priority_column_is_drawn_by_and_updated(mode):
    """bfloat16, which numpy lacks: update_pris writes the column (it raised after writing)
    and the draws follow the priorities it holds."""
    rng = np.random.default_rng(14)
    traj = make_memory(rng)
    traj.data_map["pris"] = traj.data_map["pris"].to(torch.bfloat16)
    torch.manual_seed(5)
    for _ in range(20):
        _, idx = next(traj.prioritized_random_batch(16, 1, True, mode))
        tf.update_pris(traj, torch.as_tensor(rng.normal(size=16) * 2), idx)
    pris = traj.data_map["pris"].to(torch.float64).numpy()
    counts = np.zeros(traj.num_step)
    for _, idx in traj.prioritized_random_batch(150, 1000, True, mode):
        counts += counts_of(idx, traj.num_step)
    assert_follows(counts, pris if mode == "proportional" else rank_reference(pris, 0.6))
