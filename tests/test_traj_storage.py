"""Traj storage: the memory-management assumptions checked against the installed torch."""

import gc

import numpy as np
import torch

from machina.traj import Traj, _storage


def big_traj(rng, rounds=2) -> Traj:
    """An unbounded Traj whose obs buffer (> 1 MB) lives in its own memory map."""
    traj = Traj()
    for _ in range(rounds):
        length = 3000
        obs = rng.standard_normal((length, 128)).astype(np.float32)
        traj.add_epis([{"obs": obs, "rews": obs[:, 0].copy()}])
        traj.register_epis()
    return traj


def test_the_storage_use_count_counts_the_owners_torch_is_assumed_to_have(rng):
    # _unshared() releases a buffer's pages while growing only when no tensor but the
    # Traj's own views its storage, which it reads from torch's use count of the storage with
    # a fixed number of owners. A torch release that counts differently fails here.
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    assert use_count is not None, "torch._C._storage_Use_Count is gone: pages are never freed"
    traj = big_traj(rng)
    buf = traj._bufs["obs"]
    assert _storage._is_mapped(buf)
    storage = buf.untyped_storage()
    assert use_count(storage._cdata) == _storage._OWNED_HOLDERS + 1
    del storage
    assert _storage._unshared(buf)
    held = traj.data_map["obs"][:10]  # a view somebody kept
    assert not _storage._unshared(buf)
    del held
    gc.collect()
    assert _storage._unshared(buf)
    episodes = traj.epis()  # numpy views of the columns
    assert not _storage._unshared(buf)
    del episodes
    gc.collect()
    assert _storage._unshared(buf)


def test_growing_with_a_kept_view_keeps_its_rows(rng):
    traj = big_traj(rng)
    held = traj.data_map["obs"]
    before = held.clone()
    for _ in range(3):  # grows: the old buffer is dropped, but not released under `held`
        obs = rng.standard_normal((3000, 128)).astype(np.float32)
        traj.add_epis([{"obs": obs, "rews": obs[:, 0].copy()}])
        traj.register_epis()
    assert torch.equal(held, before)
