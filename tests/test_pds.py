"""Distributions agree with torch.distributions on random parameters, leading dims (B,), (T, B)."""

import pytest
import scipy.stats
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence
from torch.testing import assert_close

from machina.pds import (
    CategoricalPd,
    DeterministicPd,
    GaussianPd,
    MixtureGaussianPd,
    MultiCategoricalPd,
    TanhGaussianPd,
)

LEADS = [(5,), (4, 3)]


def _gaussian_params(generator, lead, dim=3):
    mean = torch.randn(*lead, dim, generator=generator)
    log_std = 0.5 * torch.randn(*lead, dim, generator=generator)
    return dict(mean=mean, log_std=log_std)


def _normal(params):
    return Independent(Normal(params["mean"], params["log_std"].exp()), 1)


def _probs(generator, shape):
    return torch.softmax(2.0 * torch.randn(*shape, generator=generator), dim=-1)


@pytest.mark.parametrize("lead", LEADS)
def test_gaussian_matches_torch(lead):
    generator = torch.Generator().manual_seed(0)
    p, q = _gaussian_params(generator, lead), _gaussian_params(generator, lead)
    x = torch.randn(*lead, 3, generator=generator)
    pd = GaussianPd()
    assert_close(pd.llh(x, p), _normal(p).log_prob(x))
    assert_close(pd.kl_pq(p, q), kl_divergence(_normal(p), _normal(q)))
    assert_close(pd.ent(p), _normal(p).entropy())
    assert pd.llh(x, p).shape == lead
    assert pd.sample(p).shape == (*lead, 3)
    assert pd.sample(p, torch.Size([2])).shape == (2, *lead, 3)


def test_gaussian_state_independent_log_std_broadcasts():
    pd = GaussianPd()
    mean, log_std = torch.randn(6, 2), torch.tensor([0.1, -0.3])
    full = dict(mean=mean, log_std=log_std.expand_as(mean))
    x = torch.randn(6, 2)
    assert_close(pd.llh(x, dict(mean=mean, log_std=log_std)), pd.llh(x, full))
    assert_close(pd.ent(dict(mean=mean, log_std=log_std)), pd.ent(full))


def test_gaussian_sample_statistics_and_reparameterisation():
    torch.manual_seed(0)
    mean = torch.tensor([[1.0, -2.0]], requires_grad=True)
    log_std = torch.tensor([[0.0, -1.0]], requires_grad=True)
    samples = GaussianPd().sample(dict(mean=mean, log_std=log_std), torch.Size([20000]))
    assert_close(samples.mean(0), mean.detach(), atol=0.03, rtol=0)
    assert_close(samples.std(0), log_std.detach().exp(), atol=0.03, rtol=0)
    samples.sum().backward()
    assert_close(mean.grad, torch.full_like(mean, 20000.0))
    assert log_std.grad.abs().sum() > 0


@pytest.mark.parametrize("lead", LEADS)
def test_categorical_matches_torch(lead):
    generator = torch.Generator().manual_seed(1)
    p_pi, q_pi = _probs(generator, (*lead, 4)), _probs(generator, (*lead, 4))
    x = torch.randint(4, lead, generator=generator)
    pd, ref_p, ref_q = CategoricalPd(), Categorical(probs=p_pi), Categorical(probs=q_pi)
    assert_close(pd.llh(x, dict(pi=p_pi)), ref_p.log_prob(x))
    assert_close(pd.kl_pq(dict(pi=p_pi), dict(pi=q_pi)), kl_divergence(ref_p, ref_q))
    assert_close(pd.ent(dict(pi=p_pi)), ref_p.entropy())
    sample = pd.sample(dict(pi=p_pi))
    assert sample.shape == lead and sample.dtype == torch.int64
    assert pd.sample(dict(pi=p_pi), torch.Size([7])).shape == (7, *lead)


def test_categorical_sample_frequencies():
    torch.manual_seed(0)
    pi = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.25, 0.25]])
    samples = CategoricalPd().sample(dict(pi=pi), torch.Size([20000]))
    freqs = torch.nn.functional.one_hot(samples, 4).float().mean(0)
    assert_close(freqs, pi, atol=0.015, rtol=0)
    assert not (samples[:, 0] == 1).any()


def _chi_square_p_value(samples, pi):
    """Pearson's test of class counts against ``pi``, pooled over every row of ``pi``.

    ``samples (N, *lead)`` drawn from ``pi (*lead, n)``; classes of probability 0 must have
    no draws and are left out of the degrees of freedom.
    """
    n = pi.shape[-1]
    counts = torch.nn.functional.one_hot(samples, n).sum(0).reshape(-1, n).double()
    expected = samples.shape[0] * pi.reshape(-1, n).double()
    possible = expected > 0
    assert (counts[~possible] == 0).all()
    stat = ((counts - expected)[possible] ** 2 / expected[possible]).sum().item()
    dof = int(possible.sum()) - counts.shape[0]
    return scipy.stats.chi2.sf(stat, dof)


