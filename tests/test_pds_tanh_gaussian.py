"""machina.pds.tanh_gaussian_pd against torch's TransformedDistribution."""

import torch
from torch.testing import assert_close

from machina.pols import TanhGaussianPd


def test_tanh_gaussian_pd_matches_torch_transformed_normal():
    torch.manual_seed(0)
    pd = TanhGaussianPd()
    params = dict(mean=torch.tensor([[0.5, -0.9], [0.0, 0.99]]), log_std=torch.tensor([-1.0, 0.3]))
    acs, llh = pd.sample_with_llh(params, torch.Size([5]))
    loc = torch.atanh(params["mean"])
    ref = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(loc, params["log_std"].exp()),
        [torch.distributions.TanhTransform()],
    )
    assert acs.shape == (5, 2, 2) and llh.shape == (5, 2)
    assert_close(llh, ref.log_prob(acs).sum(-1), atol=1e-3, rtol=1e-4)
    assert_close(pd.llh(acs, params), llh, atol=1e-3, rtol=1e-4)
    # entropy by quadrature against a Monte-Carlo estimate
    _, many = pd.sample_with_llh(params, torch.Size([200000]))
    assert_close(pd.ent(params), -many.mean(0), atol=0.01, rtol=0)
    # KL is the pre-squash Gaussians' KL: zero for equal parameters
    assert_close(pd.kl_pq(params, params), torch.zeros(2))


def test_llh_of_nearly_saturated_float32_actions_uses_their_own_pre_squash_value():
    # |u| in (7.25, 8.3): float32 tanh(u) still tells them apart, but the clip at 1 - 1e-6
    # evaluated every one at u = 7.25 (PPO's ratio of such actions: 0.47 for 0.27)
    pd = TanhGaussianPd()
    params = dict(mean=torch.tanh(torch.tensor([[6.5], [-7.0]])), log_std=torch.zeros(2, 1))
    u = torch.tensor([[7.6], [-8.0]])
    x = torch.tanh(u.double()).float()  # what a sampler records
    own_u = torch.atanh(x.double())  # the pre-squash value x itself stands for
    loc = torch.atanh(params["mean"].double())
    expected = (
        torch.distributions.Normal(loc, 1.0).log_prob(own_u)
        - torch.log1p(-(torch.tanh(own_u) ** 2))
    ).sum(-1)
    # float32: atanh's condition near 1 amplifies x's rounding (one ulp of 1 - x is ~1e-7
    # relative to 1 - x ~ 1e-6: ~0.3 in u at worst for u ~ 8); u itself is what is compared
    assert (own_u - u.double()).abs().max() < 0.35
    assert_close(pd.llh(x, params).double(), expected, atol=1e-3, rtol=1e-4)
    # actions at the bounds stay finite, and score alike stored as float32 or float64
    at_bounds = torch.tensor([[1.0], [-1.0]])
    assert torch.isfinite(pd.llh(at_bounds, params)).all()
    assert torch.equal(pd.llh(at_bounds, params), pd.llh(at_bounds.double(), params))
