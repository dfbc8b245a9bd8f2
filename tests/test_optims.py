"""machina.optims: the original's AdamW arithmetic, and the Distributed* optimisers as plain
ones in a single process (their averaging over ranks is tested in test_distributed.py)."""

import copy
import math

import pytest
import torch

from machina.optims import AdamW, DistributedAdamW, DistributedSGD
from machina.utils import optimizer_step


def reference_adamw(p, grads, lr, betas, eps, wd):
    """The original machina's AdamW, one parameter, in float64 Python arithmetic."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        p = p - wd * p
        p = p - lr * math.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t) * m / (math.sqrt(v) + eps)
    return p


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adamw_follows_the_original_arithmetic(wd):
    lr, betas, eps = 0.01, (0.8, 0.9), 1e-3
    grads = [0.5, -1.0, 2.0, 0.25, -0.1]
    w = torch.nn.Parameter(torch.tensor([1.5], dtype=torch.float64))
    opt = AdamW([w], lr=lr, betas=betas, eps=eps, weight_decay=wd)
    for g in grads:
        w.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
    assert float(w.detach()) == pytest.approx(
        reference_adamw(1.5, grads, lr, betas, eps, wd), abs=1e-14
    )
    assert opt.state[w]["step"] == len(grads)


def test_adamw_weight_decay_is_not_scaled_by_lr():
    # No gradient signal (g = 0): only the decay acts, p <- (1 - wd) p, whatever lr is.
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = AdamW([w], lr=1e-5, weight_decay=0.5)
    w.grad = torch.zeros(1)
    opt.step()
    assert float(w.detach()) == 1.0


def test_adamw_skips_parameters_without_gradient_and_reloads_its_state():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = AdamW([a, b], lr=0.1)
    a.sum().backward()
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2)) and b not in opt.state
    clone = AdamW([a, b], lr=0.1)
    clone.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert clone.state[a]["step"] == 1 and torch.equal(
        clone.state[a]["exp_avg"], opt.state[a]["exp_avg"]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=-1.0), r"AdamW: lr: expected a float >= 0, got -1\.0"),
        (
            dict(betas=(0.9, 1.0)),
            r"AdamW: betas: expected two floats in \[0, 1\), got \(0\.9, 1\.0\)",
        ),
        (dict(eps=-1e-8), "AdamW: eps"),
        (dict(weight_decay=-0.1), "AdamW: weight_decay"),
    ],
)
def test_adamw_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamW([torch.nn.Parameter(torch.ones(1))], **kwargs)


def _train(opt_cls, **kwargs):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = opt_cls(net.parameters(), **kwargs)
    x = torch.randn(16, 3)
    for _ in range(5):
        optimizer_step(opt, net(x).square().mean(), None, 0.5)
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def test_distributed_optimisers_are_the_plain_ones_in_a_single_process():
    assert torch.equal(_train(DistributedAdamW, lr=0.01), _train(AdamW, lr=0.01))
    assert torch.equal(
        _train(DistributedSGD, lr=0.1, momentum=0.9), _train(torch.optim.SGD, lr=0.1, momentum=0.9)
    )
    opt = DistributedAdamW([torch.nn.Parameter(torch.ones(1))])
    assert (opt.local_rank, opt.world_size) == (0, 1)
    # The original's keyword for the divisor is accepted.
    assert DistributedSGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, world_size=4).world_size == 4
    # a learning rate given where the original takes the rank: it was taken as the rank
    with pytest.raises(TypeError, match=r"local_rank: expected an int >= 0 or None, given 0.001"):
        DistributedAdamW([torch.nn.Parameter(torch.ones(1))], 1e-3)
    with pytest.raises(TypeError, match="world_size: expected an int >= 1"):
        DistributedAdamW([torch.nn.Parameter(torch.ones(1))], 0, 0.5)


def test_closure_is_called_and_its_loss_returned():
    w = torch.nn.Parameter(torch.ones(1))
    for opt in (AdamW([w]), DistributedAdamW([w]), DistributedSGD([w], lr=0.1)):

        def closure(opt=opt):
            opt.zero_grad()
            loss = (w * 3).sum()
            loss.backward()
            return loss

        before = float(w.detach())
        # the loss before the step (3 * w in float32)
        assert float(opt.step(closure).detach()) == pytest.approx(3 * before, rel=2**-22)
        assert float(w.detach()) < before  # and the step used the closure's gradient
