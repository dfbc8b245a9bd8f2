"""Traj: registration, FIFO bound, batching and save/load."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.traj import Traj
from machina.traj import epi_functional as ef


def make_traj(epis, max_steps=None):
    traj = Traj(max_steps=max_steps)
    traj.add_epis(epis)
    traj.register_epis()
    return traj


def test_register_flattens_columns(rng):
    epis = make_random_epis(rng, 7)
    traj = make_traj(epis)
    assert traj.num_epi == 7
    assert traj.num_step == sum(len(e["rews"]) for e in epis)
    assert {"obs", "acs", "rews", "mean", "x_pos"} <= set(traj.data_map)
    np.testing.assert_array_equal(
        traj.data_map["obs"].numpy(), np.concatenate([e["obs"] for e in epis])
    )
    assert traj.data_map["terms"].dtype == torch.bool
    assert traj.data_map["x_pos"].dtype == torch.float64
    back = traj.epis()
    np.testing.assert_array_equal(back[3]["a_is"]["mean"], epis[3]["a_is"]["mean"])
    np.testing.assert_array_equal(back[3]["e_is"]["x_pos"], epis[3]["e_is"]["x_pos"])


def test_fifo_keeps_newest_whole_episodes(rng):
    memory = Traj(max_steps=60)
    added = []
    for _ in range(10):
        epis = make_random_epis(rng, 3, max_len=15)
        added.extend(epis)
        memory.add_traj(make_traj(epis))
        assert memory.num_step <= 60
    # The kept episodes are exactly the newest ones whose total fits in the bound.
    lengths = [len(e["rews"]) for e in added]
    keep = 0
    while sum(lengths[len(lengths) - keep - 1 :]) <= 60:
        keep += 1
    assert memory.num_epi == keep
    expected = np.concatenate([e["rews"] for e in added[-keep:]])
    np.testing.assert_array_equal(memory.data_map["rews"].numpy(), expected)
    assert memory.epis_index[0] == 0 and memory.epis_index[-1] == memory.num_step


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_iterate_visits_every_step_once_per_epoch(rng, batch_size):
    traj = make_traj(make_random_epis(rng, 50))
    traj.data_map["step_id"] = torch.arange(traj.num_step)
    if batch_size > traj.num_step:
        # every step in one batch, with a warning (0.x yielded nothing: small runs of its
        # scripts trained on nothing)
        for call in (traj.iterate, traj.iterate_once, traj.iterate_step):
            with pytest.warns(UserWarning, match=f"batch_size={batch_size} is larger than"):
                batches = [b["step_id"] for b in call(batch_size)]
            assert len(batches) == 1 and torch.equal(
                batches[0].sort().values, traj.data_map["step_id"]
            )
        return
    seen = torch.cat([b["step_id"] for b in traj.iterate(batch_size, epoch=3)])
    assert len(seen) == 3 * traj.num_step
    for epoch in seen.split(traj.num_step):
        assert torch.equal(epoch.sort().values, torch.arange(traj.num_step))
    assert all(len(b["obs"]) <= batch_size for b in traj.iterate_once(batch_size))


def test_draws_with_replacement_take_a_batch_larger_than_the_traj(rng):
    """Every drawing method draws with replacement, so a batch above the steps held is
    drawn as asked (machina 0.x and stable-baselines3 do; 0.x's scripts on small budgets
    ask 256 of a first 200-step episode); iterate_rnn's sequences are refused, naming
    batch_size (0.x asserted)."""
    traj = Traj()
    traj.add_epis(make_random_epis(rng, 2, max_len=5))
    traj = ef.compute_seq_pris(ef.set_all_pris(traj, 1.0), 2)
    traj.register_epis()
    big = traj.num_step + 7
    batches = [
        traj.random_batch_once(big),
        traj.prioritized_random_batch_once(big, mode="proportional"),
        traj.prioritized_random_batch_once(big, mode="rank_based"),
    ]
    for batch in batches:
        assert len(batch["obs"]) == big
    assert next(traj.random_batch_rnn(big, 2))["obs"].shape[1] == big
    assert next(traj.prioritized_random_batch_rnn(big, 2))["obs"].shape[1] == big
    with pytest.raises(ValueError, match=rf"batch_size: expected at most the {traj.num_epi}"):
        next(traj.iterate_rnn(traj.num_epi + 1))
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        traj.random_batch_once(0)


def test_a_negative_or_fractional_epoch_is_refused(rng):
    # a negative epoch yielded no batch (a run that trains on nothing), "a" a bare TypeError
    traj = make_traj(ef.set_all_pris(make_random_epis(rng, 3), 1.0))
    calls = [
        lambda epoch: traj.iterate(4, epoch=epoch),
        lambda epoch: traj.full_batch(epoch=epoch),
        lambda epoch: traj.random_batch(4, epoch=epoch),
        lambda epoch: traj.iterate_rnn(1, epoch=epoch),
        lambda epoch: traj.random_batch_rnn(2, 2, epoch=epoch),
        lambda epoch: traj.prioritized_random_batch(4, epoch=epoch),
    ]
    for call in calls:
        for bad in (-1, 1.5, "a"):
            with pytest.raises(ValueError, match="epoch: expected an int >= 0"):
                next(call(bad))
        assert list(call(0)) == [] and len(list(call(2.0))) == 2 * len(list(call(1)))


def test_random_batch_shapes_and_indices(rng):
    traj = make_traj(make_random_epis(rng, 20))
    batches = list(traj.random_batch(16, epoch=5, return_indices=True))
    assert len(batches) == 5
    for batch, idx in batches:
        assert batch["obs"].shape == (16, 3)
        assert torch.equal(batch["rews"], traj.data_map["rews"][idx])


def test_iterate_rnn_pads_whole_episodes(rng):
    epis = make_random_epis(rng, 11)
    traj = make_traj(epis)
    lengths = {len(e["rews"]) for e in epis}
    seen = 0
    for batch in traj.iterate_rnn(batch_size=4):
        t_max, b = batch["out_masks"].shape
        assert batch["obs"].shape == (t_max, b, 3)
        assert batch["h_masks"].shape == (t_max, b)
        assert torch.all(batch["h_masks"][0] == 1)
        for i in range(b):
            length = int(batch["out_masks"][:, i].sum())
            assert length in lengths
            assert torch.all(batch["out_masks"][:length, i] == 1)
            assert torch.all(batch["obs"][length:, i] == 0)
            # The real steps form one stored episode, in order.
            rews = batch["rews"][:length, i].numpy()
            assert any(np.array_equal(rews, e["rews"]) for e in epis)
        seen += b
    assert seen == 11


def test_iterate_rnn_joins_episodes_with_h_masks(rng):
    epis = make_random_epis(rng, 6)
    traj = make_traj(epis)
    batch = next(traj.iterate_rnn(batch_size=3, num_epi_per_seq=2))
    assert batch["out_masks"].shape[1] == 3
    assert torch.all(batch["h_masks"].sum(0) == 2)


def test_save_load_round_trip_without_pickle(rng, tmp_path):
    traj = make_traj(make_random_epis(rng, 9), max_steps=10_000)
    # bfloat16, which numpy lacks, travels as its bits (saving it raised before)
    traj.data_map["bf16"] = torch.randn(traj.num_step, 2).to(torch.bfloat16)
    path = tmp_path / "traj.npz"
    traj.save(path)
    loaded = Traj.load(path)
    assert loaded.max_steps == 10_000
    np.testing.assert_array_equal(loaded.epis_index, traj.epis_index)
    assert set(loaded.data_map) == set(traj.data_map)
    for key, col in traj.data_map.items():
        assert loaded.data_map[key].dtype == col.dtype
        assert torch.equal(loaded.data_map[key], col)
    assert loaded.groups == traj.groups
    epis = loaded.epis()  # bfloat16 as float32 there
    np.testing.assert_array_equal(
        np.concatenate([e["bf16"] for e in epis]), traj.data_map["bf16"].float().numpy()
    )
    # np.load(allow_pickle=False) must be able to read every entry.
    with np.load(path, allow_pickle=False) as f:
        for name in f.files:
            f[name]


def test_bad_input_errors(rng):
    traj = Traj()
    with pytest.raises(ValueError, match="register_epis"):
        traj.register_epis()
    epis = make_random_epis(rng, 2)
    epis[1]["rews"] = epis[1]["rews"][:-1] if len(epis[1]["rews"]) > 1 else np.zeros(5)
    # add_epis flattens the episodes, so it is where they are checked.
    with pytest.raises(ValueError, match=r"epis\[1\]"):
        traj.add_epis(epis)
    with pytest.raises(ValueError, match="register_epis"):
        traj.register_epis()
    with pytest.raises(ValueError, match="max_steps"):
        Traj(max_steps=0)
    # a boolean mask of another length than num_step is refused, not read as indices 0/1
    traj = make_traj(make_random_epis(rng, 3))
    for call in (traj.iterate, traj.random_batch):
        with pytest.raises(ValueError, match=r"indices: a boolean mask .* got shape \(4,\)"):
            next(call(2, indices=np.ones(4, dtype=bool)))
    mask = np.zeros(traj.num_step, dtype=bool)
    mask[-1] = True
    batch = next(traj.iterate(1, indices=mask, shuffle=False))
    torch.testing.assert_close(batch["rews"], traj.data_map["rews"][-1:])
    # a selection of no step is named as such (not a batch_size of 0, nor an empty Traj)
    for call in (traj.iterate, traj.random_batch, traj.iterate_step):
        for none in (np.zeros(traj.num_step, dtype=bool), np.array([], dtype=np.int64)):
            with pytest.raises(ValueError, match="indices: expected at least one step, got none"):
                next(call(2, indices=none))


def test_fifo_refuses_an_episode_longer_than_the_bound(rng):
    epis = make_random_epis(rng, 3, max_len=15)
    epis[1] = make_random_epis(rng, 1, max_len=1)[0]
    long = {
        **epis[0],
        **{k: np.concatenate([v] * 20) for k, v in epis[0].items() if k not in ("a_is", "e_is")},
    }
    long["a_is"] = {k: np.concatenate([v] * 20) for k, v in epis[0]["a_is"].items()}
    long["e_is"] = {k: np.concatenate([v] * 20) for k, v in epis[0]["e_is"].items()}
    memory = Traj(max_steps=len(long["rews"]) - 1)
    with pytest.raises(ValueError, match="max_steps"):
        memory.add_traj(make_traj([long]))


def test_add_traj_does_not_share_storage(rng):
    source = make_traj(make_random_epis(rng, 3))
    memory = Traj(max_steps=1000)
    memory.add_traj(source)
    memory.data_map["rews"][0] += 1.0
    assert memory.data_map["rews"][0] != source.data_map["rews"][0]


def test_add_traj_into_a_traj_with_pending_episodes_warns(rng):
    """machina 0.x's run_mpc.py: ``traj = ef.normalize_obs_and_acs(curr_traj, ...)`` then
    ``traj.add_traj(curr_traj)``. 0.x normalised curr_traj in place; here the estimator's
    result holds the normalised episodes, pending, and curr_traj keeps the raw ones: the
    receiver's pending episodes are named in a warning instead of being silently left out."""
    curr = Traj()
    curr.add_epis(make_random_epis(rng, 2))
    curr = ef.add_next_obs(curr)
    traj, *_ = ef.normalize_obs_and_acs(curr)
    curr.register_epis()
    with pytest.warns(UserWarning, match="holds 2 pending episodes .* register_epis"):
        traj.add_traj(curr)
    memory = Traj()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory.add_traj(curr)  # the usual case: nothing pending in the receiver


