"""The original machina's Traj, ef and tf calls, in its positional forms, beside the new ones."""

import inspect

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.nets import PolNetLSTM, QNetLSTM
from machina.pols import TanhGaussianPol
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.traj import traj_functional as tf
from machina.vfuncs import DeterministicSAVfunc


def make_traj(epis, *args, **kwargs):
    traj = Traj(*args, **kwargs)
    traj.add_epis(epis)
    traj.register_epis()
    return traj


def test_an_original_style_script_runs(rng):
    """Calls as the original machina's examples and tests write them, positional included."""
    epis = make_random_epis(rng, 12, max_len=10)
    traj = Traj(None, "cpu")  # (max_steps, traj_device)
    traj.add_epis(epis)
    traj = ef.set_all_pris(traj, traj.get_max_pri())
    traj = ef.compute_h_masks(traj)
    traj.register_epis()
    off_traj = Traj(max_steps=10**12, traj_device="cpu", ddp=False)
    off_traj.add_traj(traj)
    n = traj.num_step
    assert sum(len(b["obs"]) for b in traj.iterate_once(8, None, True)) == n
    assert sum(len(b["obs"]) for b in traj.iterate(8, 2, None, False)) == 2 * n
    assert len(list(traj.iterate_step(8, 3))) == 3
    batch, indices = traj.random_batch_once(8, None, True)
    assert len(indices) == 8
    for batch, indices in traj.random_batch(4, 2, None, True):
        assert torch.equal(batch["obs"], traj.data_map["obs"][indices])
    assert len(list(traj.random_batch(4, 3))) == 3
    (full, all_indices), *_ = traj.full_batch(1, True)
    assert torch.equal(all_indices, torch.arange(n)) and len(full["obs"]) == n
    assert len(list(traj.iterate_epi(False))) == traj.num_epi
    copied = Traj()
    copied.copy(off_traj)
    assert copied.num_step == n and copied.num_epi == traj.num_epi
    assert (copied.rank, copied.world_size) == (0, 1)


def test_the_original_signatures_are_kept():
    """Each original positional order is a prefix of ours (the new parameters come after)."""
    original = {
        Traj.__init__: ["self", "max_steps", "traj_device", "ddp"],
        Traj.copy: ["self", "traj"],
        Traj.iterate_once: ["self", "batch_size", "indices", "shuffle"],
        Traj.iterate: ["self", "batch_size", "epoch", "indices", "shuffle"],
        Traj.iterate_step: ["self", "batch_size", "step", "indices", "shuffle"],
        Traj.random_batch_once: ["self", "batch_size", "indices", "return_indices"],
        Traj.random_batch: ["self", "batch_size", "epoch", "indices", "return_indices"],
        Traj.random_batch_rnn: ["self", "batch_size", "seq_length", "epoch"],
        Traj.full_batch: ["self", "epoch", "return_indices"],
        Traj.iterate_epi: ["self", "shuffle"],
        Traj.iterate_rnn: ["self", "batch_size", "num_epi_per_seq", "epoch"],
        Traj.prioritized_random_batch: ["self", "batch_size", "epoch", "return_indices"],
        ef.compute_hs: ["data", "func", "hs_name", "input_acs"],
        tf.sync: ["traj", "master_rank"],
    }
    for fn, names in original.items():
        params = list(inspect.signature(fn).parameters)
        assert params[: len(names)] == names, fn.__qualname__


