"""machina.pols.tanh_gaussian_pol: the sampler's and SAC's actions share one distribution."""

import math

import numpy as np
import torch
from offpolicy_parts import BOX_AC, BOX_OB
from torch.testing import assert_close

from machina import loss_functional as lf
from machina.nets import PolNet
from machina.pols import TanhGaussianPol


def test_tanh_gaussian_pol_samples_the_distribution_sac_assumes():
    """The sampler's actions and SAC's reparameterised ones come from one distribution."""
    torch.manual_seed(0)
    pol = TanhGaussianPol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC))
    with torch.no_grad():  # a wide, off-centre distribution, where squashing shows
        pol.net.head.mean_layer.bias.fill_(1.0)
        pol.net.head.log_std_param.fill_(0.5)
    obs = torch.zeros(20000, 3)
    ac_real, ac, a_i = pol(obs)
    ac = ac.detach()
    assert np.all(np.abs(ac_real) < 2.0) and float(ac.abs().max()) < 1.0
    assert_close(ac_real, (2.0 * ac).numpy(), atol=1e-5, rtol=0)
    loss_acs, _ = lf.sample_acs(pol, pol.pd_params(obs[:1]), sampling=20000)
    quantiles = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    expected = torch.tanh(1.0 + math.exp(0.5) * torch.distributions.Normal(0, 1).icdf(quantiles))
    # 20000 draws: the standard error of these quantiles is at most ~0.016
    assert_close(torch.quantile(ac.flatten(), quantiles), expected, atol=0.05, rtol=0)
    assert_close(
        torch.quantile(loss_acs.detach().flatten(), quantiles), expected, atol=0.05, rtol=0
    )
    # the deterministic action is the net's mean, the median of the samples
    det_real, det_ac, _ = pol.deterministic_ac_real(obs[:1])
    assert_close(det_ac, a_i["mean"][:1])
