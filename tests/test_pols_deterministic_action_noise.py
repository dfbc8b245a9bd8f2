"""machina.pols.deterministic_action_noise_pol: noise, clipping and reset."""

import numpy as np
import pytest
import torch
from offpolicy_parts import BOX_AC, BOX_OB
from torch.testing import assert_close

from machina.nets import PolNet
from machina.noise import GaussianActionNoise, OUActionNoise
from machina.pols import DeterministicActionNoisePol


def test_deterministic_action_noise_pol_noise_and_clipping():
    torch.manual_seed(0)
    net = PolNet(BOX_OB, BOX_AC, deterministic=True)
    noise = GaussianActionNoise(BOX_AC, std=5.0)
    pol = DeterministicActionNoisePol(BOX_OB, BOX_AC, net, noise=noise)
    obs = torch.randn(1000, 3)
    ac_real, ac, a_i = pol(obs)
    ac = ac.detach()
    assert float(ac.abs().max()) <= 1.0 and np.abs(ac_real).max() <= 2.0
    assert float((ac.abs() == 1.0).float().mean()) > 0.5  # most noisy actions were clipped
    _, det_ac, det_a_i = pol.deterministic_ac_real(obs)
    assert_close(det_ac, net(obs))
    assert_close(a_i["mean"], det_a_i["mean"])
    assert_close(pol.pd_params(obs)["mean"], net(obs))
    ou = OUActionNoise(BOX_AC)
    pol = DeterministicActionNoisePol(BOX_OB, BOX_AC, net, noise=ou)
    pol(obs[:4])
    assert ou.x_prev is not None
    pol.reset()
    assert ou.x_prev is None
    with pytest.raises(ValueError, match="net"):
        DeterministicActionNoisePol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC))