def test_add_traj_of_itself_doubles_its_episodes_through_the_fifo(rng):
    epis = make_random_epis(rng, 4, max_len=5)
    for bound in (None, sum(len(e["rews"]) for e in epis) + 3):
        memory = Traj(max_steps=bound)
        for epi in epis:  # in its own buffers, which the FIFO compacts in place
            memory.add_traj(make_traj([epi]))
        rows = [e["rews"] for e in epis]
        memory.add_traj(memory)
        kept = rows + rows
        while bound is not None and sum(map(len, kept)) > bound:
            kept = kept[1:]  # the FIFO drops the oldest whole episodes
        np.testing.assert_array_equal(memory.data_map["rews"].numpy(), np.concatenate(kept))
        assert memory.num_epi == len(kept)


def test_info_key_clash_and_empty_episode_are_refused(rng):
    epis = make_random_epis(rng, 2)
    for epi in epis:
        epi["e_is"]["mean"] = np.zeros(len(epi["rews"]))
    traj = Traj()
    with pytest.raises(ValueError, match="a_is and e_is"):
        traj.add_epis(epis)
    empty = {
        k: (v[:0] if isinstance(v, np.ndarray) else {kk: vv[:0] for kk, vv in v.items()})
        for k, v in make_random_epis(rng, 1)[0].items()
    }
    with pytest.raises(ValueError, match="at least one step"):
        traj.add_epis([empty])
    assert traj.pending is None


