"""Traj as a replay memory: uniform, prioritised and sequence batches, priorities, n-step.

Sampling is checked statistically with fixed seeds (chi-square against the intended
distribution), everything else against plain per-step reference loops on random episodes with
terminated and truncated ends mixed.
"""

import copy

import numpy as np
import pytest
import torch
from conftest import make_random_epis
from scipy import stats

from machina.traj import Traj, _replay
from machina.traj import epi_functional as ef
from machina.traj import traj_functional as tf


def make_traj(epis, max_steps=None):
    traj = Traj(max_steps=max_steps)
    traj.add_epis(epis)
    traj.register_epis()
    return traj


def chi2_pvalue(counts, probs):
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    expected = probs / probs.sum() * counts.sum()
    return stats.chisquare(counts, expected).pvalue


def window_reference(epis, seq_length):
    """Every window start (flat index) and its episode's bounds, one episode at a time."""
    starts, bounds, offset = [], [], 0
    for epi in epis:
        length = len(epi["rews"])
        for s in range(max(length - seq_length, 0) + 1):
            starts.append(offset + s)
            bounds.append((offset, offset + length))
        offset += length
    return starts, bounds


# ----------------------------------------------------------------------- uniform batches
def test_random_batch_is_uniform(rng):
    torch.manual_seed(0)
    traj = make_traj(make_random_epis(rng, 4, max_len=10))
    counts = np.zeros(traj.num_step)
    for batch, indices in traj.random_batch(traj.num_step, epoch=600, return_indices=True):
        np.add.at(counts, indices.numpy(), 1)
        np.testing.assert_array_equal(batch["rews"].numpy(), traj.data_map["rews"][indices])
    assert chi2_pvalue(counts, np.full(traj.num_step, 1 / traj.num_step)) > 1e-3
    # a deliberately skewed count is rejected by the same test
    skewed = counts.copy()
    skewed[0] += 0.2 * counts.mean() * 5
    assert chi2_pvalue(skewed, np.full(traj.num_step, 1 / traj.num_step)) < 1e-3


@pytest.mark.parametrize("seq_length", [1, 4, 12, None])
def test_random_batch_rnn_windows_stay_inside_episodes_and_are_uniform(rng, seq_length):
    torch.manual_seed(0)
    epis = make_random_epis(rng, 12, max_len=15)
    traj = make_traj(epis)
    traj.data_map["step_id"] = torch.arange(traj.num_step)
    length = seq_length or max(len(e["rews"]) for e in epis)
    starts_ref, bounds = window_reference(epis, length)
    bound_of = dict(zip(starts_ref, bounds))
    counts = dict.fromkeys(starts_ref, 0)
    for batch, starts in traj.random_batch_rnn(32, length, epoch=150, return_indices=True):
        assert batch["obs"].shape == (length, 32, 3)
        assert batch["out_masks"].shape == batch["h_masks"].shape == (length, 32)
        for b, start in enumerate(starts.tolist()):
            counts[start] += 1  # a KeyError here: a start that is no window start
            lo, hi = bound_of[start]
            n_real = min(length, hi - start)
            mask = batch["out_masks"][:, b]
            assert mask[:n_real].all() and not mask[n_real:].any()
            np.testing.assert_array_equal(
                batch["step_id"][:n_real, b].numpy(), np.arange(start, start + n_real)
            )
            assert (batch["obs"][n_real:, b] == 0).all()
            assert batch["h_masks"][0, b] == float(start == lo)
            assert not batch["h_masks"][1:, b].any()
    values = np.array(list(counts.values()))
    assert chi2_pvalue(values, np.full(len(values), 1 / len(values))) > 1e-3