def test_indices_restrict_every_batching_method_to_those_steps(rng):
    traj = make_traj(make_random_epis(rng, 10, max_len=10))
    chosen = np.arange(1, traj.num_step, 3)
    seen = torch.cat([b["obs"] for b in traj.iterate(5, 1, chosen)])
    expected = traj.data_map["obs"][torch.as_tensor(chosen)]
    # every chosen step exactly once, in some order
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, expected.tolist()))
    in_order = torch.cat([b["obs"] for b in traj.iterate_once(4, chosen, False)])
    assert torch.equal(in_order, expected)
    for _, drawn in traj.random_batch(len(chosen), 3, chosen, True):
        assert set(drawn.tolist()) <= set(chosen.tolist())
    mask = np.zeros(traj.num_step, dtype=bool)
    mask[chosen] = True
    masked = torch.cat([b["obs"] for b in traj.iterate_once(4, mask, False)])
    assert torch.equal(masked, expected)
    for bad, message in [
        (np.array([0.5]), "int step indices"),
        (np.array([traj.num_step]), f"in \\[0, {traj.num_step}\\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            next(traj.iterate(1, 1, bad))


def test_iterate_step_cycles_through_one_order(rng):
    traj = make_traj(make_random_epis(rng, 4, max_len=6))
    n = traj.num_step
    batches = [b["obs"] for b in traj.iterate_step(4, step=2 * (-(-n // 4)), shuffle=False)]
    chunks = list(torch.split(traj.data_map["obs"], 4))
    for i, batch in enumerate(batches):
        assert torch.equal(batch, chunks[i % len(chunks)])


def test_iterate_epi_yields_whole_episodes(rng):
    epis = make_random_epis(rng, 6, max_len=8)
    traj = make_traj(epis)
    for epi, got in zip(epis, traj.iterate_epi(shuffle=False)):
        np.testing.assert_array_equal(got["obs"].numpy(), epi["obs"])
    shuffled = list(traj.iterate_epi())
    assert sorted(len(e["obs"]) for e in shuffled) == sorted(len(e["obs"]) for e in epis)


def test_copy_shares_rows_without_writing_into_the_source(rng):
    source = make_traj(make_random_epis(rng, 3), max_steps=200)
    before = source.data_map["obs"].clone()
    copied = Traj()
    copied.copy(source)
    assert copied.max_steps == 200 and copied.num_step == source.num_step
    copied.add_traj(make_traj(make_random_epis(rng, 2)))
    assert torch.equal(source.data_map["obs"], before)
    with pytest.raises(TypeError, match="traj: expected a Traj"):
        copied.copy(source.data_map)


def _spaces():
    return gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32)


@pytest.mark.parametrize("input_acs", [False, True])
def test_compute_hs_is_the_state_entering_each_step(rng, input_acs):
    torch.manual_seed(0)
    ob, ac = _spaces()
    if input_acs:
        func = DeterministicSAVfunc(ob, ac, QNetLSTM(ob, ac, 8, 8), rnn=True)
    else:
        func = TanhGaussianPol(ob, ac, PolNetLSTM(ob, ac, 8, 8), rnn=True)
    epis = [
        dict(
            obs=rng.normal(size=(length, 3)).astype(np.float32),
            acs=rng.normal(size=(length, 1)).astype(np.float32),
            rews=np.zeros(length, dtype=np.float32),
        )
        for length in (1, 5, 3)
    ]
    traj = Traj()
    traj.add_epis(epis)
    state = torch.get_rng_state()
    out = ef.compute_hs(traj, func, hs_name="q_hs", input_acs=input_acs).current_epis
    assert torch.equal(torch.get_rng_state(), state)  # the policy's draws leave no trace
    as_list = ef.compute_hs(epis, func, "q_hs", input_acs)
    for epi, got, listed in zip(epis, out, as_list):
        np.testing.assert_array_equal(got["q_hs"], listed["q_hs"])
        assert got["q_hs"].shape == (len(epi["obs"]), 2, 8) and got["q_hs"].dtype == np.float32
        np.testing.assert_array_equal(got["q_hs"][0], 0.0)  # the initial state
        for t in range(1, len(epi["obs"])):
            # reference: the whole prefix [0, t) in one recurrent call from the initial state
            inputs = [torch.as_tensor(epi["obs"][:t])[:, None]]
            if input_acs:
                inputs.append(torch.as_tensor(epi["acs"][:t])[:, None])
            with torch.no_grad():
                func(*inputs, hs=func.net.init_hs(1), h_masks=torch.zeros(t, 1, 1))
            h, c = func.hs
            ref = np.stack([h[:, 0].reshape(-1).numpy(), c[:, 0].reshape(-1).numpy()])
            # float32 LSTM arithmetic, step by step vs one sequence: a few ulps
            np.testing.assert_allclose(got["q_hs"][t], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="func: compute_hs needs a recurrent module"):
        ef.compute_hs(epis, lambda obs: obs)


def test_sync_without_a_process_group_returns_the_traj(rng):
    traj = make_traj(make_random_epis(rng, 2))
    assert tf.sync(traj) is traj