def test_original_argument_names_and_numpy_batch_size(rng):
    traj = Traj(traj_device="cpu")
    traj.add_epis(make_random_epis(rng, 4))
    traj.register_epis()
    assert traj.device == torch.device("cpu")
    assert len(next(traj.iterate(np.int64(4)))["obs"]) == 4


def test_pending_episodes_are_flat_and_read_back_as_episodes(rng):
    epis = make_random_epis(rng, 8)
    before = copy.deepcopy(epis)
    traj = Traj()
    traj.add_epis(epis)
    lengths = [len(e["rews"]) for e in epis]
    np.testing.assert_array_equal(traj.pending.lengths, lengths)
    np.testing.assert_array_equal(
        traj.pending.columns["obs"], np.concatenate([e["obs"] for e in epis])
    )
    assert traj.pending.groups == {"mean": "a_is", "x_pos": "e_is"}
    # current_epis: the same episodes back, as views of the flat columns.
    assert len(traj.current_epis) == 8
    for epi, back in zip(epis, traj.current_epis):
        assert set(back) == set(epi)
        for key in ("obs", "rews", "terms", "truncs", "next_obs"):
            np.testing.assert_array_equal(back[key], epi[key])
            assert back[key].dtype == epi[key].dtype
            assert np.shares_memory(back[key], traj.pending.columns[key])
        np.testing.assert_array_equal(back["a_is"]["mean"], epi["a_is"]["mean"])
        np.testing.assert_array_equal(back["e_is"]["x_pos"], epi["e_is"]["x_pos"])
    assert traj.current_epis is traj.current_epis  # built once
    # The given arrays were copied, not adopted: the Traj never writes into them.
    assert not np.shares_memory(traj.pending.columns["obs"], epis[0]["obs"])
    traj.register_epis()
    assert traj.pending is None and traj.current_epis is None
    for epi, old in zip(epis, before):
        np.testing.assert_array_equal(epi["obs"], old["obs"])


