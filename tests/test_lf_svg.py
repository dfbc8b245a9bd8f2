"""machina.loss_functional.svg: SVG(0) and SVG(1) losses in closed form."""

import copy

import pytest
import torch
from offpolicy_parts import BOX_AC, BOX_OB, ConstQNet, PeakQNet, _tiny_batch
from torch import nn
from torch.testing import assert_close

from machina import loss_functional as lf
from machina.loss_functional import svg as svg_lf
from machina.nets import PolNet, VNet
from machina.pols import DeterministicActionNoisePol, GaussianPol, TanhGaussianPol
from machina.vfuncs import DeterministicSAVfunc, DeterministicSVfunc


def test_svg_losses_in_closed_form():
    torch.manual_seed(0)
    gamma, c = 0.9, 10.0
    batch = _tiny_batch()
    pol = TanhGaussianPol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC))
    qf = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(c))
    expected = torch.tensor([1.0 + gamma * c, 2.0 + gamma * c, 3.0])
    assert_close(svg_lf.svg_targets(pol, qf, batch, gamma, sampling=3), expected)
    # the action gradient of Q = -(a - 0.5)^2 points the mean toward 0.5
    peak = DeterministicSAVfunc(BOX_OB, BOX_AC, PeakQNet())
    peak_batch = dict(obs=torch.full((4, 3), 0.5))
    loss = svg_lf.ag(pol, peak, peak_batch, sampling=64)
    loss.backward()
    mean_bias_grad = pol.net.head.mean_layer.bias.grad
    mean = float(pol.pd_params(peak_batch["obs"])["mean"][0, 0].detach())
    assert float(mean_bias_grad[0]) * (mean - 0.5) > 0  # descent moves the mean to 0.5
    # an exact model has zero regression loss; the SVG(1) return of a known model and value
    dm = lambda obs, acs: torch.ones_like(obs)  # noqa: E731
    assert float(svg_lf.delta_regression(dm, batch)) == 0.0
    vf = DeterministicSVfunc(BOX_OB, ConstVNet(c))
    rew_fn = lambda obs, acs: -(acs[..., 0] ** 2)  # noqa: E731
    det_pol = DeterministicActionNoisePol(
        BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC, deterministic=True)
    )
    # a deterministic policy's action is its mean: -E[r + gamma (1 - term) V]
    acs = det_pol.pd_params(batch["obs"])["mean"][:, 0]
    expected = -torch.mean(-(acs**2) + gamma * c * torch.tensor([1.0, 1.0, 0.0]))
    assert_close(svg_lf.svg1_pol(det_pol, vf, dm, rew_fn, batch, gamma), expected)


class ConstVNet(nn.Module):
    """V(s) = c everywhere."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, obs):
        return self.c.expand(obs.shape[:-1] + (1,))


def test_svg1_value_loss_weights_by_the_likelihood_ratio():
    """On-policy data: weights 1 (plain TD); data from a far policy: clipped weights."""
    torch.manual_seed(0)
    gamma = 0.9
    pol = GaussianPol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC))
    obs = torch.randn(64, 3)
    params = {k: v.detach() for k, v in pol.pd_params(obs).items()}
    batch = dict(
        obs=obs,
        next_obs=torch.randn(64, 3),
        acs=pol.pd.sample(params).detach(),
        rews=torch.randn(64),
        terms=torch.rand(64) < 0.2,
        **params,
    )
    vf = DeterministicSVfunc(BOX_OB, VNet(BOX_OB, 8, 8))
    targ_vf = copy.deepcopy(vf)
    with torch.no_grad():
        for p in targ_vf.parameters():
            p.add_(0.1)
    vs = vf(obs)[0]
    targets = lf.bellman_target(batch["rews"], batch["terms"], targ_vf(batch["next_obs"])[0], gamma)
    td = 0.5 * (vs - targets) ** 2
    assert_close(svg_lf.svg1_vf(vf, targ_vf, pol, batch, gamma), td.mean())
    # recorded log_std far below the policy's: ratios explode and are clipped before normalising
    far = dict(batch, log_std=batch["log_std"] - 3.0)
    new = pol.pd_params(obs)
    ratio = torch.exp(pol.pd.llh(batch["acs"], new) - pol.pd.llh(batch["acs"], far))
    weights = ratio.clamp(max=2.0)
    expected = (weights / weights.mean() * td).mean()
    assert_close(svg_lf.svg1_vf(vf, targ_vf, pol, far, gamma, max_weight=2.0), expected)
    del far["log_std"]
    with pytest.raises(KeyError, match="log_std"):
        svg_lf.svg1_vf(vf, targ_vf, pol, far, gamma)