# ------------------------------------------------------------------ prioritised batches
@pytest.mark.parametrize("mode", ["proportional", "rank_based"])
def test_prioritized_frequencies_follow_the_priorities(rng, mode):
    torch.manual_seed(0)
    traj = make_traj(make_random_epis(rng, 3, max_len=8))
    n = traj.num_step
    pris = torch.as_tensor(rng.uniform(0.1, 3.0, size=n), dtype=torch.float32)
    traj.data_map["pris"] = pris
    if mode == "proportional":
        probs = pris.numpy() / pris.numpy().sum()
    else:
        alpha = 0.7
        rank = np.empty(n)
        rank[np.argsort(-pris.numpy(), kind="stable")] = np.arange(1, n + 1)
        probs = rank**-alpha / (rank**-alpha).sum()
    counts = np.zeros(n)
    for _, indices in traj.prioritized_random_batch(
        n, epoch=2000, return_indices=True, mode=mode, alpha=0.7
    ):
        np.add.at(counts, indices.numpy(), 1)
    assert chi2_pvalue(counts, probs) > 1e-3
    # and a uniform draw of the same size is told apart
    assert chi2_pvalue(np.full(n, counts.sum() / n), probs) < 1e-3


@pytest.mark.parametrize("mode", ["proportional", "rank_based"])
def test_importance_weights_match_the_formula_and_beta_anneals(rng, mode):
    traj = make_traj(make_random_epis(rng, 5))
    n = traj.num_step
    pris = rng.uniform(0.1, 3.0, size=n).astype(np.float32)
    traj.data_map["pris"] = torch.as_tensor(pris)
    alpha = 0.5
    if mode == "proportional":
        p = pris.astype(np.float64)
    else:
        order = sorted(range(n), key=lambda i: -pris[i])
        p = np.empty(n)
        for rank, i in enumerate(order, start=1):
            p[i] = rank**-alpha
    probs = p / p.sum()
    batches = traj.prioritized_random_batch(
        16, 5, True, mode=mode, alpha=alpha, init_beta=0.4, beta_step=0.3
    )
    for k, (batch, indices) in enumerate(batches):
        beta = min(1.0, 0.4 + 0.3 * k)
        assert traj.pri_beta == pytest.approx(beta)
        all_w = [(n * probs[i]) ** -beta for i in range(n)]
        expected = [(n * probs[i]) ** -beta / max(all_w) for i in indices.tolist()]
        np.testing.assert_allclose(batch["is_weights"].numpy(), expected, rtol=1e-5)
        assert batch["is_weights"].dtype == torch.float32
    assert traj.pri_beta == 1.0


def average_ranks_reference(pris):
    """Rank 1 for the highest priority; a group of equal priorities shares its mean rank."""
    ranks = np.empty(len(pris))
    for i, p in enumerate(pris):
        higher = sum(1 for q in pris if q > p)
        equal = sum(1 for q in pris if q == p)
        ranks[i] = higher + (equal + 1) / 2  # mean of ranks higher + 1 .. higher + equal
    return ranks


