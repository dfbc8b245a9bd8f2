"""machina.checkpoint: one call saves a run, one restores it into the live objects."""

import collections
import enum
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.checkpoint import latest_checkpoint, load_run, read_extra, save_run
from machina.prepro import BasePrePro, RewardNormalizer
from machina.traj import Traj


def _objects(seed: int):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optim = torch.optim.Adam(net.parameters(), lr=1e-2)
    log_alpha = torch.zeros(1, requires_grad=True)
    optim_alpha = torch.optim.Adam([log_alpha], lr=1e-2)
    traj = Traj(max_steps=500)
    traj.add_epis(make_random_epis(np.random.default_rng(seed), 20))
    traj.register_epis()
    prepro = BasePrePro(gym.spaces.Box(-1, 1, (3,)))
    return dict(
        net=net, optim=optim, log_alpha=log_alpha, optim_alpha=optim_alpha, traj=traj, prepro=prepro
    )


def _train(objs, iters: int) -> None:
    """Steps that read every kind of state: global RNGs, the replay, the prepro's statistics."""
    net, optim, traj = objs["net"], objs["optim"], objs["traj"]
    for _ in range(iters):
        for batch in traj.random_batch(32, epoch=2):
            objs["prepro"].update(batch["obs"].numpy())
            obs = torch.as_tensor(objs["prepro"].prepro(batch["obs"].numpy()))
            noise = torch.randn(obs.shape[0], 1) + np.random.normal() + random.random()  # noqa: NPY002
            loss = ((net(obs) - batch["rews"][:, None] - noise) ** 2).mean()
            loss = loss + (objs["log_alpha"].exp() - 0.5) ** 2
            optim.zero_grad()
            objs["optim_alpha"].zero_grad()
            loss.backward()
            optim.step()
            objs["optim_alpha"].step()


def _state(objs):
    return (
        [p.detach().clone() for p in objs["net"].parameters()],
        objs["log_alpha"].detach().clone(),
        objs["prepro"].ob_rm.copy(),
        torch.rand(3),
        np.random.random(),  # noqa: NPY002 (the global RNG is part of a run)
        random.random(),
    )


def _assert_same(a, b) -> None:
    for x, y in zip(a[0], b[0]):
        assert torch.equal(x, y)
    assert torch.equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert torch.equal(a[3], b[3])
    assert a[4] == b[4] and a[5] == b[5]


def test_a_resumed_run_continues_bit_for_bit(tmp_path):
    objs = _objects(0)
    _train(objs, 3)
    save_run(tmp_path, objs, extra={"iteration": 3})
    _train(objs, 3)
    uninterrupted = _state(objs)

    fresh = _objects(1)  # other weights, other replay: everything must come from the file
    extra = load_run(tmp_path, fresh)
    assert extra == {"iteration": 3}
    _train(fresh, 3)
    _assert_same(_state(fresh), uninterrupted)


def test_the_traj_is_restored_in_place_with_its_bound(tmp_path):
    objs = _objects(0)
    objs["traj"].pri_beta = 0.7
    next(objs["traj"].iterate(8))  # its batch generator is seeded and has moved
    save_run(tmp_path, objs)
    fresh = _objects(2)
    traj = fresh["traj"]
    traj.ddp = True  # the live Traj's data-parallel flag is kept (the file has none)
    load_run(tmp_path, fresh)
    assert traj is fresh["traj"] and traj.max_steps == 500 and traj.pri_beta == 0.7
    assert traj.ddp
    assert torch.equal(traj.generator.get_state(), objs["traj"].generator.get_state())
    np.testing.assert_array_equal(traj.epis_index, objs["traj"].epis_index)
    for key, col in objs["traj"].data_map.items():
        assert torch.equal(traj.data_map[key], col)


