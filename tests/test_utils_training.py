"""machina.utils.training: Polyak averaging of target networks."""

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from machina.utils import polyak_update


def test_polyak_update_moves_parameters_by_tau_and_copies_buffers():
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = copy.deepcopy(source)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    source[1].running_mean.fill_(5.0)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, source, 0.1)
    for t, b, s in zip(target.parameters(), before, source.parameters()):
        assert_close(t, 0.9 * b + 0.1 * s)
        assert t.grad is None and t.requires_grad
    assert_close(target[1].running_mean, torch.full((4,), 5.0))
    polyak_update([target], [source], 1.0)
    for t, s in zip(target.parameters(), source.parameters()):
        assert_close(t, s)
    snapshot = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    polyak_update(target, source, 0.0)
    for t, s in zip(target.parameters(), snapshot):
        assert_close(t, s)


def test_polyak_update_errors_name_the_argument():
    with pytest.raises(ValueError, match="tau"):
        polyak_update(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="target"):
        polyak_update(nn.Linear(2, 3), nn.Linear(2, 2), 0.5)
    with pytest.raises(ValueError, match="target"):
        polyak_update([nn.Linear(2, 2)], [nn.Linear(2, 2)] * 2, 0.5)


@pytest.mark.parametrize("max_norm", [0.05, 1, 1e6])  # clipping, an int bound, no clipping
@pytest.mark.parametrize("dtypes", [(torch.float32,), (torch.float32, torch.float64)])
def test_optimizer_step_clips_exactly_as_torch_clip_grad_norm(max_norm, dtypes):
    # optimizer_step's own clip (one device and dtype) and torch's (mixed dtypes, its
    # fallback) leave torch.nn.utils.clip_grad_norm_'s gradients to the bit.
    from machina.utils import optimizer_step

    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2)).to(d) for d in dtypes]
    twins = copy.deepcopy(nets)
    x = torch.randn(32, 5)

    def loss_of(nets):
        return sum(net(x.to(net[0].weight.dtype)).pow(2).sum().double() for net in nets)

    params = [p for net in nets for p in net.parameters()]
    nets[0][0].bias.requires_grad_(False)  # a parameter without a gradient
    twins[0][0].bias.requires_grad_(False)
    optim = torch.optim.SGD(params, lr=0.0)
    optimizer_step(optim, loss_of(nets), max_grad_norm=max_norm)
    loss_of(twins).backward()
    twin_params = [p for net in twins for p in net.parameters()]
    torch.nn.utils.clip_grad_norm_(twin_params, max_norm)
    for p, q in zip(params, twin_params):
        assert (p.grad is None and q.grad is None) or torch.equal(p.grad, q.grad)
