"""machina.noise: Ornstein-Uhlenbeck and Gaussian action noise."""

import math

import pytest
import torch
from offpolicy_parts import BOX_AC, DISCRETE_AC
from torch.testing import assert_close

from machina.noise import GaussianActionNoise, OUActionNoise


def test_ou_noise_follows_its_recursion_and_resets():
    noise = OUActionNoise(BOX_AC, sigma=0.3, theta=0.5, dt=0.1, x0=[1.0])
    torch.manual_seed(0)
    x1 = noise((2,))
    x2 = noise((2,))
    torch.manual_seed(0)
    eps1, eps2 = torch.randn(2, 1), torch.randn(2, 1)
    step = lambda x, e: x + 0.5 * (0.0 - x) * 0.1 + 0.3 * math.sqrt(0.1) * e  # noqa: E731
    assert_close(x1, step(torch.ones(2, 1), eps1))
    assert_close(x2, step(x1, eps2))
    noise.reset()
    torch.manual_seed(0)
    assert_close(noise((2,)), x1)
    # a new batch shape starts again from x0
    torch.manual_seed(0)
    assert noise((3,)).shape == (3, 1)
    # stationary standard deviation sigma * sqrt(dt / (1 - (1 - theta dt)^2))
    noise = OUActionNoise(BOX_AC, sigma=0.3, theta=0.5, dt=0.1)
    for _ in range(300):
        x = noise((4000,))
    stationary = 0.3 * math.sqrt(0.1 / (1 - (1 - 0.05) ** 2))
    assert float(x.std()) == pytest.approx(stationary, rel=0.05)


def test_ou_noise_state_dict_continues_the_process():
    noise = OUActionNoise(BOX_AC, sigma=0.3, theta=0.5, dt=0.1)
    assert noise.state_dict() == {}  # nothing drawn yet
    noise((2,))
    copy = OUActionNoise(BOX_AC, sigma=0.3, theta=0.5, dt=0.1)
    copy.load_state_dict(noise.state_dict())
    torch.manual_seed(1)
    expected = noise((2,))
    torch.manual_seed(1)
    assert torch.equal(copy((2,)), expected)
    with pytest.raises(ValueError, match=r"state: OUActionNoise keeps only 'x_prev'"):
        copy.load_state_dict({"x": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"x_prev'\]: expected shape \(\.\.\., 1\)"):
        copy.load_state_dict({"x_prev": torch.zeros(2, 3)})
    gaussian = GaussianActionNoise(BOX_AC, std=0.1)
    assert gaussian.state_dict() == {}
    with pytest.raises(ValueError, match="GaussianActionNoise has no state"):
        gaussian.load_state_dict({"x_prev": torch.zeros(1)})


def test_gaussian_noise_moments_and_errors():
    torch.manual_seed(0)
    x = GaussianActionNoise(BOX_AC, std=0.2, mu=0.1)((20000,))
    assert x.shape == (20000, 1)
    assert float(x.mean()) == pytest.approx(0.1, abs=0.01)
    assert float(x.std()) == pytest.approx(0.2, rel=0.03)
    with pytest.raises(ValueError, match="std"):
        GaussianActionNoise(BOX_AC, std=-1.0)
    with pytest.raises(ValueError, match="action_space"):
        GaussianActionNoise(DISCRETE_AC)