def test_current_epis_assignment_replaces_the_pending_episodes(rng):
    traj = Traj()
    traj.add_epis(make_random_epis(rng, 3))
    epis = make_random_epis(rng, 5)
    traj.current_epis = epis
    assert traj.pending.num_epi == 5 and len(traj.current_epis) == 5
    traj.register_epis()
    assert traj.num_epi == 5
    traj.current_epis = make_random_epis(rng, 2)
    traj.current_epis = None
    with pytest.raises(ValueError, match="register_epis"):
        traj.register_epis()
    traj.add_epis([])
    assert traj.current_epis == []
    with pytest.raises(ValueError, match="register_epis"):
        traj.register_epis()


def test_register_of_flat_pending_equals_columns_of_the_episodes(rng):
    first, second = make_random_epis(rng, 4), make_random_epis(rng, 6)
    traj = Traj()
    traj.add_epis(first)
    traj.register_epis()
    traj.add_epis(second)
    traj.register_epis()
    both = first + second
    assert traj.num_epi == 10
    np.testing.assert_array_equal(traj.epis_index, np.cumsum([0] + [len(e["rews"]) for e in both]))
    np.testing.assert_array_equal(
        traj.data_map["mean"].numpy(), np.concatenate([e["a_is"]["mean"] for e in both])
    )
    for epi, back in zip(both, traj.epis()):
        np.testing.assert_array_equal(back["acs"], epi["acs"])
        np.testing.assert_array_equal(back["e_is"]["x_pos"], epi["e_is"]["x_pos"])


def _columns_of(epis):
    return make_traj(epis).data_map


def test_many_small_add_traj_equal_the_newest_whole_episodes(rng):
    bound = 50
    memory = Traj(max_steps=bound)
    added = []
    caps = set()
    for _ in range(40):
        epis = make_random_epis(rng, int(rng.integers(1, 3)), max_len=12)
        added.extend(epis)
        memory.add_traj(make_traj(epis))
        if memory.num_epi < len(added):  # full: evicting
            caps.add(len(next(iter(memory._bufs.values()))))
        lengths = [len(e["rews"]) for e in added]
        keep = 0
        while keep < len(added) and sum(lengths[len(lengths) - keep - 1 :]) <= bound:
            keep += 1
        reference = _columns_of(added[-keep:])
        assert memory.num_epi == keep
        np.testing.assert_array_equal(
            memory.epis_index, np.concatenate([[0], np.cumsum(lengths[-keep:])])
        )
        assert set(memory.data_map) == set(reference)
        for k, col in reference.items():
            assert memory.data_map[k].dtype == col.dtype
            assert torch.equal(memory.data_map[k], col), k
    # Once full, compaction moves rows to the front instead of growing: one buffer, bounded
    # capacity (before that it grows with the data, max_steps being only a cap).
    assert len(caps) == 1 and max(caps) <= bound + 2 * 12