def test_checkpoints_are_numbered_pruned_and_loaded_without_pickle(tmp_path):
    objs = _objects(0)
    for _ in range(4):
        save_run(tmp_path, objs, keep=2)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-000002", "ckpt-000003"]
    assert latest_checkpoint(tmp_path).name == "ckpt-000003"
    # weights_only=True refuses pickled objects: the state file must load with it
    torch.load(tmp_path / "ckpt-000003" / "state.pt", weights_only=True)
    assert not list(tmp_path.glob(".ckpt-tmp*"))
    # pruned by step, not by name (ckpt-999500 sorts after ckpt-1000000 as text)
    run = tmp_path / "long"
    for step in (999_000, 999_500, 1_000_000, 1_000_500):
        save_run(run, objs, step=step, keep=2)
    assert sorted(p.name for p in run.glob("ckpt-*")) == ["ckpt-1000000", "ckpt-1000500"]
    assert latest_checkpoint(run).name == "ckpt-1000500"
    assert save_run(run, objs).name == "ckpt-1000501"
    with pytest.raises(ValueError, match="step: expected an int >= 0 or None, given -1"):
        save_run(run, objs, step=-1)


def test_corrupted_or_partial_checkpoints_are_named(tmp_path):
    objs = _objects(0)
    path = save_run(tmp_path, objs)
    state, meta = (path / "state.pt").read_bytes(), (path / "meta.json").read_text()
    for cut in (0, len(state) // 2):
        (path / "state.pt").write_bytes(state[:cut])
        with pytest.raises(ValueError, match="state.pt: corrupted or partial checkpoint"):
            load_run(tmp_path, objs)
    (path / "state.pt").write_bytes(state)
    for text in ("", meta[: len(meta) // 2], "[1, 2]"):
        (path / "meta.json").write_text(text)
        with pytest.raises(ValueError, match="meta.json: corrupted"):
            load_run(tmp_path, objs)
    (path / "meta.json").write_text(meta)
    load_run(tmp_path, objs)
    # a replay memory's file missing: named as the others (a bare FileNotFoundError before)
    npz = next(path.glob("*.npz"))
    npz.rename(tmp_path / "aside.npz")
    with pytest.raises(ValueError, match=r"\.npz: missing .*corrupted or partial checkpoint"):
        load_run(tmp_path, objs)
    (tmp_path / "aside.npz").rename(npz)
    (tmp_path / "latest").write_text("ckpt-000009")
    with pytest.raises(FileNotFoundError, match="'latest' file names 'ckpt-000009'"):
        load_run(tmp_path, objs)


def test_clear_errors(tmp_path):
    objs = _objects(0)
    with pytest.raises(FileNotFoundError, match="run_dir: no checkpoint"):
        load_run(tmp_path, objs)
    with pytest.raises(TypeError, match=r"objects\['x'\]: expected a Traj"):
        save_run(tmp_path, {"x": object()})
    with pytest.raises(TypeError, match="extra: expected JSON-able"):
        save_run(tmp_path, objs, extra={"x": object()})
    # the global RNGs' key (saved, then refused at load) and names unusable in a file name
    # (a Traj's file: '../x' wrote outside the checkpoint)
    with pytest.raises(ValueError, match=r"objects\['__rng__'\]: the name is reserved"):
        save_run(tmp_path, {"__rng__": torch.nn.Linear(2, 2)})
    for name in ("rep/lay", "../x"):
        with pytest.raises(ValueError, match=r"a Traj's name is its file's in the checkpoint"):
            save_run(tmp_path, {name: Traj()})
    with pytest.raises(ValueError, match=r"objects: expected str names, given 3"):
        save_run(tmp_path, {3: torch.nn.Linear(2, 2)})  # meta.json made it '3': unloadable
    assert list(tmp_path.iterdir()) == []  # nothing written
    # other objects' names are only keys: '/' is fine there
    lin = torch.nn.Linear(2, 2)
    load_run(save_run(tmp_path / "slash", {"agent/pol": lin}).parent, {"agent/pol": lin})
    path = save_run(tmp_path, objs)
    with pytest.raises(ValueError, match="objects: expected the names saved"):
        load_run(tmp_path, {"net": objs["net"]})
    load_run(tmp_path, {"net": objs["net"]}, strict=False)
    with pytest.raises(ValueError, match=r"objects\['net'\]: saved as a stateful, given a tensor"):
        load_run(tmp_path, {**objs, "net": torch.zeros(1)})
    meta = json.loads((path / "meta.json").read_text())
    meta["version"] = 99
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version 99"):
        load_run(tmp_path, objs)


class _Holder:
    """A stateful object holding whatever state it is given."""

    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state


class _Mode(enum.Enum):
    A = 1


def test_states_load_run_cannot_read_are_refused_when_saved(tmp_path):
    """torch.save pickles anything; load_run reads without pickle: a deque or an Enum was
    saved, named by ``latest`` and failed only at the resume (as a 'corrupted' state.pt)."""
    objs = _objects(0)
    good = save_run(tmp_path, objs, keep=1)
    point = collections.namedtuple("Point", "x y")
    for value in (collections.deque([1, 2]), _Mode.A, point(1, 2), frozenset({3})):
        with pytest.raises(TypeError, match=r"objects\['odd'\]: its state_dict\(\) holds a"):
            save_run(tmp_path, {**objs, "odd": _Holder({"value": value})}, keep=1)
        assert latest_checkpoint(tmp_path) == good and good.is_dir()
    # numpy arrays of either byte order, sets and ordered dicts go through
    big = np.arange(6, dtype=">f8").reshape(2, 3)
    state = {"big": big, "set": {1, 2}, "ordered": collections.OrderedDict(a=1)}
    save_run(tmp_path, {**objs, "odd": _Holder(state)}, keep=1)
    holder = _Holder(None)
    load_run(tmp_path, {**objs, "odd": holder})
    np.testing.assert_array_equal(holder.state["big"], big)
    assert holder.state["set"] == {1, 2} and holder.state["ordered"] == {"a": 1}


@pytest.mark.parametrize("kill_at", ["first_rename", "second_rename", "cleanup"])
def test_a_step_saved_again_keeps_a_checkpoint_at_every_moment(tmp_path, kill_at):
    """Saved again at its step (bench_bullet.py saves at step=steps with keep=1), the old
    folder was deleted before the new one took its name: a run killed in between had none.
    The folders as such a kill leaves them, between the two renames or after both."""
    objs = _objects(0)
    save_run(tmp_path, objs, step=5, keep=1, extra={"i": 0})
    expected = _state(objs)
    _train(objs, 2)
    save_run(tmp_path / "next", objs, step=5, keep=1, extra={"i": 1})
    os.replace(tmp_path / "ckpt-000005", tmp_path / "ckpt-000005.replaced")
    if kill_at != "first_rename":  # the new folder in place, the old one not yet removed
        os.replace(tmp_path / "next" / "ckpt-000005", tmp_path / "ckpt-000005")
        expected = _state(objs)
    fresh = _objects(1)
    extra = load_run(tmp_path, fresh)
    assert extra["i"] == (0 if kill_at == "first_rename" else 1)
    _assert_same(_state(fresh), expected)
    # the step counts on; the folder set aside goes, never kept instead of the newer one
    assert save_run(tmp_path, objs, keep=2).name == "ckpt-000006"
    kept = sorted(p.name for p in tmp_path.glob("ckpt-*"))
    if kill_at == "first_rename":  # the folder set aside was the only one before
        assert kept == ["ckpt-000006"]
    else:
        assert kept == ["ckpt-000005", "ckpt-000006"]
        assert read_extra(tmp_path / "ckpt-000005")["i"] == 1
    save_run(tmp_path, objs, step=6, keep=1)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-000006"]


def test_a_refused_load_names_the_object_and_restores_nothing(tmp_path):
    """A tensor of another shape (copy_ broadcast a saved () into (3,)) and a state that a
    later object refuses (torch named the Linear, not the key) are errors that name the
    object; the objects restored before the refusal are put back as they were."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    optim = torch.optim.Adam(a.parameters())
    save_run(tmp_path, {"a": a, "optim": optim, "b": b, "log_alpha": torch.zeros(())})
    fresh_a = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in fresh_a.state_dict().items()}
    with pytest.raises(ValueError, match=r"objects\['log_alpha'\]: saved with shape \(\), given"):
        load_run(tmp_path, {"a": fresh_a, "optim": optim, "b": b, "log_alpha": torch.ones(3)})
    # b's weight fits and its bias does not: torch copies the weight before it raises
    wrong_b = torch.nn.Linear(2, 2)
    wrong_b.bias = torch.nn.Parameter(torch.zeros(3))
    b_before = {k: v.clone() for k, v in wrong_b.state_dict().items()}
    with pytest.raises(ValueError, match=r"objects\['b'\]: its saved state does not load"):
        load_run(
            tmp_path, {"a": fresh_a, "optim": optim, "b": wrong_b, "log_alpha": torch.ones(())}
        )
    for module, was in ((fresh_a, before), (wrong_b, b_before)):  # put back, both
        for k, v in module.state_dict().items():
            assert torch.equal(v, was[k]), k

    class Refuses(torch.nn.Linear):  # refuses every state, its own too
        def load_state_dict(self, state, strict=True):
            raise RuntimeError("never")

    with pytest.raises(ValueError, match=r"objects\['b'\]: its saved state does not load"):
        load_run(tmp_path, {"a": fresh_a, "optim": optim, "b": Refuses(2, 2),
                            "log_alpha": torch.ones(())})  # fmt: skip
    for k, v in fresh_a.state_dict().items():  # still put back
        assert torch.equal(v, before[k]), k
    load_run(tmp_path, {"a": fresh_a, "optim": optim, "b": b, "log_alpha": torch.ones(())})
    assert torch.equal(fresh_a.weight, a.weight)


def test_a_torch_generator_is_saved_by_its_state(tmp_path):
    """A Traj's batch generator alone (an expert data set's: its columns are a file's): a new
    Traj of the same data given the saved state draws the batches the saved one would have.
    A state that does not load (another object's) is named, and nothing is restored."""

    def traj(seed):
        out = Traj(seed=seed)
        out.add_epis(make_random_epis(np.random.default_rng(0), 10))
        out.register_epis()
        return out

    def batches(t):
        return torch.cat([b["obs"] for b in t.random_batch(8, epoch=3)])

    saved = traj(1)
    batches(saved)  # mid-run
    save_run(tmp_path, {"order": saved.generator})
    expected = batches(saved)
    fresh = traj(2)
    assert not torch.equal(batches(traj(2)), expected)
    load_run(tmp_path, {"order": fresh.generator})
    assert torch.equal(batches(fresh), expected)

    save_run(tmp_path, {"order": torch.nn.Linear(2, 2)})
    other = traj(2)
    before = other.generator.get_state()
    with pytest.raises(
        ValueError,
        match=r"objects\['order'\]: .* into the given torch.Generator \(expected a generator's",
    ):
        load_run(tmp_path, {"order": other.generator})
    assert torch.equal(other.generator.get_state(), before)


def test_resized_optimizer_state_and_bad_rng_or_meta_restore_nothing(tmp_path):
    """An optimiser saved apart from its model (resized since: Adam's moments of the old
    shape loaded and failed at the next step), a python RNG state that does not load (found
    after every object was restored), meta.json without kinds: errors before any write."""
    torch.manual_seed(0)
    big = torch.nn.Linear(3, 64)
    optim = torch.optim.Adam(big.parameters())
    big(torch.ones(2, 3)).sum().backward()
    optim.step()
    save_run(tmp_path / "a", {"optim": optim})
    small = torch.nn.Linear(3, 32)
    small_optim = torch.optim.Adam(small.parameters())
    with pytest.raises(
        ValueError, match=r"objects\['optim'\].*'exp_avg' saved with shape \(64, 3\)"
    ):
        load_run(tmp_path / "a", {"optim": small_optim})
    assert small_optim.state_dict()["state"] == {}
    net = torch.nn.Linear(2, 2)
    path = save_run(tmp_path / "b", {"net": net})
    meta = json.loads((path / "meta.json").read_text())
    meta["python_rng"] = [3, [1, 2], None]
    (path / "meta.json").write_text(json.dumps(meta))
    fresh = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match="random generator states do not load"):
        load_run(tmp_path / "b", {"net": fresh})
    assert all(torch.equal(v, before[k]) for k, v in fresh.state_dict().items())
    load_run(tmp_path / "b", {"net": fresh}, rng=False)  # the rest of it is fine
    del meta["kinds"]
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="meta.json: corrupted checkpoint .*'kinds'"):
        load_run(tmp_path / "b", {"net": fresh})
    # optimisers whose state is not per element load as before (LBFGS's flat vectors)
    lbfgs_net = torch.nn.Linear(3, 4)
    lbfgs = torch.optim.LBFGS(lbfgs_net.parameters())

    def closure():
        lbfgs.zero_grad()
        loss = lbfgs_net(torch.ones(2, 3)).pow(2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    save_run(tmp_path / "d", {"lbfgs": lbfgs})
    load_run(tmp_path / "d", {"lbfgs": torch.optim.LBFGS(lbfgs_net.parameters())})
    # 0-d numpy state (a RewardNormalizer before its first update) came back as (1,)
    save_run(tmp_path / "e", {"r": RewardNormalizer(0.99)})
    load_run(tmp_path / "e", {"r": RewardNormalizer(0.99)})
    other = save_run(tmp_path / "c", {"pol": torch.nn.Linear(2, 2)})
    (path / "state.pt").write_bytes((other / "state.pt").read_bytes())
    meta["kinds"] = {"net": "stateful"}
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"holds no state for objects\['net'\]"):
        load_run(tmp_path / "b", {"net": fresh}, rng=False)


def test_a_run_killed_while_saving_keeps_its_previous_checkpoint(tmp_path):
    """A real process saving a large replay in a loop is killed at an arbitrary moment."""
    script = textwrap.dedent(
        f"""
        import numpy as np, sys, torch
        from machina.checkpoint import save_run
        from machina.traj import Traj
        traj = Traj()
        n = 2_000_000
        traj.add_epis([dict(obs=np.random.rand(n, 4).astype(np.float32),
                            rews=np.zeros(n, np.float32))])
        traj.register_epis()
        net = torch.nn.Linear(4, 1)
        for i in range(1000):
            with torch.no_grad():
                net.bias.fill_(i)
            save_run({str(tmp_path)!r}, {{"traj": traj, "net": net}}, extra={{"i": i}})
            print(i, flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline()  # one checkpoint is complete
        time.sleep(0.3)  # ... and the next is being written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    net, traj = torch.nn.Linear(4, 1), Traj()
    extra = load_run(tmp_path, {"traj": traj, "net": net})
    assert float(net.bias.detach()) == extra["i"]
    assert traj.num_step == 2_000_000


def test_leftovers_of_killed_checkpoints_go_with_the_next_save(tmp_path):
    """A checkpoint or Traj save killed half way leaves its temporary behind; the next save
    on this host removes those whose writer process is gone (a real, finished process
    here), and leaves a live writer's alone."""
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = socket.gethostname()
        stale_dir = tmp_path / f".ckpt-tmp.{host}.{dead.pid}.abc"
        stale_dir.mkdir()
        (stale_dir / "state.pt").write_bytes(b"partial")
        live_dir = tmp_path / f".ckpt-tmp.{host}.{live.pid}.def"
        live_dir.mkdir()
        stale_file = tmp_path / f".latest.{host}.{dead.pid}.xyz.tmp"
        stale_file.write_bytes(b"partial")
        save_run(tmp_path, _objects(0))
        assert not stale_dir.exists() and not stale_file.exists()
        assert live_dir.exists()
    finally:
        live.kill()
        live.wait(timeout=60)


def test_saved_files_and_folders_follow_the_umask(tmp_path):
    # tempfile's private 0600 / 0700 leaked into the saved files (an expert .npz, latest)
    old = os.umask(0o022)
    try:
        path = save_run(tmp_path, _objects(0))
        traj_file = tmp_path / "epis.npz"
        Traj().save(traj_file)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o755
    for f in (tmp_path / "latest", path / "state.pt", path / "meta.json", traj_file):
        assert (f.stat().st_mode & 0o777) == 0o644, f
