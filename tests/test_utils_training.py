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


def _pol_vf(seed=0):
    """Two independent small nets, their Adams, and a batch; losses with large gradients so
    that the clip acts."""
    torch.manual_seed(seed)
    nets = [nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)) for _ in range(2)]
    optims = [torch.optim.Adam(net.parameters(), 1e-2) for net in nets]
    return nets, optims, torch.randn(32, 4)


def _losses(nets, x):
    return [(net(x) * 5.0).pow(2).mean() * (i + 1) for i, net in enumerate(nets)]


@pytest.mark.parametrize("max_grad_norm", [None, 0.5])
def test_optimizer_steps_equal_one_optimizer_step_per_loss(max_grad_norm):
    """One backward pass for both losses: the same losses, gradients, clips, parameters and
    Adam states, bit for bit, as optimizer_step on each in turn, over several steps."""
    from machina.utils import optimizer_step, optimizer_steps

    (nets_a, optims_a, x), (nets_b, optims_b, _) = _pol_vf(), _pol_vf()
    for _ in range(4):
        together = optimizer_steps(
            [(opt, loss, net.parameters(), f"loss {i}")
             for i, (opt, loss, net) in enumerate(zip(optims_a, _losses(nets_a, x), nets_a))],
            max_grad_norm,
        )  # fmt: skip
        in_turn = [
            optimizer_step(opt, loss, net.parameters(), max_grad_norm)
            for opt, loss, net in zip(optims_b, _losses(nets_b, x), nets_b)
        ]
        assert together == in_turn
    for a, b in zip([*nets_a, *optims_a], [*nets_b, *optims_b]):
        for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            if isinstance(va, dict):  # an optimiser's per-parameter state
                for name in va:
                    assert all(torch.equal(va[name][k], vb[name][k]) for k in va[name]), key
            elif isinstance(va, torch.Tensor):
                assert torch.equal(va, vb), key


def test_optimizer_steps_refuse_shared_parameters_and_step_nothing_on_a_nan():
    from machina.utils import NonFiniteError, optimizer_steps

    nets, optims, x = _pol_vf()
    shared = torch.optim.Adam([*nets[0].parameters(), *nets[1].parameters()], 1e-2)
    losses = _losses(nets, x)
    with pytest.raises(ValueError, match="steps: the optimisers share parameters"):
        optimizer_steps([(optims[0], losses[0], [], "a"), (shared, losses[1], [], "b")])
    before = copy.deepcopy([n.state_dict() for n in nets])
    losses = _losses(nets, x)
    with pytest.raises(NonFiniteError, match="vf_loss is nan"):
        optimizer_steps(
            [(optims[0], losses[0], nets[0].parameters(), "pol_loss"),
             (optims[1], losses[1] * float("nan"), nets[1].parameters(), "vf_loss")],
            0.5,
        )  # fmt: skip
    for net, state in zip(nets, before):
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert all(not opt.state for opt in optims)  # Adam never stepped


def test_pol_vf_step_goes_together_only_for_independent_networks():
    """One backward pass only when nothing is shared: a common trunk, an optimiser over
    both networks, or one holding the other network's parameters keeps the two steps."""
    from machina.algos._common import PolVfStep

    nets, optims, _ = _pol_vf()
    assert PolVfStep(*nets, *optims, 0.5, "algo").together
    trunk = nn.Linear(4, 4)
    pol, vf = nn.Sequential(trunk, nets[0]), nn.Sequential(trunk, nets[1])
    opt_pol, opt_vf = (torch.optim.Adam(m.parameters()) for m in (pol, vf))
    assert not PolVfStep(pol, vf, opt_pol, opt_vf, 0.5, "algo").together
    both = torch.optim.Adam([*nets[0].parameters(), *nets[1].parameters()])
    assert not PolVfStep(*nets, both, both, 0.5, "algo").together
    assert not PolVfStep(*nets, optims[1], optims[0], 0.5, "algo").together


def test_pol_vf_step_together_equals_the_two_steps():
    """PolVfStep's one backward pass against its two optimizer_step calls (the path shared
    parameters take), on the same nets and losses over several minibatches: the same
    losses, parameters and Adam states, bit for bit."""
    from machina.algos._common import PolVfStep

    results = []
    for together in (True, False):
        nets, optims, x = _pol_vf()
        step = PolVfStep(*nets, *optims, 0.5, "algo")
        assert step.together
        step.together = together
        vf = nets[1]
        losses = [
            step({"x": x[i::4]}, (nets[0](x[i::4]) * 5.0).pow(2).mean(),
                 lambda b, vf=vf: (vf(b["x"]) * 3.0).pow(2).mean())
            for i in range(4)
        ]  # fmt: skip
        results.append((losses, [copy.deepcopy(m.state_dict()) for m in (*nets, *optims)]))
    (losses_a, states_a), (losses_b, states_b) = results
    assert losses_a == losses_b
    for a, b in zip(states_a[:2], states_b[:2]):
        assert all(torch.equal(a[k], b[k]) for k in a)
    for a, b in zip(states_a[2:], states_b[2:]):
        for key in a["state"]:
            assert all(torch.equal(a["state"][key][k], b["state"][key][k]) for k in a["state"][key])