def test_data_map_views_after_eviction(rng):
    memory = Traj(max_steps=40)
    for _ in range(12):
        memory.add_traj(make_traj(make_random_epis(rng, 2, max_len=10)))
        for k, col in memory.data_map.items():
            assert col.shape[0] == memory.num_step
            buf = memory._bufs[k]
            assert col.untyped_storage().data_ptr() == buf.untyped_storage().data_ptr()
        back = memory.epis()
        assert sum(len(e["rews"]) for e in back) == memory.num_step
        np.testing.assert_array_equal(
            np.concatenate([e["rews"] for e in back]), memory.data_map["rews"].numpy()
        )


def test_appends_of_a_narrower_dtype_than_stored_grow_geometrically(rng):
    # One float64 batch widens the stored columns; later float32 batches fit into them
    # (copied up), so appends regrow the buffers O(log) times, not at every add.
    memory = Traj()
    wide = make_random_epis(rng, 2, max_len=10)
    for e in wide:
        e["rews"] = e["rews"].astype(np.float64)
    memory.add_traj(make_traj(wide))
    added = list(wide)
    buffers = set()
    for _ in range(60):
        epis = make_random_epis(rng, 2, max_len=10)
        added.extend(epis)
        memory.add_traj(make_traj(epis))
        buffers.add(memory._bufs["rews"].untyped_storage().data_ptr())
    assert len(buffers) <= 12  # about log(61 / 2) / log(growth); 60 when every add regrew
    assert memory.data_map["rews"].dtype == torch.float64
    reference = np.concatenate([e["rews"] for e in added]).astype(np.float64)
    np.testing.assert_array_equal(memory.data_map["rews"].numpy(), reference)


def test_save_load_after_eviction(rng, tmp_path):
    memory = Traj(max_steps=40)
    for _ in range(12):
        memory.add_traj(make_traj(make_random_epis(rng, 2, max_len=10)))
    path = tmp_path / "fifo.npz"
    memory.save(path)
    loaded = Traj.load(path)
    np.testing.assert_array_equal(loaded.epis_index, memory.epis_index)
    for k, col in memory.data_map.items():
        assert loaded.data_map[k].dtype == col.dtype
        assert torch.equal(loaded.data_map[k], col)
    with np.load(path, allow_pickle=False) as f:
        assert len(f["col:rews"]) == memory.num_step  # only the live rows are written
    # The loaded Traj keeps working as a FIFO.
    loaded.add_traj(make_traj(make_random_epis(rng, 2, max_len=10)))
    assert loaded.num_step <= 40


def test_unbounded_appends_and_shallow_copies_do_not_corrupt_each_other(rng):
    epis = [make_random_epis(rng, 3) for _ in range(6)]
    traj = Traj()
    for e in epis[:3]:
        traj.add_epis(e)
        traj.register_epis()
    snapshot = {k: v.clone() for k, v in traj.data_map.items()}
    twin = copy.copy(traj)
    twin.add_epis(epis[3])
    twin.register_epis()
    traj.add_epis(epis[4])
    traj.register_epis()
    for k, v in snapshot.items():
        assert torch.equal(twin.data_map[k][: len(v)], v)
    expected = _columns_of([x for e in (*epis[:3], epis[4]) for x in e])
    for k, v in expected.items():
        assert torch.equal(traj.data_map[k], v)
    expected = _columns_of([x for e in epis[:4] for x in e])
    for k, v in expected.items():
        assert torch.equal(twin.data_map[k], v)


