"""MixtureGaussianPd against torch.distributions.MixtureSameFamily; MixtureGaussianPol in use."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence
from torch.testing import assert_close

from machina import loss_functional as lf
from machina.algos import ppo_clip
from machina.nets import PolNet, VNet
from machina.nets.mixture import MixturePolNet
from machina.pds.mixture_gaussian_pd import MixtureGaussianPd
from machina.pols import GaussianPol
from machina.pols.mixture_gaussian_pol import MixtureGaussianPol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.vfuncs import DeterministicSVfunc

LEADS = [(5,), (4, 3)]


def _params(generator, lead, k=3, d=2, spread=1.0):
    pi = torch.softmax(torch.randn(*lead, k, generator=generator), dim=-1)
    mean = spread * torch.randn(*lead, k, d, generator=generator)
    log_std = 0.3 * torch.randn(*lead, k, d, generator=generator)
    return dict(pi=pi, mean=mean, log_std=log_std)


def _torch_mixture(params):
    components = Independent(Normal(params["mean"], params["log_std"].exp()), 1)
    return MixtureSameFamily(Categorical(probs=params["pi"]), components)


def _mc_kl(p, q, n=200_000):
    torch.manual_seed(1)
    x = _torch_mixture(p).sample((n,))
    return (_torch_mixture(p).log_prob(x) - _torch_mixture(q).log_prob(x)).mean(0)


def _mc_ent(p, n=200_000):
    torch.manual_seed(2)
    mixture = _torch_mixture(p)
    return -mixture.log_prob(mixture.sample((n,))).mean(0)


@pytest.mark.parametrize("lead", LEADS)
def test_llh_matches_torch(lead):
    generator = torch.Generator().manual_seed(0)
    p = _params(generator, lead)
    x = 2.0 * torch.randn(*lead, 2, generator=generator)
    pd = MixtureGaussianPd()
    assert_close(pd.llh(x, p), _torch_mixture(p).log_prob(x))
    assert pd.sample(p).shape == (*lead, 2)
    assert pd.sample(p, torch.Size([7])).shape == (7, *lead, 2)


def test_state_independent_log_std_broadcasts():
    generator = torch.Generator().manual_seed(3)
    p = _params(generator, (6,))
    shared = dict(pi=p["pi"], mean=p["mean"], log_std=p["log_std"][0])  # (K, d)
    full = dict(p, log_std=shared["log_std"].expand_as(p["mean"]))
    x = torch.randn(6, 2, generator=generator)
    pd = MixtureGaussianPd()
    assert_close(pd.llh(x, shared), pd.llh(x, full))
    assert_close(pd.ent(shared), pd.ent(full))


def test_sample_distribution_matches_torch():
    generator = torch.Generator().manual_seed(4)
    p = _params(generator, (2,), spread=2.0)
    torch.manual_seed(0)
    samples = MixtureGaussianPd().sample(p, torch.Size([100_000]))  # (S, 2, d)
    mixture = _torch_mixture(p)
    assert_close(samples.mean(0), mixture.mean, atol=0.03, rtol=0)
    assert_close(samples.var(0), mixture.variance, atol=0.05, rtol=0.03)
    # the samples are as likely under torch's mixture as torch's own samples are
    assert_close(mixture.log_prob(samples).mean(0), -_mc_ent(p), atol=0.03, rtol=0)


def test_sample_is_reparameterised_in_the_components():
    mean = torch.zeros(1, 2, 1, requires_grad=True)
    log_std = torch.zeros(1, 2, 1, requires_grad=True)
    pi = torch.tensor([[1.0, 0.0]])
    x = MixtureGaussianPd().sample(dict(pi=pi, mean=mean, log_std=log_std), torch.Size([50]))
    x.sum().backward()
    assert_close(mean.grad, torch.tensor([[[50.0], [0.0]]]))  # only the drawn component
    assert log_std.grad[0, 0].abs() > 0 and log_std.grad[0, 1] == 0


@pytest.mark.parametrize("lead", LEADS)
def test_one_component_kl_and_entropy_are_gaussian(lead):
    generator = torch.Generator().manual_seed(5)
    p, q = _params(generator, lead, k=1), _params(generator, lead, k=1)
    pd = MixtureGaussianPd()
    gauss_p = Independent(Normal(p["mean"][..., 0, :], p["log_std"][..., 0, :].exp()), 1)
    gauss_q = Independent(Normal(q["mean"][..., 0, :], q["log_std"][..., 0, :].exp()), 1)
    assert_close(pd.kl_pq(p, q), kl_divergence(gauss_p, gauss_q))
    assert_close(pd.ent(p), gauss_p.entropy())


def test_kl_is_zero_between_equal_mixtures():
    p = _params(torch.Generator().manual_seed(6), (5,))
    assert_close(MixtureGaussianPd().kl_pq(p, p), torch.zeros(5), atol=1e-6, rtol=0)


def test_kl_and_entropy_match_monte_carlo_for_separated_components():
    """Far-apart components: the pairwise approximations become exact."""
    generator = torch.Generator().manual_seed(7)
    centres = torch.tensor([[-20.0, 0.0], [0.0, 20.0], [20.0, -20.0]])
    p = _params(generator, (3,))
    q = _params(generator, (3,))
    p["mean"] = centres + 0.5 * p["mean"]
    q["mean"] = centres + 0.5 * q["mean"]
    pd = MixtureGaussianPd()
    assert_close(pd.kl_pq(p, q), _mc_kl(p, q), atol=0.03, rtol=0)
    assert_close(pd.ent(p), _mc_ent(p), atol=0.03, rtol=0)


def test_entropy_is_an_upper_bound_between_its_limits():
    """Overlapping components: ent >= true entropy, and within [mean H_k, mean H_k + H(pi)]."""
    p = _params(torch.Generator().manual_seed(8), (6,), spread=0.7)
    pd = MixtureGaussianPd()
    ent = pd.ent(p)
    assert (ent >= _mc_ent(p) - 0.02).all(), (ent, _mc_ent(p))
    comp = Independent(Normal(p["mean"], p["log_std"].exp()), 1).entropy()
    mean_comp = (p["pi"] * comp).sum(-1)
    assert (ent >= mean_comp - 1e-5).all()
    assert (ent <= mean_comp + Categorical(probs=p["pi"]).entropy() + 1e-5).all()


def test_kl_is_an_upper_bound_with_its_minimum_at_q_equals_p():
    """On overlapping mixtures of unequal weights (where 0.x's variational approximation went
    negative, its minimum away from q = p): at least the Monte-Carlo KL, never negative, and
    flat at q = p, so that a loss minimising it keeps a policy on its target."""
    generator = torch.Generator().manual_seed(9)
    p, q = _params(generator, (8,), spread=1.5), _params(generator, (8,), spread=1.5)
    pd = MixtureGaussianPd()
    assert (pd.kl_pq(p, q) >= _mc_kl(p, q) - 0.02).all()
    near = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in p.items()}
    near["pi"] = torch.softmax(
        torch.log(p["pi"]) + 0.3 * torch.randn(8, 3, generator=generator), -1
    )
    assert (pd.kl_pq(p, near) > 0).all() and (pd.kl_pq(near, p) > 0).all()
    # 0.x's case: weights 0.8 / 0.2, means 0 and 0.5, unit stds; its gradient at q = p was
    # about 0.011 in the logits
    logits = torch.log(torch.tensor([[0.8, 0.2]], dtype=torch.float64)).requires_grad_(True)
    mean = torch.tensor([[[0.0], [0.5]]], dtype=torch.float64, requires_grad=True)
    log_std = torch.zeros(1, 2, 1, dtype=torch.float64, requires_grad=True)
    target = dict(pi=torch.tensor([[0.8, 0.2]], dtype=torch.float64), mean=mean.detach(),
                  log_std=log_std.detach())  # fmt: skip
    kl = pd.kl_pq(target, dict(pi=torch.softmax(logits, -1), mean=mean, log_std=log_std))
    kl.sum().backward()
    # 0 up to float64 rounding (softmax(log pi) returns pi within an ulp or two)
    assert abs(kl.item()) <= 16 * torch.finfo(torch.float64).eps
    for grad in (logits.grad, mean.grad, log_std.grad):
        assert_close(grad, torch.zeros_like(grad), atol=1e-12, rtol=0)
    # mixtures of different sizes (a student with fewer components than its teacher):
    # nothing to match, 0.x's variational approximation (Hershey & Olsen's eq. 20), here by
    # a plain loop over rows and component pairs with torch.distributions' Gaussian KL
    small = _params(generator, (8,), k=2, spread=1.5)
    assert_close(pd.kl_pq(p, small), _variational_reference(p, small))


def _variational_reference(p, q):
    def gauss(params, row, a):
        return Independent(Normal(params["mean"][row, a], params["log_std"][row, a].exp()), 1)

    rows = []
    for row in range(len(p["pi"])):
        total = 0.0
        for a in range(p["pi"].shape[-1]):
            own = sum(
                p["pi"][row, b] * torch.exp(-kl_divergence(gauss(p, row, a), gauss(p, row, b)))
                for b in range(p["pi"].shape[-1])
            )
            other = sum(
                q["pi"][row, b] * torch.exp(-kl_divergence(gauss(p, row, a), gauss(q, row, b)))
                for b in range(q["pi"].shape[-1])
            )
            total = total + p["pi"][row, a] * torch.log(own / other)
        rows.append(total)
    return torch.stack(rows)


def _pendulum_pol(k=3):
    env = gym.make("Pendulum-v1")
    net = MixturePolNet(env.observation_space, env.action_space, num_components=k, h1=32, h2=32)
    return env, MixtureGaussianPol(env.observation_space, env.action_space, net)


def test_pol_samples_in_episampler_and_trains_with_ppo():
    torch.manual_seed(0)
    env, pol = _pendulum_pol()
    vf = DeterministicSVfunc(env.observation_space, VNet(env.observation_space, 32, 32))
    with EpiSampler(env, pol, seed=0, num_envs=2) as sampler:
        epis = sampler.sample(pol, max_steps=400)
        det = sampler.sample(pol, max_epis=1, deterministic=True)
    assert epis[0]["a_is"]["pi"].shape == (200, 3)
    assert epis[0]["a_is"]["mean"].shape == (200, 3, 1)
    assert np.all(np.abs(epis[0]["acs"]) < 10.0)
    # deterministic actions are the most probable component's mean
    params = pol.pd_params(det[0]["obs"])
    best = params["pi"].argmax(-1)
    expected = params["mean"][torch.arange(len(best)), best]
    assert_close(torch.as_tensor(det[0]["acs"]), expected.detach())

    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_vs(traj, vf)
    traj = ef.compute_rets(traj, 0.99)
    traj = ef.compute_advs(traj, 0.99, 0.95)
    traj = ef.centerize_advs(traj)
    traj.register_epis()
    optim_pol = torch.optim.Adam(pol.parameters(), 3e-4)
    optim_vf = torch.optim.Adam(vf.parameters(), 3e-4)

    def ppo_loss():
        with torch.no_grad():
            return float(lf.pg_clip(pol, dict(traj.data_map), 0.2))

    before = ppo_loss()
    result = ppo_clip.train(
        traj, pol, vf, optim_pol, optim_vf, epoch=2, batch_size=100, log_enable=False
    )
    assert np.all(np.isfinite(result["PolLoss"]))
    assert ppo_loss() < before  # the mixture's gradients reach its parameters, the right way


def test_pol_fits_bimodal_actions_that_a_gaussian_cannot():
    """Maximum likelihood on actions at -0.7 or +0.7 (50/50): the mixture finds both modes."""
    torch.manual_seed(0)
    env, mix = _pendulum_pol(k=2)
    ob, ac = env.observation_space, env.action_space
    gauss = GaussianPol(ob, ac, PolNet(ob, ac, 32, 32))
    ob.seed(0)  # the space's own generator: unseeded, the data changed from run to run
    obs = torch.as_tensor(np.stack([ob.sample() for _ in range(512)]))
    acs = torch.where(torch.rand(512, 1) < 0.5, -0.7, 0.7) + 0.05 * torch.randn(512, 1)
    final = {}
    for name, pol in (("mixture", mix), ("gaussian", gauss)):
        optim = torch.optim.Adam(pol.parameters(), 1e-2)
        for _ in range(300):
            loss = -pol.pd.llh(acs, pol.pd_params(obs)).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
        final[name] = -float(loss.detach())
    # a Gaussian's best fit has std ~0.7: llh ~ -0.7; the mixture's modes std 0.05: llh ~ 0.8
    assert final["mixture"] > 0.5 and final["gaussian"] < -0.5, final
    params = mix.pd_params(obs[:1])
    modes = torch.sort(params["mean"][0, :, 0].detach()).values
    assert_close(modes, torch.tensor([-0.7, 0.7]), atol=0.05, rtol=0)
