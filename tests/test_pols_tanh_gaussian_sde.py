"""TanhGaussianSDEPol (SAC with gSDE): its squashed marginal against torch.distributions, its
noise schedule, the mean's clamp, its errors and a resumed state."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from machina.nets import SDEPolNet
from machina.pols import TanhGaussianSDEPol

OB = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
AC = gym.spaces.Box(np.array([-2.0, 0.0, -1.0], np.float32), np.array([2.0, 1.0, 3.0], np.float32))
# float32 rounding of sums of a few dozen terms, relative
F32_TOL = 64 * float(np.finfo(np.float32).eps)


def make(sample_freq=4, log_std_init=-1.0, **kwargs):
    torch.manual_seed(0)
    net = SDEPolNet(OB, AC, h1=16, h2=8)
    return TanhGaussianSDEPol(
        OB, AC, net, log_std_init=log_std_init, sample_freq=sample_freq, **kwargs
    )


def obs_batch(n=6, seed=1):
    return torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (n, 5)).astype(np.float32))


def squashed(mean, log_std):
    """torch's tanh-transformed Gaussian, in float64."""
    base = torch.distributions.Normal(mean.double(), torch.exp(log_std.double()))
    return torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform()])


def test_log_likelihood_is_the_squashed_marginal_gaussian():
    pol = make()
    with torch.no_grad():
        pol.log_std.copy_(torch.linspace(-2.0, 0.5, 24).reshape(8, 3))
        pol.net.mean_layer.bias.copy_(torch.tensor([0.5, -3.0, 1.0]))  # one mean clamped
    obs = obs_batch()
    params = pol.pd_params(obs)
    assert set(params) == {"mean", "log_std"}
    pre, features = (t.detach() for t in pol.net(obs))
    loc = pre.clamp(-2.0, 2.0).double()
    # per (state, action dim) loop: the variance of phi(s) @ E over the draws of E
    std = torch.exp(pol.log_std).detach().double()
    ref_log_std = torch.empty(6, 3, dtype=torch.float64)
    for b in range(6):
        for j in range(3):
            var = sum(float(features[b, i]) ** 2 * float(std[i, j]) ** 2 for i in range(8))
            ref_log_std[b, j] = 0.5 * math.log(var + 1e-6)
    torch.testing.assert_close(params["mean"].double(), torch.tanh(loc), rtol=F32_TOL, atol=0)
    torch.testing.assert_close(params["log_std"].double(), ref_log_std, rtol=F32_TOL, atol=F32_TOL)
    # actions away from +-1, where atanh keeps float32's digits
    acs = torch.from_numpy(np.random.default_rng(2).uniform(-0.95, 0.95, (6, 3)).astype(np.float32))
    expected = squashed(loc, ref_log_std).log_prob(acs.double()).sum(-1)
    torch.testing.assert_close(pol.pd.llh(acs, params).double(), expected, rtol=1e-4, atol=1e-4)


def test_acting_draws_follow_the_marginal_over_exploration_matrices():
    # one matrix per row and a new draw every acting call: atanh of the actions is Gaussian
    # with the marginal's mean and variance (5 standard errors), the actions inside (-1, 1)
    pol = make(sample_freq=1, log_std_init=-0.7, per_env_noise=True)
    obs = obs_batch(n=2)
    params = pol.pd_params(obs)
    loc = torch.atanh(params["mean"].detach().double())
    var = torch.exp(2 * params["log_std"].detach().double())
    n = 4000
    torch.manual_seed(3)
    with torch.no_grad():
        acs = torch.stack([pol(obs)[1] for _ in range(n)]).double()  # (n, 2, 3)
    assert torch.all(acs.abs() < 1)
    u = torch.atanh(acs)
    assert torch.all((u.mean(0) - loc).abs() <= 5 * torch.sqrt(var / n))
    assert torch.all((u.var(0) - var).abs() <= 5 * var * math.sqrt(2.0 / n))


def test_noise_is_kept_for_sample_freq_acting_calls_and_scaled_to_the_bounds():
    pol = make(sample_freq=3)
    with torch.no_grad():  # one mean beyond clip_mean: the noise is added to the clamped one
        pol.net.mean_layer.bias.copy_(torch.tensor([0.5, -3.0, 1.0]))
    obs = obs_batch()
    mats = []
    with torch.no_grad():
        for _ in range(7):
            real, ac, a_i = pol(obs)
            mat = pol.exploration_mat.clone()
            pre, features = pol.net(obs)
            torch.testing.assert_close(ac, torch.tanh(pre.clamp(-2, 2) + features @ mat))
            low, high = torch.from_numpy(AC.low), torch.from_numpy(AC.high)
            torch.testing.assert_close(torch.from_numpy(real), low + (ac + 1) * (high - low) / 2)
            mats.append(mat)
    assert all(torch.equal(mats[0], m) for m in mats[1:3])
    assert all(torch.equal(mats[3], m) for m in mats[4:6])
    assert not torch.equal(mats[0], mats[3]) and not torch.equal(mats[3], mats[6])


def test_deterministic_action_is_the_squashed_clamped_mean():
    pol = make(clip_mean=1.5)
    with torch.no_grad():
        pol.net.mean_layer.bias.copy_(torch.tensor([10.0, -10.0, 0.0]))
        obs = obs_batch()
        _, ac, a_i = pol.deterministic_ac_real(obs)
        pre = pol.net(obs)[0]
    torch.testing.assert_close(ac, torch.tanh(pre.clamp(-1.5, 1.5)))
    torch.testing.assert_close(ac, a_i["mean"])
    assert torch.all(ac[:, 0] == math.tanh(1.5)) and torch.all(ac[:, 1] == -math.tanh(1.5))


def test_sac_gradients_reach_the_trunk_through_the_features_by_default():
    obs = obs_batch()
    grads = {}
    for learn_features in (True, False):
        pol = make(learn_features=learn_features)
        with torch.no_grad():  # a mean that no gradient of the llh reaches
            pol.net.mean_layer.weight.zero_()
        params = pol.pd_params(obs)
        _, llh = pol.pd.sample_with_llh({**params, "mean": params["mean"].detach()})
        llh.sum().backward()
        grads[learn_features] = pol.net.fc1.weight.grad
    assert grads[True] is not None and torch.any(grads[True] != 0)
    assert grads[False] is None or torch.all(grads[False] == 0)


@pytest.mark.parametrize("clip_mean", [0.0, -1.0, float("nan"), 7.5, float("inf")])
def test_clip_mean_must_be_a_bound_the_distribution_keeps(clip_mean):
    # beyond |m| = 7.25 the distribution's mean, recovered from tanh(m), would not be m
    with pytest.raises(ValueError, match=r"clip_mean: expected a bound in \(0, 7.0\]"):
        make(clip_mean=clip_mean)


def test_state_dict_carries_the_exploration_matrix():
    pol = make(sample_freq=5)
    obs = obs_batch()
    with torch.no_grad():
        pol(obs)
        pol(obs)
    copy_ = make(sample_freq=5)
    copy_.load_state_dict(pol.state_dict())
    with torch.no_grad():
        for _ in range(4):  # the rest of the window, then a fresh draw from the same RNG
            state = torch.get_rng_state()
            a = pol(obs)[1]
            torch.set_rng_state(state)
            torch.testing.assert_close(copy_(obs)[1], a, rtol=0, atol=0)
