"""machina.pols.tanh_gaussian_pol: the sampler's and SAC's actions share one distribution;
with ``PolNet(state_std=True)`` (SAC's state-dependent log-std) too."""

import math

import gymnasium
import numpy as np
import pytest
import torch
from offpolicy_parts import BOX_AC, BOX_OB
from torch.testing import assert_close

from machina import loss_functional as lf
from machina.nets import PolNet, QNet
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


# PolNet's initial log-std and the clamp of a state-dependent one (SAC's reference values)
LOG_STD_INIT, LOG_STD_MIN, LOG_STD_MAX = -1.0, -20.0, 2.0


def _state_std_pol(seed: int = 0) -> TanhGaussianPol:
    """SAC's policy with a state-dependent log-std, weights large enough to vary it."""
    torch.manual_seed(seed)
    pol = TanhGaussianPol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC, 16, 16, state_std=True))
    with torch.no_grad():
        pol.net.head.log_std_layer.weight.normal_(0.0, 1.0)
        pol.net.head.mean_layer.weight.normal_(0.0, 1.0)
    return pol


def test_state_std_log_std_is_a_clamped_function_of_the_state():
    torch.manual_seed(0)
    net = PolNet(BOX_OB, BOX_AC, 16, 16, state_std=True)
    obs = torch.randn(64, 3)
    mean, log_std = net(obs)
    assert log_std.shape == mean.shape == (64, 1) and log_std.requires_grad
    # starts at the state-independent net's initial log-std in every state (gain 0.01)
    assert_close(log_std, torch.full((64, 1), LOG_STD_INIT), atol=0.05, rtol=0)
    assert not hasattr(net.head, "log_std_param")
    pol = _state_std_pol()
    _, log_std = pol.net(obs)
    assert float(log_std.detach().std(dim=0).min()) > 0.1  # differs from state to state
    with torch.no_grad():
        pol.net.head.log_std_layer.bias.fill_(50.0)
    assert torch.equal(pol.net(obs)[1], torch.full((64, 1), LOG_STD_MAX))
    with torch.no_grad():
        pol.net.head.log_std_layer.bias.fill_(-50.0)
    assert torch.equal(pol.net(obs)[1], torch.full((64, 1), LOG_STD_MIN))


def test_state_std_policy_log_likelihood_is_torch_distributions():
    """Per state, the actions' log-likelihood is a tanh-transformed Normal's."""
    pol = _state_std_pol()
    obs = torch.randn(500, 3)
    params = pol.pd_params(obs)
    acs, llh = lf.sample_acs(pol, params, sampling=1)  # (1, B, d), (1, B)
    acs, llh = acs[0], llh[0]
    mean, log_std = pol.net(obs)
    ref = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(torch.atanh(mean), log_std.exp()),
        torch.distributions.transforms.TanhTransform(),
    )
    acs = acs.detach().clamp(-1 + 1e-6, 1 - 1e-6)
    expected = ref.log_prob(acs).sum(-1)
    # atanh of a float32 action near +-1 loses digits: compare away from the edges
    inner = (acs.abs() < 0.99).all(-1)
    assert int(inner.sum()) > 300
    assert_close(llh.detach()[inner], expected.detach()[inner], atol=1e-3, rtol=1e-4)
    assert_close(pol.pd.llh(acs, params)[inner], expected[inner], atol=1e-3, rtol=1e-4)


def test_sac_steps_the_state_std_layer_and_the_sampler_draws_per_state():
    """SAC's entropy term reaches the log-std layer; the sampler (torch path for such a
    net) records each step's own log-std."""
    import copy

    import gymnasium as gym

    from machina.algos import sac
    from machina.samplers import EpiSampler
    from machina.traj import Traj
    from machina.vfuncs import DeterministicSAVfunc

    env = gym.make("Pendulum-v1")
    ob, ac = env.observation_space, env.action_space
    torch.manual_seed(0)
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac, 16, 16, state_std=True))
    with EpiSampler(env, pol, seed=0) as sampler:
        epis = sampler.sample(pol, max_steps=200)
    log_std = epis[0]["a_is"]["log_std"]
    assert log_std.shape == (200, 1) and np.unique(log_std).size > 100
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac, 16, 16)) for _ in range(2)]
    before = pol.net.head.log_std_layer.weight.detach().clone()
    log_alpha = torch.zeros((), requires_grad=True)
    sac.train(
        traj, pol, qfs, [copy.deepcopy(q) for q in qfs], log_alpha,
        torch.optim.Adam(pol.parameters(), 1e-3),
        [torch.optim.Adam(q.parameters(), 1e-3) for q in qfs],
        torch.optim.Adam([log_alpha], 1e-3), epoch=3, batch_size=32, tau=0.01, gamma=0.99,
        log_enable=False,
    )  # fmt: skip
    assert not torch.equal(pol.net.head.log_std_layer.weight, before)


@pytest.mark.parametrize(
    "space, kwargs",
    [(BOX_AC, dict(deterministic=True)), (gymnasium.spaces.Discrete(3), {})],
)
def test_state_std_needs_a_stochastic_box_policy(space, kwargs):
    with pytest.raises(ValueError, match=r"^PolNet: state_std=True needs a stochastic Box"):
        PolNet(BOX_OB, space, state_std=True, **kwargs)
