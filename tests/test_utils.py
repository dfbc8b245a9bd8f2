"""machina.utils: the original machina's helpers, with their signatures."""

import os
import random
import re
import time

import pytest
import torch

import machina.utils as mu
from machina.utils import distributed as dist_utils


def test_the_original_scripts_import_line_works():
    # run_ppo_distributed.py of the original machina, unchanged:
    from machina.utils import init_ray, make_model_distributed, make_redis, measure, set_device

    assert callable(init_ray) and callable(make_model_distributed) and callable(set_device)
    with pytest.warns(UserWarning, match="no longer uses Redis"):
        make_redis("localhost", "6379")
    assert mu.get_redis() is None
    assert callable(measure)


def test_set_device_get_device_and_cpu_mode():
    assert mu.get_device() == torch.device("cpu")
    try:
        mu.set_device("cuda:1")  # stored, not used: no GPU is needed to set it
        assert mu.get_device() == torch.device("cuda", 1)
        with pytest.raises(RuntimeError, match="inside"):
            with mu.cpu_mode():
                assert mu.get_device() == torch.device("cpu")
                raise RuntimeError("inside")
        assert mu.get_device() == torch.device("cuda", 1)  # restored after the error
    finally:
        mu.set_device("cpu")
    with pytest.raises(ValueError, match=r"set_device: device: .* got 'gpu0'"):
        mu.set_device("gpu0")


def test_detach_tensor_dict():
    x = torch.ones(2, requires_grad=True) * 2
    h, c = torch.zeros(1, requires_grad=True) + 1, torch.zeros(1, requires_grad=True) + 2
    out = mu.detach_tensor_dict({"x": x, "hs": (h, c), "none": None, "n": 3})
    assert set(out) == {"x", "hs", "n"}  # None values are dropped, as in the original
    assert not out["x"].requires_grad and torch.equal(out["x"], x.detach())
    assert all(not t.requires_grad for t in out["hs"]) and out["n"] == 3