def test_growth_of_memory_mapped_columns_keeps_every_row(rng):
    # Columns past 1 MB live in their own memory maps, whose old pages are released while an
    # unbounded Traj grows; a shallow copy or episodes viewing the columns must keep their rows.
    traj, stored, snapshot = Traj(), [], None
    for round_ in range(12):
        epis = []
        for _ in range(4):
            length = int(rng.integers(500, 3000))
            obs = rng.standard_normal((length, 64)).astype(np.float32)
            flags = np.zeros(length, dtype=bool)
            epis.append(
                dict(
                    obs=obs,
                    acs=obs[:, :2].copy(),
                    rews=obs[:, 0].copy(),
                    next_obs=obs,
                    terms=flags,
                    truncs=flags,
                    dones=flags,
                )
            )
            stored.append(obs)
        traj.add_epis(epis)
        traj.register_epis()
        if round_ == 5:
            twin, snapshot = copy.copy(traj), traj.data_map["obs"].clone()
        if round_ == 7:
            held = traj.epis()  # views of the columns: their rows must survive growth
            held_copy = [e["obs"].copy() for e in held]
    assert traj.data_map["obs"].untyped_storage().nbytes() > 1 << 20
    assert torch.equal(traj.data_map["obs"], torch.as_tensor(np.concatenate(stored)))
    assert torch.equal(traj.data_map["rews"], torch.as_tensor(np.concatenate(stored)[:, 0]))
    assert torch.equal(twin.data_map["obs"], snapshot)
    assert all(np.array_equal(e["obs"], c) for e, c in zip(held, held_copy))


# ---------------------------------------------------------------- the batch generator
def _draws(traj):
    """One batch of every kind of draw, as the indices it took (obs rows are distinct)."""
    traj.data_map["pris"] = torch.rand(traj.num_step, generator=torch.Generator().manual_seed(0))
    return [
        *(b["obs"] for b in traj.iterate(16, epoch=2)),
        traj.random_batch_once(8)["obs"],
        traj.random_batch_once(8, np.arange(0, traj.num_step, 2))["obs"],
        next(traj.iterate_rnn(3))["obs"],
        traj.random_batch_rnn(4, 3, epoch=1).__next__()["obs"],
        traj.prioritized_random_batch_once(8)["obs"],
        traj.prioritized_random_batch_once(8, mode="rank_based")["obs"],
        torch.cat([e["obs"] for e in traj.iterate_epi()]),
    ]