def test_rank_based_equal_priorities_draw_uniformly():
    """Every step starts at the same priority: rank-based replay must then be uniform."""
    torch.manual_seed(0)
    traj = make_traj(make_random_epis(np.random.default_rng(3), 120, max_len=15))
    n = traj.num_step
    traj.data_map["pris"] = torch.ones(n)
    counts = np.zeros(n)
    batches = traj.prioritized_random_batch(
        n, epoch=60, return_indices=True, mode="rank_based", alpha=0.6
    )
    for batch, indices in batches:
        np.add.at(counts, indices.numpy(), 1)
        np.testing.assert_allclose(batch["is_weights"].numpy(), 1.0)  # P(i) = 1 / N
    assert chi2_pvalue(counts, np.full(n, 1.0 / n)) > 1e-3
    first = counts[: n // 10].sum() / counts.sum()
    assert first == pytest.approx(0.1, abs=0.01)


def test_rank_based_ties_share_their_average_rank(rng):
    torch.manual_seed(0)
    traj = make_traj(make_random_epis(rng, 4, max_len=10))
    n = traj.num_step
    pris = rng.choice([0.5, 1.0, 2.0, 3.0], size=n).astype(np.float32)  # many ties
    pris[rng.choice(n, size=3, replace=False)] = rng.uniform(0.1, 4.0, size=3)
    traj.data_map["pris"] = torch.as_tensor(pris)
    alpha = 0.7
    p = average_ranks_reference(pris.tolist()) ** -alpha
    probs = p / p.sum()
    weights = _replay.sampling_weights(traj.data_map["pris"], "rank_based", alpha)
    np.testing.assert_allclose(weights.numpy(), p, rtol=1e-12)
    counts = np.zeros(n)
    batches = traj.prioritized_random_batch(
        n, 400, True, mode="rank_based", alpha=alpha, init_beta=0.5, beta_step=0.0
    )
    w = (n * probs) ** -0.5
    for batch, indices in batches:
        np.add.at(counts, indices.numpy(), 1)
        np.testing.assert_allclose(batch["is_weights"].numpy(), w[indices] / w.max(), rtol=1e-5)
    assert chi2_pvalue(counts, probs) > 1e-3


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(alpha=-0.1), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(init_beta=1.5), "init_beta"),
        (dict(init_beta=-0.1), "init_beta"),
        (dict(beta_step=-1e-3), "beta_step"),
    ],
)
def test_prioritized_batches_check_alpha_and_beta(rng, kwargs, name):
    epis = ef.set_all_pris(make_random_epis(rng, 3, max_len=10), 1.0)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_seq_pris(traj, 2)
    traj.register_epis()
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        traj.prioritized_random_batch_once(4, **kwargs)
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        traj.prioritized_random_batch_rnn_once(4, 2, **kwargs)
    assert traj.pri_beta is None


def test_pri_beta_survives_save_and_load(rng, tmp_path):
    traj = make_traj(ef.set_all_pris(make_random_epis(rng, 3), 1.0))
    traj.save(tmp_path / "fresh.npz")
    assert Traj.load(tmp_path / "fresh.npz").pri_beta is None
    for _ in traj.prioritized_random_batch(4, 3, init_beta=0.4, beta_step=0.1):
        pass
    traj.save(tmp_path / "memory.npz")
    loaded = Traj.load(tmp_path / "memory.npz")
    assert loaded.pri_beta == traj.pri_beta == pytest.approx(0.6)
    # the annealing resumes where it stopped
    loaded.prioritized_random_batch_once(4, init_beta=0.4, beta_step=0.1)
    assert loaded.pri_beta == pytest.approx(0.7)


@pytest.mark.parametrize("seq_length", [None, 3])
def test_rank_based_draws_survive_save_load_and_copy(rng, tmp_path, seq_length):
    """The rank order is rebuilt lazily, so it is more than the priorities: a reloaded
    Traj and a copy draw what the Traj draws, through later updates and rebuilds."""
    epis = make_random_epis(rng, 8)

    def memory():
        traj = Traj(seed=0)
        traj.add_epis(ef.set_all_pris(epis, 1.0))
        if seq_length:
            traj = ef.compute_seq_pris(traj, seq_length)
        traj.register_epis()
        return traj

    key = "seq_pris" if seq_length else "pris"

    def step(t, tds):
        if seq_length:
            _, starts = t.prioritized_random_batch_rnn_once(4, seq_length, True, "rank_based")
            idx = starts
        else:
            _, idx = t.prioritized_random_batch_once(4, True, mode="rank_based")
        tf.update_pris(t, tds, idx, update_epi_pris=bool(seq_length), seq_length=seq_length)
        return idx.tolist()

    gen = torch.Generator().manual_seed(1)
    first = [torch.rand(4, generator=gen) * 5 for _ in range(3)]
    traj, *twins = (memory() for _ in range(4))  # the twins are never saved nor copied
    for t in (traj, *twins):
        for tds in first:  # a rank order now older than the priorities
            step(t, tds)
    traj.save(tmp_path / "memory.npz")
    with np.load(tmp_path / "memory.npz") as f:
        assert any(n.startswith(f"rank:{key}:") for n in f.files)
    # each alone (a copy also changes its original's storage), and all together
    groups = [[Traj.load(tmp_path / "memory.npz")]]
    groups += [[copy.copy(traj), traj], [Traj.load(tmp_path / "memory.npz"), copy.copy(traj)]]
    for _ in range(60):  # several rebuilds (every N/16 updates)
        tds = torch.rand(4, generator=gen) * 5
        for group, reference in zip(groups, twins):
            drawn = step(reference, tds)
            assert [step(t, tds) for t in group] == [drawn] * len(group)