def test_cpu_state_dicts_are_copies_with_nested_optimiser_state():
    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(lin.parameters())
    lin(torch.ones(1, 2)).sum().backward()
    opt.step()
    sd = mu.get_cpu_state_dict(lin)
    sd["weight"].add_(1.0)
    assert not torch.equal(sd["weight"], lin.weight.detach())  # a copy, not the module's
    osd = mu.state_dict_to_cpu(opt.state_dict())
    assert all(t.device.type == "cpu" for s in osd["state"].values() for t in s.values())
    # cpu_copy (checkpoint rollbacks): copies every tensor, keeps the module's _metadata
    from machina.utils.tensors import cpu_copy

    copied = cpu_copy(opt.state_dict())
    copied["state"][0]["exp_avg"].add_(1.0)
    assert not torch.equal(copied["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert cpu_copy(lin.state_dict())._metadata == lin.state_dict()._metadata


def test_measure_logs_through_machina_logger(capsys):
    import machina.logger  # noqa: F401  (the logger installs itself as measure's sink)

    with mu.measure("sample"):
        pass
    assert re.search(r"\| sample: \d+\.\d{4}sec$", capsys.readouterr().out.strip())
    with mu.measure("train", log_enable=False):
        pass
    assert capsys.readouterr().out == ""


def test_single_process_helpers_without_a_process_group():
    assert (dist_utils.get_rank(), dist_utils.get_world_size()) == (0, 1)
    assert not dist_utils.is_initialized() and not dist_utils.averages_here()
    lin = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in lin.parameters()]
    dist_utils.broadcast_params(lin)  # no-op
    assert all(torch.equal(a, b) for a, b in zip(before, lin.parameters()))
    with pytest.raises(RuntimeError, match=r"machina\.distributed\.init\(\)"):
        mu.make_model_distributed(lin, torch.optim.SGD(lin.parameters(), 0.1))
    with pytest.raises(ValueError, match="use_apex: NVIDIA apex is not supported"):
        mu.make_model_distributed(lin, None, use_apex=True)


def test_wrap_ddp_delegates_attributes_to_the_wrapped_module():
    class Wrapper(torch.nn.Module):  # stands in for DistributedDataParallel (needs a group)
        def __init__(self, module):
            super().__init__()
            self.module = module

    inner = torch.nn.Linear(2, 1)
    inner.rnn = False
    wrapped = mu.wrap_ddp(Wrapper)(inner)
    assert wrapped.rnn is False and wrapped.in_features == 2
    assert wrapped.weight is inner.weight
    with pytest.raises(AttributeError):
        _ = wrapped.missing


def test_non_finite_error_is_a_floating_point_error():
    assert issubclass(mu.NonFiniteError, FloatingPointError)


def test_ray_helpers_explain_a_missing_ray(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # makes ``import ray`` fail here only
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        mu.init_ray()


def test_train_manager_runs_ray_actor_trainers_as_one_process_group(monkeypatch):
    """The original's Ray-launched trainers: two actors form a gloo group; each fits its own
    data and optimizer_step averages their gradients, so both end with the same weights."""
    ray = pytest.importorskip("ray")
    from machina.utils import optimizer_step

    class Trainer(mu.BaseDistributedRayTrainer):  # defined here: Ray ships it by value
        def __init__(self, **kwargs):
            super().__init__(backend="gloo", **kwargs)
            self.rank = kwargs["rank"]
            torch.manual_seed(0)
            self.lin = torch.nn.Linear(1, 1)
            self.optim = torch.optim.SGD(self.lin.parameters(), 0.1)

        def train(self, xs, fail_rank=None, exit_rank=None, exit_after=0.0):
            if fail_rank == "all" or self.rank == fail_rank:
                raise ValueError("boom")
            if self.rank == exit_rank:
                time.sleep(exit_after)
                os._exit(1)
            x = torch.tensor(xs[self.rank]).reshape(-1, 1)
            for _ in range(5):
                optimizer_step(self.optim, (self.lin(x) - 2 * x).square().mean())
            return [p.detach().clone() for p in self.lin.parameters()]

        def draw(self):
            return torch.rand(3)

        def py_draw(self):
            return random.random()

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with monkeypatch.context() as m:  # a driver that sees CUDA, a Ray without GPUs
            m.setattr(torch.cuda, "is_available", lambda: True)
            # asking for one, the trainers were never placed (a hang)
            assert Trainer.as_remote()._default_options["num_gpus"] == 0
        manager = mu.TrainManager(Trainer, num_trainer=2)
        # Python's global RNG seeded as numpy's and torch's (seed 1234 by default)
        py_draws = ray.get([t.py_draw.remote() for t in manager.trainers], timeout=120)
        assert py_draws == [random.Random(1234).random()] * 2
        params = manager.train(xs=[[1.0, 2.0], [3.0]])
        ranks = ray.get([t.train.remote([[0.0], [0.0]]) for t in manager.trainers], timeout=120)
        state = manager.get_state("lin")
        # a checkpoint of every rank: its modules, optimisers and global RNGs
        saved = manager.state_dict()
        assert [set(rank["objects"]) for rank in saved["ranks"]] == [{"lin", "optim"}] * 2
        draws = ray.get([t.draw.remote() for t in manager.trainers])
        manager.train(xs=[[1.0], [3.0]])
        manager.load_state_dict(saved)
        assert torch.equal(manager.get_state("lin")["weight"], state["weight"])
        again_draws = ray.get([t.draw.remote() for t in manager.trainers])
        assert all(torch.equal(a, b) for a, b in zip(draws, again_draws))
        with pytest.raises(ValueError, match=r"states of 2 trainers, given 1 trainers"):
            manager.load_state_dict({"ranks": saved["ranks"][:1]})
        with pytest.raises(ValueError, match="trainer rank 0 refused its state") as refused:
            manager.load_state_dict({"ranks": [{**r, "objects": {}} for r in saved["ranks"]]})
        assert "expected the trainer's modules, optimisers and schedulers ['lin', 'optim']" in str(
            refused.value.__cause__
        )
        manager.load_state_dict(saved)
        # every rank fails alike (a bad argument): named, and the trainers stay usable
        with pytest.raises(RuntimeError, match=r"trainer rank \d of 2 failed$"):
            manager.train(xs=[[1.0], [3.0]], fail_rank="all")
        assert len(manager.train(xs=[[1.0], [3.0]])) == 2
        # rank 1 alone fails: named, and both stopped (rank 0 would wait in the all-reduce
        # for gloo's 30 minutes, and every later call behind it)
        with pytest.raises(RuntimeError, match="trainer rank 1 of 2 failed") as failed:
            manager.train(xs=[[1.0], [3.0]], fail_rank=1)
        assert "boom" in str(failed.value.__cause__)
        with pytest.raises(RuntimeError, match="its trainer rank 1 failed; make a new"):
            manager.get_state("lin")
        again = mu.TrainManager(Trainer, num_trainer=2, timeout=60)
        assert len(again.train(xs=[[1.0], [3.0]])) == 2
        # a trainer whose process dies: the others stop waiting at once, yet a dead actor
        # would fail every later call, so all are stopped
        with pytest.raises(RuntimeError, match="rank 1 of 2 failed; its process died"):
            again.train(xs=[[1.0], [3.0]], exit_rank=1)
        with pytest.raises(RuntimeError, match="make a new TrainManager"):
            again.train(xs=[[1.0], [3.0]])
        again.close()
        # the dead rank is named even when another's error (its broken collective) comes first
        third = mu.TrainManager(Trainer, num_trainer=2, timeout=60)
        with pytest.raises(RuntimeError, match="rank 1 of 2 failed; its process died") as both:
            third.train(xs=[[1.0], [3.0]], fail_rank=0, exit_rank=1, exit_after=1.0)
        assert "(rank 0 failed too: ValueError: boom)" in str(both.value)
        with pytest.raises(RuntimeError, match="its trainer rank 1 failed; make a new"):
            third.train(xs=[[1.0], [3.0]])
    finally:
        ray.shutdown()
    # the same weights on both ranks, and what rank 0 reports is that state
    assert all(torch.equal(a, b) for a, b in zip(*ranks))
    assert torch.equal(state["weight"], ranks[0][0]) and len(params) == 2


def test_all_finite_finds_nan_and_inf_in_any_tensor_and_dtype():
    ok = [torch.ones(3), torch.zeros(2, 2, dtype=torch.float64)]
    assert mu.all_finite(ok) and mu.all_finite([])
    for bad in (float("nan"), float("inf"), -float("inf")):
        tensors = [t.clone() for t in ok]
        tensors[1][1, 0] = bad
        assert not mu.all_finite(tensors)
        assert tensors[0].tolist() == [1.0, 1.0, 1.0]  # values are left as they were