def test_categorical_sampling_is_exact_chi_square():
    """Inverse-CDF sampling draws class k with probability pi[k] (chi-square, fixed seed).

    Rows of 6 classes, some with zero or tiny probabilities, over leading dims (2, 3); drawn
    as a sample_shape (one CDF per row), one sample per row (what a sampler does), and from
    unnormalised weights. The same test rejects samples of a slightly perturbed pi, so a
    biased sampler would fail it.
    """
    torch.manual_seed(0)
    pi = _probs(torch.Generator().manual_seed(3), (2, 3, 6))
    pi[0, 0, 1] = pi[1, 2, 5] = 0.0
    pi[0, 1, 3] = 1e-3
    pi = pi / pi.sum(-1, keepdim=True)
    pd, num = CategoricalPd(), 40_000
    shaped = pd.sample(dict(pi=pi), torch.Size([num]))
    one_per_row = pd.sample(dict(pi=pi.expand(num, *pi.shape)))
    unnormalised = pd.sample(dict(pi=3.0 * pi), torch.Size([num]))
    for samples in (shaped, one_per_row, unnormalised):
        assert samples.shape == (num, 2, 3) and samples.dtype == torch.int64
        assert _chi_square_p_value(samples, pi) > 1e-3
    perturbed = pi.clone()
    perturbed[..., 0] += 0.02
    perturbed[..., 2] = (perturbed[..., 2] - 0.02).clamp_min(0.0)
    assert (
        _chi_square_p_value(
            pd.sample(dict(pi=perturbed / perturbed.sum(-1, keepdim=True)), torch.Size([num])), pi
        )
        < 1e-6
    )


@pytest.mark.parametrize("bad", [[0.5, float("nan")], [0.0, 0.0], [-0.1, 1.1], [float("inf"), 1.0]])
def test_categorical_sample_rejects_invalid_probabilities(bad):
    pi = torch.tensor([[0.5, 0.5], bad])
    with pytest.raises(ValueError, match=r"pi: expected probabilities .*\(row 1 "):
        CategoricalPd().sample(dict(pi=pi))


def test_categorical_zero_probabilities_stay_finite():
    pi = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    pd = CategoricalPd()
    assert torch.isfinite(pd.ent(dict(pi=pi))).all()
    assert torch.isfinite(pd.kl_pq(dict(pi=pi), dict(pi=pi))).all()
    assert_close(pd.ent(dict(pi=pi)), torch.tensor([0.0, 0.6931472]))


def _multi(pi):
    return Independent(Categorical(probs=pi), 1)


@pytest.mark.parametrize("lead", LEADS)
def test_multi_categorical_matches_torch(lead):
    generator = torch.Generator().manual_seed(2)
    p_pi, q_pi = _probs(generator, (*lead, 2, 5)), _probs(generator, (*lead, 2, 5))
    x = torch.randint(5, (*lead, 2), generator=generator)
    pd = MultiCategoricalPd()
    assert_close(pd.llh(x, dict(pi=p_pi)), _multi(p_pi).log_prob(x))
    assert_close(pd.kl_pq(dict(pi=p_pi), dict(pi=q_pi)), kl_divergence(_multi(p_pi), _multi(q_pi)))
    assert_close(pd.ent(dict(pi=p_pi)), _multi(p_pi).entropy())
    assert pd.sample(dict(pi=p_pi)).shape == (*lead, 2)
    assert pd.sample(dict(pi=p_pi), torch.Size([3])).shape == (3, *lead, 2)


def test_multi_categorical_padding_classes_are_never_sampled():
    torch.manual_seed(0)
    # sub-action 0 has 2 classes padded to 3, sub-action 1 has 3
    pi = torch.tensor([[[0.3, 0.7, 0.0], [0.2, 0.3, 0.5]]])
    pd = MultiCategoricalPd()
    samples = pd.sample(dict(pi=pi), torch.Size([5000]))
    assert (samples[..., 0] < 2).all()
    assert_close(pd.ent(dict(pi=pi)), _multi(pi).entropy())


@pytest.mark.parametrize("lead", LEADS)
def test_deterministic_is_a_point_mass(lead):
    mean = torch.randn(*lead, 3)
    pd = DeterministicPd()
    params = dict(mean=mean)
    assert torch.equal(pd.sample(params), mean)
    assert pd.sample(params, torch.Size([2])).shape == (2, *lead, 3)
    assert torch.equal(pd.llh(mean, params), torch.zeros(lead))
    assert torch.isneginf(pd.llh(mean + 1.0, params)).all()
    assert torch.equal(pd.kl_pq(params, params), torch.zeros(lead))
    assert torch.isposinf(pd.kl_pq(params, dict(mean=mean + 1.0))).all()
    assert torch.equal(pd.ent(params), torch.zeros(lead))


def test_missing_key_names_it():
    with pytest.raises(KeyError, match="log_std"):
        GaussianPd().llh(torch.zeros(2, 1), dict(mean=torch.zeros(2, 1)))


@pytest.mark.parametrize("name", ["gaussian", "tanh", "mixture", "deterministic"])
def test_llh_of_actions_of_another_rank_raises_instead_of_broadcasting(name):
    # a 1-dim Box policy's mean is (B, 1); actions saved squeezed, (B,), would broadcast
    # (x - mean) to (B, B) and sum it: a wrong log-likelihood with no error
    b = 4
    mean = torch.linspace(-0.5, 0.5, b)[:, None]
    pd, params = {
        "gaussian": (GaussianPd(), dict(mean=mean, log_std=torch.zeros(b, 1))),
        "tanh": (TanhGaussianPd(), dict(mean=mean, log_std=torch.zeros(b, 1))),
        "mixture": (
            MixtureGaussianPd(),
            dict(
                pi=torch.full((b, 2), 0.5),
                mean=mean[:, None].expand(b, 2, 1),
                log_std=torch.zeros(b, 2, 1),
            ),
        ),
        "deterministic": (DeterministicPd(), dict(mean=mean)),
    }[name]
    with pytest.raises(ValueError, match=r"x: .*llh expected actions of shape \(\*sample, 4, 1\)"):
        pd.llh(mean[:, 0], params)
    with pytest.raises(ValueError, match="got \\(4, 2\\)"):
        pd.llh(torch.zeros(b, 2), params)
    # the right shape, and extra leading sample dims, still work
    assert pd.llh(mean, params).shape == (b,)
    assert pd.llh(mean.expand(3, b, 1), params).shape == (3, b)