def test_rank_based_draws_survive_a_save_between_an_add_and_the_next_draw(tmp_path):
    """Saved after add_traj and before the draw that rebuilds the order: the rebuild reuses
    the last order (the new steps tie at the highest priority), which the file must carry;
    a load that sorted anew would order the ties otherwise and draw other steps."""
    memory = Traj(max_steps=100, seed=0)

    def add(seed):
        r = np.random.default_rng(seed)
        new = Traj()
        new.add_epis(
            [
                dict(
                    obs=r.normal(size=(10, 2)).astype(np.float32),
                    rews=r.normal(size=10).astype(np.float32),
                    terms=np.arange(10) == 9,
                )
                for _ in range(4)
            ]
        )
        new = ef.set_all_pris(new, memory.get_max_pri())
        new.register_epis()
        memory.add_traj(new)

    def step(t, tds):
        _, idx = t.prioritized_random_batch_once(len(tds), True, mode="rank_based")
        tf.update_pris(t, tds, idx)
        return idx.tolist()

    add(1)
    for _ in range(3):  # an order built, priorities updated
        step(memory, torch.arange(8.0) + 1.0)
    add(2)  # 40 steps tied at the highest priority
    memory.save(tmp_path / "memory.npz")
    loaded = Traj.load(tmp_path / "memory.npz")
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        tds = torch.rand(16, generator=gen) * 5
        assert step(loaded, tds) == step(memory, tds)


def test_a_bad_rank_order_in_a_file_is_refused(rng, tmp_path):
    traj = Traj(seed=0)
    traj.add_epis(ef.set_all_pris(make_random_epis(rng, 3), 1.0))
    traj.register_epis()
    traj.prioritized_random_batch_once(2, mode="rank_based")
    traj.save(tmp_path / "memory.npz")
    with np.load(tmp_path / "memory.npz") as f:
        members = {n: f[n] for n in f.files}
    name = next(n for n in members if n.startswith("rank:") and n.endswith(":order"))
    members[name] = np.zeros_like(members[name])
    np.savez(tmp_path / "bad.npz", **members)
    with pytest.raises(ValueError, match=r"bad\.npz: rank:pris:0:0\.6: order: expected a perm"):
        Traj.load(tmp_path / "bad.npz")


def test_prioritized_batches_need_positive_pris(rng):
    traj = make_traj(make_random_epis(rng, 3))
    with pytest.raises(KeyError, match="ef.set_all_pris"):
        traj.prioritized_random_batch_once(4)
    traj.data_map["pris"] = torch.ones(traj.num_step)
    with pytest.raises(ValueError, match="mode"):
        traj.prioritized_random_batch_once(4, mode="ranked")
    traj.data_map["pris"][3] = 0.0
    with pytest.raises(ValueError, match="pris"):
        traj.prioritized_random_batch_once(4)
    with pytest.raises(ValueError, match="batch_size"):
        traj.prioritized_random_batch_once(0)


def pri_of(obs):
    """A priority that is a function of the step's observation: follows it through FIFO."""
    return 1.0 + np.abs(obs).sum(axis=-1)


