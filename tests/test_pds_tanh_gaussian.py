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
