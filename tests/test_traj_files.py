"""Traj files: atomic saves, validated loads; max_steps as a cap; add_traj of pending episodes."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.traj import Traj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_traj(epis, max_steps=None):
    traj = Traj(max_steps=max_steps)
    traj.add_epis(epis)
    traj.register_epis()
    return traj


def assert_same(a: Traj, b: Traj) -> None:
    np.testing.assert_array_equal(a.epis_index, b.epis_index)
    assert set(a.data_map) == set(b.data_map)
    for k, v in a.data_map.items():
        assert torch.equal(v, b.data_map[k]), k


# A child that saves a Traj of about 40 MB over `path`: long enough to be killed half way.
SAVE_BIG = """
import sys
import numpy as np
from machina.traj import Traj
n = 2_000_000
traj = Traj()
traj.add_epis([{"obs": np.random.default_rng(1).normal(size=(n, 4)).astype(np.float32),
                "rews": np.ones(n, dtype=np.float32)}])
traj.register_epis()
print("ready", flush=True)
traj.save(sys.argv[1])
"""


def test_a_save_killed_half_way_leaves_the_previous_file_intact(rng, tmp_path):
    path = str(tmp_path / "replay.npz")
    previous = make_traj(make_random_epis(rng, 5))
    previous.save(path)
    env = {**os.environ, "PYTHONPATH": ROOT}
    landed = 0
    for _attempt in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_BIG, path], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 60
            pattern = str(tmp_path / ".replay.npz.*.tmp")
            while not glob.glob(pattern) and child.poll() is None:
                assert time.monotonic() < deadline, "the child never started writing"
                time.sleep(0.001)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
            child.stdout.close()
        if glob.glob(pattern):  # killed while its temporary file was still being written
            landed += 1
            assert_same(Traj.load(path), previous)
            # the killed writer's temporary (as big as the file) goes with the next save
            previous.save(path)
            assert not glob.glob(pattern)
        else:  # the save completed first: that file is whole too; restore and try again
            assert Traj.load(path).num_step == 2_000_000
            previous.save(path)
        if landed:
            break
    assert landed, "no kill landed during a save in 5 attempts"


def test_save_writes_exactly_the_given_name_and_leaves_no_temporary(rng, tmp_path):
    traj = make_traj(make_random_epis(rng, 3))
    traj.save(tmp_path / "memory.bin")
    traj.save(tmp_path / "memory.bin")  # over an existing file
    assert sorted(os.listdir(tmp_path)) == ["memory.bin"]
    assert_same(Traj.load(tmp_path / "memory.bin"), traj)


def _write(path, **members):
    with open(path, "wb") as f:
        np.savez(f, **members)


def _good_members(rng):
    traj = make_traj(make_random_epis(rng, 3, max_len=5), max_steps=100)
    traj.pri_beta = 0.5
    members = {f"col:{k}": v.numpy() for k, v in traj.data_map.items()}
    members.update(
        epis_index=traj.epis_index,
        group_keys=np.array(list(traj.groups)),
        group_names=np.array(list(traj.groups.values())),
        max_steps=np.array(100),
        pri_beta=np.array(0.5),
    )
    return traj, members


def test_a_crafted_valid_file_loads(rng, tmp_path):
    traj, members = _good_members(rng)
    _write(tmp_path / "ok.npz", **members)
    loaded = Traj.load(tmp_path / "ok.npz")
    assert_same(loaded, traj)
    assert loaded.max_steps == 100 and loaded.pri_beta == 0.5 and loaded.groups == traj.groups


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda m, n: m.update(epis_index=np.array([0, 10, 999999])), "to end at the columns'"),
        (lambda m, n: m.update(epis_index=np.array([1, n])), "start at 0, got 1"),
        (lambda m, n: m.update(epis_index=np.array([0, 4, 4, n])), "strictly increasing"),
        (lambda m, n: m.update(epis_index=np.array([0, n - 1])), "to end at the columns'"),
        (lambda m, n: m.update(epis_index=np.array([0.0, n])), "integer array"),
        (lambda m, n: m.update({"col:obs": m["col:obs"][:-1]}), "col:obs: expected a first axis"),
        (lambda m, n: m.pop("epis_index"), "missing member(s) ['epis_index']"),
        (lambda m, n: m.pop("group_keys"), "missing member(s) ['group_keys']"),
        (lambda m, n: m.update(max_steps=np.array(2)), "exceed the file's max_steps 2"),
        (lambda m, n: m.update(pri_beta=np.array(7.0)), "pri_beta: expected"),
        (lambda m, n: m.update(group_names=np.array(["x_is"] * len(m["group_keys"]))), "group"),
        (lambda m, n: m.update(extra=np.zeros(2)), "unknown member(s) ['extra']"),
        (lambda m, n: m.update(bfloat16_keys=np.array(["obs"])), "bfloat16_keys: expected"),
        (lambda m, n: [m.pop(k) for k in [k for k in m if k.startswith("col:")]], "no 'col:"),
    ],
)
def test_load_names_the_path_and_what_is_wrong(rng, tmp_path, change, message):
    traj, members = _good_members(rng)
    change(members, traj.num_step)
    path = tmp_path / "bad.npz"
    _write(path, **members)
    with pytest.raises(ValueError) as info:
        Traj.load(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_a_column_removed_from_a_saved_archive_is_named(rng, tmp_path):
    """Traj.save lists its columns (column_keys): an archive that lost one, or gained one,
    is refused on load, naming the column; an archive without the list (older files,
    _good_members) still loads."""
    good = tmp_path / "good.npz"
    make_traj(make_random_epis(rng, 3)).save(good)
    with np.load(good) as f:
        members = {name: f[name] for name in f.files}
    assert "column_keys" in members
    lost = dict(members)
    lost.pop("col:rews")
    _write(tmp_path / "lost.npz", **lost)
    with pytest.raises(ValueError, match=r"lost\.npz: column_keys: .* missing \['col:rews'\]"):
        Traj.load(tmp_path / "lost.npz")
    extra = dict(members, **{"col:extra": np.zeros(len(members["col:rews"]))})
    _write(tmp_path / "extra.npz", **extra)
    with pytest.raises(ValueError, match=r"not saved \['col:extra'\]"):
        Traj.load(tmp_path / "extra.npz")


def test_load_of_random_bytes_a_cut_archive_or_a_npy_file_says_so(rng, tmp_path):
    random_bytes = tmp_path / "random.npz"
    random_bytes.write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    good = tmp_path / "good.npz"
    make_traj(make_random_epis(rng, 3)).save(good)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    for path, message in [
        (random_bytes, "not a readable .npz archive written by Traj.save"),
        (cut, "not a readable .npz archive written by Traj.save"),
        (single, "got a single .npy array"),
    ]:
        with pytest.raises(ValueError) as info:
            Traj.load(path)
        assert str(path) in str(info.value) and message in str(info.value)
        assert "pickle" not in str(info.value).split("(")[0]
    with pytest.raises(FileNotFoundError):
        Traj.load(tmp_path / "absent.npz")


def test_max_steps_is_a_cap_not_a_reservation(rng):
    # The original examples' default max_steps_off: must not reserve 10**12 rows.
    memory = Traj(max_steps=10**12)
    total = 0
    for _ in range(30):
        epis = make_random_epis(rng, 4)
        total += sum(len(e["rews"]) for e in epis)
        memory.add_traj(make_traj(epis))
        # geometric growth: capacity within 1.5x the rows held (plus the batch just added)
        capacity = len(next(iter(memory._bufs.values())))
        assert memory.num_step == total <= capacity <= 1.5 * total + 4 * 30
    registered = Traj(10**12)
    for _ in range(5):
        registered.add_epis(make_random_epis(rng, 4))
        registered.register_epis()
    assert registered.num_epi == 20


def test_add_traj_of_pending_episodes_says_to_register_them(rng):
    memory = Traj(max_steps=100)
    pending = Traj()
    pending.add_epis(make_random_epis(rng, 2))
    with pytest.raises(ValueError, match=r"2 pending episodes.*register_epis\(\)"):
        memory.add_traj(pending)
    assert memory.num_epi == 0
    pending.register_epis()
    memory.add_traj(pending)
    assert memory.num_epi == 2