def test_new_episodes_get_max_priority_and_fifo_keeps_pris(rng):
    memory = Traj(max_steps=80)
    first = ef.set_all_pris(make_random_epis(rng, 4, max_len=10), 1.0)
    memory.add_traj(make_traj(first))
    tf.update_pris(memory, torch.tensor([4.0, 2.0]), torch.tensor([0, 1]), alpha=1.0)
    assert memory.get_max_pri() == pytest.approx(4.0, rel=1e-5)
    evicted = 0
    for _ in range(6):
        # every step's priority becomes a function of its observation (update_pris by index)
        obs = memory.data_map["obs"].numpy()
        tf.update_pris(memory, torch.as_tensor(pri_of(obs)), torch.arange(len(obs)), 1.0, 1e-6)
        first_kept = memory.data_map["obs"][0].clone()
        epis = make_random_epis(rng, 3, max_len=10)
        before_max = memory.get_max_pri()
        memory.add_traj(make_traj(epis))  # no 'pris': filled in with the maximum
        new_steps = sum(len(e["rews"]) for e in epis)
        assert memory.num_step <= 80
        pris = memory.data_map["pris"].numpy()
        np.testing.assert_allclose(pris[-new_steps:], before_max)
        # FIFO evicted and compacted whole episodes; each kept priority still is its step's
        old_obs = memory.data_map["obs"][:-new_steps].numpy()
        np.testing.assert_allclose(pris[:-new_steps], pri_of(old_obs) + 1e-6, rtol=1e-5)
        evicted += not torch.equal(memory.data_map["obs"][0], first_kept)
    assert evicted >= 3  # the check above ran after real evictions
    assert Traj().get_max_pri() == 1.0


def test_update_pris_writes_the_formula_and_never_shared_arrays(rng):
    epis = ef.set_all_pris(make_random_epis(rng, 4), 1.0)
    traj = make_traj(epis)  # adopts the pending arrays without a copy
    shared = copy.copy(traj)
    td = torch.tensor([-2.0, 0.5, 0.0])
    idx = torch.tensor([0, 5, 7])
    tf.update_pris(traj, td, idx, alpha=0.6, epsilon=1e-6)
    expected = (td.abs() + 1e-6) ** 0.6
    torch.testing.assert_close(traj.data_map["pris"][idx], expected)
    assert (shared.data_map["pris"] == 1.0).all()  # the copy's rows were not written
    with pytest.raises(ValueError, match="td_loss"):
        tf.update_pris(traj, td, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="indices"):
        tf.update_pris(traj, td, torch.tensor([0, 1, traj.num_step]))
    # a failed sequence update writes nothing (checked before the first write)
    before = traj.data_map["pris"].clone()
    with pytest.raises(KeyError, match="seq_pris"):
        tf.update_pris(traj, td * 3, idx, update_epi_pris=True, seq_length=4)
    with pytest.raises(ValueError, match="seq_length"):
        tf.update_pris(traj, td * 3, idx, update_epi_pris=True)
    for kwargs, name in (
        (dict(alpha=-1.0), "alpha: expected a float >= 0"),
        (dict(update_epi_pris=True, seq_length=0), "seq_length: expected an int >= 1"),
        (dict(update_epi_pris=True, seq_length=2, eta=7.0), r"eta: expected a float in \[0, 1\]"),
    ):
        with pytest.raises(ValueError, match=name):
            tf.update_pris(traj, td * 3, idx, **kwargs)
    assert torch.equal(traj.data_map["pris"], before)


# --------------------------------------------------------------------- sequence priority
def ref_seq_pris(epis, seq_length, eta):
    out = []
    for epi in epis:
        pris = np.abs(np.asarray(epi["pris"], dtype=np.float64))
        seq = np.zeros(len(pris))
        for s in range(max(len(pris) - seq_length, 0) + 1):
            window = pris[s : s + seq_length]
            seq[s] = eta * window.max() + (1 - eta) * window.mean()
        out.append(seq)
    return np.concatenate(out)