def _assert_same_draws(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_batches_come_from_the_traj_s_generator_not_the_global_one(rng):
    """Issue 10: the global RNG drawn from between batches (a policy sampling actions in a
    loss) does not change the orders; a global seed makes them reproducible; the global
    stream moves by one draw per Traj, not one per batch."""
    epis = make_random_epis(rng, 10)
    torch.manual_seed(3)
    quiet = _draws(make_traj(epis))
    after_quiet = torch.rand(4)
    torch.manual_seed(3)
    traj = make_traj(epis)
    noisy = []
    for batch in traj.iterate(16, epoch=2):
        torch.rand(len(batch["obs"]))  # global draws between batches
        noisy.append(batch["obs"])
    torch.manual_seed(3)
    _assert_same_draws(noisy, quiet[: len(noisy)])
    torch.manual_seed(3)
    torch.randint(0, 2**63 - 1, (1,))  # the one draw that seeded the Traj's generator
    assert torch.equal(torch.rand(4), after_quiet)
    # another global seed, other orders
    torch.manual_seed(4)
    assert not torch.equal(_draws(make_traj(epis))[0], quiet[0])


def test_seed_fixes_the_orders_whatever_the_global_seed(rng):
    epis = make_random_epis(rng, 10)
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        traj = Traj(seed=7)
        traj.add_epis(epis)
        traj.register_epis()
        runs.append(_draws(traj))
    _assert_same_draws(runs[0], runs[1])
    other = Traj(seed=8)
    other.add_epis(epis)
    other.register_epis()
    assert not torch.equal(_draws(other)[0], runs[0][0])
    assert torch.equal(
        Traj(seed=7).generator.get_state(), torch.Generator().manual_seed(7).get_state()
    )
    for bad in (1.5, "7", True, 2**64):
        with pytest.raises(ValueError, match=r"seed: expected an int"):
            Traj(seed=bad)


def test_save_load_continues_the_draws(rng, tmp_path):
    """The generator's state travels with the file: a loaded Traj draws what the saved one
    would have drawn next (for a run resumed from a checkpoint)."""
    traj = make_traj(make_random_epis(rng, 10))
    _draws(traj)  # the generator is seeded and has moved
    traj.save(tmp_path / "t.npz")
    loaded = Traj.load(tmp_path / "t.npz")
    torch.manual_seed(0)  # the global RNG plays no part
    _assert_same_draws(_draws(loaded), _draws(traj))
    # a Traj never drawn from saves no state: loaded, it seeds from the global RNG as it would
    fresh = make_traj(make_random_epis(rng, 3))
    fresh.save(tmp_path / "fresh.npz")
    with np.load(tmp_path / "fresh.npz") as f:
        assert "rng_state" not in f.files
    assert "rng_state" in np.load(tmp_path / "t.npz").files


def test_copies_draw_what_the_traj_would_and_leave_its_generator_alone(rng):
    from machina.traj import epi_functional as ef

    epis = make_random_epis(rng, 6)
    traj = Traj(seed=1)
    traj.add_epis(epis)
    # the estimators return copies: their draws continue the seeded stream
    traj = ef.set_all_pris(traj, 1.0)
    traj.register_epis()
    seeded = Traj(seed=1)
    seeded.add_epis(epis)
    seeded.register_epis()
    assert torch.equal(next(traj.iterate(8))["obs"], next(seeded.iterate(8))["obs"])
    # a copy (shallow or deep) draws what the Traj draws next, without moving it
    for make_copy in (copy.copy, copy.deepcopy):
        copied = make_copy(traj)
        state = traj.generator.get_state()
        a = next(copied.iterate(8))["obs"]
        assert torch.equal(traj.generator.get_state(), state)
        assert torch.equal(next(traj.iterate(8))["obs"], a)
    # unseeded, a copy seeds itself at its own first draw (from the global RNG)
    unseeded = make_traj(epis)
    torch.manual_seed(5)
    a = next(copy.copy(unseeded).iterate(8))["obs"]
    torch.manual_seed(5)
    assert torch.equal(next(unseeded.iterate(8))["obs"], a)


def test_a_bad_generator_state_in_a_file_names_the_path(rng, tmp_path):
    traj = make_traj(make_random_epis(rng, 3))
    traj.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as f:
        members = dict(f)
    np.savez(tmp_path / "bad.npz", **members, rng_state=np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match=r"Traj.load: .*bad.npz: rng_state: not a CPU gen"):
        Traj.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", **members, rng_state=np.zeros(7, np.float32))
    with pytest.raises(ValueError, match=r"bad2.npz: rng_state: expected a 1-d uint8 array"):
        Traj.load(tmp_path / "bad2.npz")


def test_batches_follow_columns_replaced_written_or_made_to_require_grad(rng):
    """The numpy views batches are gathered through are made once per column object: a
    column replaced, written in place, appended to (the buffers regrown) or set to require
    grad after a batch is gathered as it is now; a pickle carries no view (its size is the
    columns' alone)."""
    traj = make_traj(make_random_epis(rng, 6), max_steps=None)
    batch, idx = traj.random_batch_once(9, return_indices=True)
    traj.data_map["rews"] = traj.data_map["rews"] * 2.0  # a new column object
    traj.data_map["obs"].mul_(3.0)  # the same object, written
    more = make_traj(make_random_epis(rng, 3))
    traj.add_traj(more)  # new views of grown buffers
    traj.random_batch_once(9)  # views of the new columns made
    traj.data_map["acs"].requires_grad_(True)  # the same object, in the graph now
    batch, idx = traj.random_batch_once(9, return_indices=True)
    for key, column in traj.data_map.items():
        torch.testing.assert_close(batch[key], column[idx], rtol=0, atol=0)
    assert batch["acs"].requires_grad  # gathered by torch, in the graph
    # the columns, not also their views: as large as a copy that never gathered a batch
    assert len(pickle.dumps(traj)) < 1.2 * len(pickle.dumps(copy.copy(traj)))
    clone = pickle.loads(pickle.dumps(traj))
    batch, idx = clone.random_batch_once(9, return_indices=True)
    for key, column in clone.data_map.items():
        torch.testing.assert_close(batch[key], column[idx], rtol=0, atol=0)
    # share_memory_ (torch.multiprocessing's pickler calls it) moves a column's memory under
    # the same object, the old memory freed: a view kept by object alone read freed memory
    for column in clone.data_map.values():
        column.share_memory_()
    clone.data_map["obs"].add_(1.0)
    batch, idx = clone.random_batch_once(9, return_indices=True)
    for key, column in clone.data_map.items():
        torch.testing.assert_close(batch[key], column[idx], rtol=0, atol=0)


def test_batches_are_copies_of_the_rows_for_every_dtype(rng):
    """CPU batches of rows of several values are gathered by numpy where it holds the dtype,
    by torch where it does not (bfloat16, a column that requires grad), single values by
    torch: the same rows either way, never views."""
    traj = make_traj(make_random_epis(rng, 6))
    n = traj.num_step
    traj.data_map["half"] = torch.randn(n, 2).to(torch.bfloat16)
    traj.data_map["grad"] = torch.randn(n, 2, requires_grad=True)
    traj.data_map["ints"] = torch.arange(n, dtype=torch.int64)
    batch, idx = traj.random_batch_once(11, return_indices=True)
    for key, column in traj.data_map.items():
        assert batch[key].dtype == column.dtype, key
        torch.testing.assert_close(batch[key], column[idx], rtol=0, atol=0)
    batch["obs"].add_(1.0)
    torch.testing.assert_close(traj.data_map["obs"][idx] + 1.0, batch["obs"], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_recurrent_batches_of_a_wide_unsigned_column(dtype):
    """torch has no index_select for 1-D uint16/32/64 tensors: the sequence batches of such
    a column (frame numbers, say) raised NotImplementedError; they hold its values."""
    epis = [
        {
            "obs": np.zeros((n, 2), np.float32),
            "rews": np.zeros(n, np.float32),
            "e_is": {"frame": np.arange(n, dtype=dtype) + 7},
        }
        for n in (4, 3)
    ]
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    batch = next(traj.iterate_rnn(2))
    frames = batch["frame"]
    assert frames.dtype == getattr(torch, np.dtype(dtype).name)
    masks = batch["out_masks"].bool()
    assert sorted(frames[masks].tolist()) == sorted([7, 8, 9, 10, 7, 8, 9])
    window = next(traj.random_batch_rnn(2, seq_length=2))
    assert window["out_masks"].shape == (2, 2)


def test_a_complex_column_saves_and_loads(tmp_path):
    """add_epis and save took complex numbers; load refused them (a checkpoint holding such
    a Traj could not resume)."""
    traj = Traj()
    obs = (np.arange(6) + 1j * np.arange(6)).astype(np.complex64).reshape(3, 2)
    traj.add_epis([{"obs": obs, "rews": np.zeros(3, np.float32)}])
    traj.register_epis()
    traj.save(tmp_path / "c.npz")
    loaded = Traj.load(tmp_path / "c.npz")
    assert torch.equal(loaded.data_map["obs"], traj.data_map["obs"])


def test_add_epis_names_the_key_and_episode_of_bad_steps():
    """numpy's bare 'all the input array dimensions...' and torch's 'can't convert
    np.ndarray of type numpy.str_' (at register_epis) named no key."""
    epis = [
        {"obs": np.zeros((2, 3), np.float32), "rews": np.zeros(2, np.float32)},
        {"obs": np.zeros((2, 4), np.float32), "rews": np.zeros(2, np.float32)},
    ]
    with pytest.raises(ValueError, match=r"epis\[1\]\['obs'\]: expected steps of shape \(3,\)"):
        Traj().add_epis(epis)
    epis[1]["obs"] = np.zeros((2, 3), np.float32)
    for epi in epis:
        epi["e_is"] = {"name": np.array(["a", "b"])}
    with pytest.raises(
        ValueError, match=r"epis\[0\]\['e_is.name'\]: expected numbers .* got dtype <U1"
    ):
        Traj().add_epis(epis)


def test_a_refused_append_evicts_nothing():
    """The FIFO eviction count (what a rank-based order is shifted by) moved on an append
    that was then refused."""

    def epi(n, d=2):
        return {"obs": np.zeros((n, d), np.float32), "rews": np.zeros(n, np.float32)}

    traj = Traj(max_steps=6)
    traj.add_epis([epi(3), epi(3)])
    traj.register_epis()
    traj.add_epis([epi(3, d=5)])
    with pytest.raises(ValueError):
        traj.register_epis()
    assert getattr(traj, "_evicted", 0) == 0 and traj.num_step == 6
    traj.add_epis([epi(3)])
    traj.register_epis()
    assert traj._evicted == 3 and traj.num_step == 6