@pytest.mark.parametrize("seq_length", [1, 3, 10, 40])
def test_compute_seq_pris_matches_reference(rng, seq_length):
    epis = make_random_epis(rng, 10)
    for epi in epis:
        epi["pris"] = rng.uniform(0.1, 2.0, size=len(epi["rews"])).astype(np.float32)
    out = ef.compute_seq_pris(epis, seq_length, eta=0.9)
    got = np.concatenate([e["seq_pris"] for e in out])
    np.testing.assert_allclose(got, ref_seq_pris(epis, seq_length, 0.9), rtol=1e-5)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_seq_pris(traj, seq_length, eta=0.9)
    np.testing.assert_allclose(traj.pending.columns["seq_pris"], got)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64, torch.bfloat16])
def test_update_pris_takes_any_float_loss_and_index_kind(rng, dtype):
    """numpy computes and writes the priorities of a CPU memory (torch for what it cannot
    hold): the formula in float32 for every loss dtype, indices of any integer kind."""
    traj = make_traj(ef.set_all_pris(make_random_epis(rng, 4), 1.0))
    n = traj.num_step
    td = torch.as_tensor(rng.normal(size=(2, 3)) * 5).to(dtype)
    steps = rng.choice(n, size=6, replace=False)
    for indices in (torch.as_tensor(steps), torch.as_tensor(steps, dtype=torch.int32),
                    steps.reshape(2, 3), steps.tolist()):  # fmt: skip
        tf.update_pris(traj, td, indices, alpha=0.6, epsilon=1e-6)
        expected = (td.float().reshape(-1).abs() + 1e-6) ** 0.6
        torch.testing.assert_close(traj.data_map["pris"][torch.as_tensor(steps)], expected)
    with pytest.raises(ValueError, match=r"indices: .*got \[-1, "):
        tf.update_pris(traj, td, torch.as_tensor([-1, 0, 1, 2, 3, 4]))
    # a bool mask (as iterate takes) selects its steps; it was read as indices 0 and 1
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.as_tensor(steps)] = True
    tf.update_pris(traj, td, mask, alpha=0.6, epsilon=1e-6)
    # the mask's steps in increasing order take td's values in turn
    torch.testing.assert_close(traj.data_map["pris"][torch.as_tensor(np.sort(steps))], expected)
    with pytest.raises(ValueError, match=f"indices: a bool mask must cover the Traj's {n} steps"):
        tf.update_pris(traj, td, torch.ones(6, dtype=torch.bool))  # a mask over a batch
    with pytest.raises(ValueError, match="indices: expected integer .* given torch.float32"):
        tf.update_pris(traj, td, torch.as_tensor(steps, dtype=torch.float32))
    # a loss still in the autograd graph (a learner's TD errors, not detached)
    weights = torch.ones(6, requires_grad=True)
    tf.update_pris(traj, td.float().reshape(-1) * weights, steps, alpha=0.6, epsilon=1e-6)
    torch.testing.assert_close(traj.data_map["pris"][torch.as_tensor(steps)], expected)


def test_update_pris_refreshes_the_windows_it_touches(rng):
    seq_length = 5
    epis = make_random_epis(rng, 8, max_len=20)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_seq_pris(ef.set_all_pris(traj, 1.0), seq_length)
    traj.register_epis()
    idx = torch.as_tensor(rng.choice(traj.num_step, size=15, replace=False))
    td = torch.as_tensor(rng.normal(size=15), dtype=torch.float32)
    tf.update_pris(traj, td, idx, update_epi_pris=True, seq_length=seq_length, eta=0.8)
    back = traj.epis()
    np.testing.assert_allclose(
        traj.data_map["seq_pris"].numpy(), ref_seq_pris(back, seq_length, 0.8), rtol=1e-5
    )


def test_prioritized_rnn_draws_windows_by_seq_pris(rng):
    torch.manual_seed(0)
    seq_length = 4
    epis = make_random_epis(rng, 8, max_len=10)
    for epi in epis:
        epi["pris"] = rng.uniform(0.2, 3.0, size=len(epi["rews"])).astype(np.float32)
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_seq_pris(traj, seq_length)
    traj.register_epis()
    traj.data_map["step_id"] = torch.arange(traj.num_step)
    starts_ref, bounds = window_reference(epis, seq_length)
    seq = traj.data_map["seq_pris"].numpy()
    probs = seq[starts_ref] / seq[starts_ref].sum()
    position = {s: i for i, s in enumerate(starts_ref)}
    counts = np.zeros(len(starts_ref))
    beta = 0.4
    for batch, starts in traj.prioritized_random_batch_rnn(
        16, seq_length, epoch=500, return_indices=True, init_beta=0.4, beta_step=0.001
    ):
        for b, s in enumerate(starts.tolist()):
            counts[position[s]] += 1
            lo, hi = bounds[position[s]]
            n_real = int(batch["out_masks"][:, b].sum())
            assert n_real == min(seq_length, hi - s)
            assert batch["step_id"][n_real - 1, b] < hi
        w = (len(starts_ref) * probs) ** -beta
        expected = w[[position[s] for s in starts.tolist()]] / w.max()
        np.testing.assert_allclose(batch["is_weights"].numpy(), expected, rtol=1e-4)
        beta += 0.001
    assert chi2_pvalue(counts, probs) > 1e-3
    with pytest.raises(ValueError, match="seq_pris"):  # windows of 2 steps were never scored
        traj.prioritized_random_batch_rnn_once(4, 2)
    # nor windows of 6: their starts hold the priorities of windows of 4 (drawn by them
    # before); refused for either mode, naming a step where no window of 6 starts
    for mode in ("proportional", "rank_based"):
        with pytest.raises(ValueError, match=r"seq_pris: a priority at step \d+, where no window"):
            traj.prioritized_random_batch_rnn_once(4, 6, mode=mode)


# ------------------------------------------------------------------------------ n-step
def ref_nstep(epis, gamma, n):
    rews, next_obs, discounts = [], [], []
    for epi in epis:
        length = len(epi["rews"])
        for t in range(length):
            acc, k = 0.0, 0
            while k < n and t + k < length:
                acc += gamma**k * float(epi["rews"][t + k])
                k += 1
            terminated = t + k == length and bool(epi["terms"][-1])
            rews.append(acc)
            next_obs.append(epi["next_obs"][t + k - 1])
            discounts.append(0.0 if terminated else gamma**k)
    return np.array(rews), np.array(next_obs), np.array(discounts)


@pytest.mark.parametrize("gamma", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("n", [1, 3, 50])
@pytest.mark.parametrize("as_traj", [False, True])
def test_compute_nstep_matches_reference(rng, gamma, n, as_traj):
    epis = make_random_epis(rng, 15)
    if as_traj:
        traj = Traj()
        traj.add_epis(epis)
        cols = ef.compute_nstep(traj, gamma, n).pending.columns
    else:
        out = ef.compute_nstep(epis, gamma, n)
        cols = {k: np.concatenate([e[k] for e in out]) for k in out[0] if k.startswith("nstep")}
    rews, next_obs, discounts = ref_nstep(epis, gamma, n)
    np.testing.assert_allclose(cols["nstep_rews"], rews, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cols["nstep_next_obs"], next_obs)
    np.testing.assert_allclose(cols["nstep_discounts"], discounts, rtol=1e-6)
    if n == 1:
        np.testing.assert_allclose(cols["nstep_rews"], np.concatenate([e["rews"] for e in epis]))


def test_window_lengths_far_above_every_episode_are_whole_episodes(rng):
    # Monte-Carlo n-step returns and whole-episode windows: as many array passes (and a
    # window matrix as wide) as the longest episode, not n (10**9 passes, or a (W, 10**9)
    # matrix, before); numpy's integers taken like Python's
    epis = make_random_epis(rng, 15, max_len=30)
    for e in epis:
        e["pris"] = rng.uniform(0.1, 2.0, size=len(e["rews"])).astype(np.float32)
    huge = np.int64(10**9)
    out = ef.compute_nstep(epis, 0.9, huge)
    rews, next_obs, discounts = ref_nstep(epis, 0.9, 30)
    np.testing.assert_allclose(np.concatenate([e["nstep_rews"] for e in out]), rews, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate([e["nstep_discounts"] for e in out]), discounts)
    out = ef.compute_seq_pris(epis, huge, eta=0.9)
    np.testing.assert_allclose(
        np.concatenate([e["seq_pris"] for e in out]), ref_seq_pris(epis, 30, 0.9), rtol=1e-5
    )
    traj = make_traj(ef.compute_seq_pris(epis, 30, eta=0.9))
    idx = torch.as_tensor(rng.choice(traj.num_step, size=10, replace=False))
    tf.update_pris(traj, torch.ones(10), idx, update_epi_pris=True, seq_length=int(huge))
    none = torch.zeros(0, dtype=torch.int64)  # no window touched: no (0, 10**9) index either
    tf.update_pris(traj, torch.ones(0), none, update_epi_pris=True, seq_length=int(huge))
    np.testing.assert_allclose(
        traj.data_map["seq_pris"].numpy(), ref_seq_pris(traj.epis(), 30, 0.9), rtol=1e-5
    )


def test_compute_nstep_errors():
    epis = make_random_epis(np.random.default_rng(1), 2)
    with pytest.raises(ValueError, match="n:"):
        ef.compute_nstep(epis, 0.9, 0)
    with pytest.raises(ValueError, match="n: expected an int >= 1, got True"):
        ef.compute_nstep(epis, 0.9, True)
    with pytest.raises(ValueError, match="seq_length: expected an int >= 1, got 2.0"):
        ef.compute_seq_pris(ef.set_all_pris(epis, 1.0), 2.0)
    with pytest.raises(ValueError, match="gamma"):
        ef.compute_nstep(epis, 1.5, 2)


# ------------------------------------------------------------------------ compute_pris
class LinearQ(torch.nn.Module):
    rnn = False

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = torch.nn.Linear(5, 1)

    def forward(self, obs, acs):
        qs = self.lin(torch.cat([obs, acs], -1)).squeeze(-1)
        return qs, dict(mean=qs)


class MeanPol(torch.nn.Module):
    def pd_params(self, obs):
        return dict(mean=torch.tanh(obs[..., :2]))


def test_compute_pris_uses_ddpg_td_errors(rng):
    epis = make_random_epis(rng, 6)
    qf, targ_qf, pol, gamma = LinearQ(0), LinearQ(1), MeanPol(), 0.9
    out = ef.compute_pris(epis, qf, targ_qf, pol, gamma, alpha=0.5, epsilon=1e-3)
    with torch.no_grad():
        for epi, got in zip(epis, out):
            for t in range(len(epi["rews"])):
                ob, ac = torch.as_tensor(epi["obs"][t]), torch.as_tensor(epi["acs"][t])
                nob = torch.as_tensor(epi["next_obs"][t])
                q = float(qf(ob[None], ac[None])[0])
                nq = float(targ_qf(nob[None], pol.pd_params(nob[None])["mean"])[0])
                y = float(epi["rews"][t]) + gamma * (1 - float(epi["terms"][t])) * nq
                assert got["pris"][t] == pytest.approx((abs(q - y) + 1e-3) ** 0.5, rel=1e-4)
    with pytest.raises(ValueError, match="alpha: expected a float >= 0, got -1.0"):
        ef.compute_pris(epis, qf, targ_qf, pol, gamma, alpha=-1.0)
