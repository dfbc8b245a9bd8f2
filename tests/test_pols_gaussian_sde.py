"""GaussianSDEPol (gSDE): its marginal distribution, its noise schedule, its errors, sampling."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from machina.nets import SDEPolNet
from machina.pols import GaussianSDEPol
from machina.samplers import EpiSampler

OB = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
AC = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
# float32 rounding of sums of a few dozen terms, relative
F32_TOL = 64 * float(np.finfo(np.float32).eps)


def make(sample_freq=4, log_std_init=-1.0, **kwargs):
    torch.manual_seed(0)
    net = SDEPolNet(OB, AC, h1=16, h2=8)
    return GaussianSDEPol(OB, AC, net, log_std_init=log_std_init, sample_freq=sample_freq, **kwargs)


def obs_batch(n=6, seed=1):
    return torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (n, 5)).astype(np.float32))


def reference_log_std(pol, obs):
    """Per-(state, action dim) loop over the features: the variance of phi(s) @ E."""
    features = pol.net(obs)[1].detach()
    std = torch.exp(pol.log_std).detach().double()
    out = torch.empty(obs.shape[0], AC.shape[0], dtype=torch.float64)
    for b in range(obs.shape[0]):
        for j in range(AC.shape[0]):
            var = sum(float(features[b, i]) ** 2 * float(std[i, j]) ** 2 for i in range(8))
            out[b, j] = 0.5 * math.log(var + 1e-6)
    return out


def test_log_likelihood_is_the_marginal_gaussian():
    pol = make()
    with torch.no_grad():
        pol.log_std.copy_(torch.linspace(-2.0, 0.5, 24).reshape(8, 3))
    obs = obs_batch()
    params = pol.pd_params(obs)
    assert set(params) == {"mean", "log_std"}
    ref = reference_log_std(pol, obs)
    torch.testing.assert_close(params["log_std"].double(), ref, rtol=F32_TOL, atol=F32_TOL)
    acs = torch.randn(6, 3)
    dist = torch.distributions.Normal(params["mean"].double(), torch.exp(ref))
    expected = dist.log_prob(acs.double()).sum(-1)
    torch.testing.assert_close(
        pol.pd.llh(acs, params).double(), expected, rtol=F32_TOL, atol=F32_TOL
    )
    torch.testing.assert_close(
        pol.pd.ent(params).double(), dist.entropy().sum(-1), rtol=F32_TOL, atol=F32_TOL
    )


@pytest.mark.parametrize("per_env_noise", [False, True])
def test_actions_follow_the_marginal_over_exploration_matrices(per_env_noise):
    # one acting call per draw of E: the empirical mean and variance of the actions match
    # mean(s) and exp(2 log_std(s)) within 5 standard errors, components uncorrelated
    pol = make(sample_freq=1, log_std_init=-0.5, per_env_noise=per_env_noise)
    obs = obs_batch(n=2)
    params = pol.pd_params(obs)
    mean, var = params["mean"].detach(), torch.exp(2 * params["log_std"]).detach()
    n = 4000
    torch.manual_seed(3)
    with torch.no_grad():
        acs = torch.stack([pol(obs)[1] for _ in range(n)]).double()  # (n, 2, 3)
    assert torch.all((acs.mean(0) - mean).abs() <= 5 * torch.sqrt(var / n))
    # the sample variance's standard error is var * sqrt(2 / n) for a Gaussian
    assert torch.all((acs.var(0) - var).abs() <= 5 * var * math.sqrt(2.0 / n))
    centred = (acs - acs.mean(0)) / acs.std(0)
    corr = torch.einsum("nbi,nbj->bij", centred, centred) / (n - 1)
    off_diag = corr[:, ~torch.eye(3, dtype=torch.bool)]
    assert torch.all(off_diag.abs() <= 5 / math.sqrt(n))


def test_noise_is_state_dependent_and_kept_for_sample_freq_acting_calls():
    pol = make(sample_freq=3)
    obs = obs_batch()
    mats = []
    with torch.no_grad():
        for _ in range(7):
            _, ac, a_i = pol(obs)
            mat = pol.exploration_mat.clone()
            _, features = pol.net(obs)
            torch.testing.assert_close(ac - a_i["mean"], features @ mat)
            mats.append(mat)
    # calls 0-2 share one matrix, 3-5 the next, 6 a third
    assert all(torch.equal(mats[0], m) for m in mats[1:3])
    assert all(torch.equal(mats[3], m) for m in mats[4:6])
    assert not torch.equal(mats[0], mats[3]) and not torch.equal(mats[3], mats[6])


def test_training_calls_do_not_advance_the_schedule_and_get_gradients():
    pol = make(sample_freq=2)
    obs = obs_batch()
    with torch.no_grad():
        pol(obs)
    first = pol.exploration_mat.clone()
    for _ in range(3):  # with autograd: training
        _, ac, a_i = pol(obs)
        loss = pol.pd.llh(ac.detach(), a_i).sum()
        loss.backward()
    assert torch.equal(pol.exploration_mat, first)
    assert pol.log_std.grad is not None and torch.all(torch.isfinite(pol.log_std.grad))
    assert pol.net.mean_layer.weight.grad is not None
    # features detached from the std by default: the trunk's gradient is the mean's alone
    grads = []
    for detach_std in (False, True):
        pol.zero_grad()
        _, ac, a_i = pol(obs)
        log_std = a_i["log_std"].detach() if detach_std else a_i["log_std"]
        pol.pd.llh(ac.detach(), {"mean": a_i["mean"], "log_std": log_std}).sum().backward()
        grads.append(pol.net.fc1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    with torch.no_grad():
        pol(obs)
    assert torch.equal(pol.exploration_mat, first)  # second acting call of the window
    with torch.no_grad():
        pol(obs)
    assert not torch.equal(pol.exploration_mat, first)


def test_learn_features_lets_the_std_gradient_reach_the_trunk():
    pol = make(learn_features=True)
    obs = obs_batch()
    with torch.inference_mode():  # the matrix is drawn in inference mode, as by a sampler
        pol(obs)
    _, _, a_i = pol(obs)
    a_i["log_std"].sum().backward()
    assert pol.net.fc1.weight.grad is not None and pol.net.fc1.weight.grad.abs().sum() > 0
    _, ac, _ = pol(obs)
    ac.sum().backward()  # the matrix, drawn in inference mode, can be saved for backward


def test_deterministic_is_the_mean_and_does_not_draw():
    pol = make()
    obs = obs_batch()
    with torch.no_grad():
        _, ac, a_i = pol.deterministic_ac_real(obs)
    assert torch.equal(ac, a_i["mean"]) and pol.exploration_mat is None


@pytest.mark.parametrize("bad", [0, -2])
def test_sample_freq_must_be_positive_or_minus_one(bad):
    with pytest.raises(ValueError, match=rf"sample_freq: .*got {bad}"):
        make(sample_freq=bad)


def test_minus_one_keeps_the_matrix_until_reset_noise():
    pol = make(sample_freq=-1)
    obs = obs_batch()
    with torch.no_grad():
        for _ in range(10):
            pol(obs)
        first = pol.exploration_mat.clone()
        pol(obs)
        assert torch.equal(pol.exploration_mat, first)
        assert not torch.equal(pol.reset_noise(), first)


def test_net_must_return_mean_and_features():
    class MeanOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 3)

        def forward(self, obs):
            return (self.fc(obs),)

    with pytest.raises(ValueError, match=r"net: GaussianSDEPol .*features"):
        GaussianSDEPol(OB, AC, MeanOnly())


def test_sampler_episodes_reproducible_and_noise_smooth():
    env_id = "Pendulum-v1"
    env = gym.make(env_id)

    def sample():
        torch.manual_seed(0)
        net = SDEPolNet(env.observation_space, env.action_space, h1=16, h2=16)
        pol = GaussianSDEPol(env.observation_space, env.action_space, net, sample_freq=50)
        with EpiSampler(env, pol, num_envs=2, seed=5) as sampler:
            return sampler.sample(pol, max_epis=2)

    first, second = sample(), sample()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["acs"], b["acs"])
    noise = first[0]["acs"] - first[0]["a_is"]["mean"]
    # one matrix for 50 steps: the noise follows the (slowly moving) state rather than
    # jumping as white noise would; its lag-1 autocorrelation is high
    lag1 = np.corrcoef(noise[:-1, 0], noise[1:, 0])[0, 1]
    assert lag1 > 0.8, lag1
    assert first[0]["a_is"]["log_std"].shape == (200, 1)


def test_state_dict_carries_the_exploration_matrix_and_schedule():
    pol = make(sample_freq=3)
    obs = obs_batch()
    fresh = make(sample_freq=3)
    fresh.load_state_dict(pol.state_dict())  # before any draw
    assert fresh.exploration_mat is None
    with torch.no_grad():
        pol(obs)
        pol(obs)
        fresh.load_state_dict(pol.state_dict())
        torch.manual_seed(9)
        expected = [pol(obs)[1] for _ in range(3)]
        torch.manual_seed(9)
        got = [fresh(obs)[1] for _ in range(3)]
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_per_env_noise_gives_each_row_its_own_matrix():
    # two identical observations: one shared matrix gives them the same noise; per-row
    # matrices give independent noise (correlation ~0 over draws), each row's noise its
    # features through its own matrix, kept for sample_freq acting calls
    obs = obs_batch(n=1).expand(2, 5).contiguous()
    shared = make(sample_freq=1, log_std_init=-0.5)
    with torch.no_grad():
        _, ac, _ = shared(obs)
    # equal up to rounding (a batched kernel may sum the rows in different orders)
    torch.testing.assert_close(ac[0], ac[1], rtol=F32_TOL, atol=F32_TOL)
    pol = make(sample_freq=3, log_std_init=-0.5, per_env_noise=True)
    features = pol.net(obs)[1].detach()
    mats, noises = [], []
    torch.manual_seed(4)
    with torch.no_grad():
        for _ in range(3000):
            _, ac, a_i = pol(obs)
            mat = pol.exploration_mat
            assert mat.shape == (2, 8, 3)
            expected = torch.stack([features[b] @ mat[b] for b in range(2)])
            torch.testing.assert_close(ac - a_i["mean"], expected)
            mats.append(mat.clone())
            noises.append(ac - a_i["mean"])
    assert torch.equal(mats[0], mats[2]) and not torch.equal(mats[2], mats[3])
    assert not torch.equal(mats[0][0], mats[0][1])
    # one draw per window of 3 calls: 1000 independent pairs
    pairs = torch.stack(noises[::3]).double()  # (1000, 2, 3)
    centred = (pairs - pairs.mean(0)) / pairs.std(0)
    corr = (centred[:, 0] * centred[:, 1]).sum(0) / (pairs.shape[0] - 1)
    assert torch.all(corr.abs() <= 5 / math.sqrt(pairs.shape[0])), corr


def test_per_env_noise_redraws_when_the_acting_batch_changes():
    pol = make(sample_freq=5, per_env_noise=True)
    with torch.no_grad():
        pol(obs_batch(n=4))
        pol(obs_batch(n=4))
        four = pol.exploration_mat.clone()
        assert four.shape == (4, 8, 3) and pol._acting_calls == 2
        pol(obs_batch(n=3))  # e.g. a sampler's slot met its quota
    assert pol.exploration_mat.shape == (3, 8, 3) and pol._acting_calls == 1
    # a training call on another batch size samples with matrices of its own and leaves
    # the acting matrices and schedule alone
    three = pol.exploration_mat.clone()
    _, ac, a_i = pol(obs_batch(n=6))
    assert ac.shape == (6, 3) and torch.all(torch.isfinite(ac))
    assert torch.equal(pol.exploration_mat, three) and pol._acting_calls == 1
    # an unbatched observation acts as a batch of one
    with torch.no_grad():
        _, ac, _ = pol(obs_batch(n=1)[0])
    assert ac.shape == (1, 3) and pol.exploration_mat.shape == (1, 8, 3)
    assert pol.reset_noise(7).shape == (7, 8, 3) and pol._acting_calls == 0
    assert pol.reset_noise().shape == (7, 8, 3)
    with pytest.raises(ValueError, match="batch_size: expected a positive int, got 0"):
        pol.reset_noise(0)


def test_per_env_noise_sampler_reproducible_and_state_dict_round_trip():
    env = gym.make("Pendulum-v1")

    def build():
        torch.manual_seed(0)
        net = SDEPolNet(env.observation_space, env.action_space, h1=16, h2=16)
        return GaussianSDEPol(
            env.observation_space, env.action_space, net, sample_freq=8, per_env_noise=True
        )

    def sample(pol):
        with EpiSampler(env, pol, num_envs=3, seed=5) as sampler:
            return sampler.sample(pol, max_epis=3)

    pol = build()
    first, second = sample(pol), sample(build())
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["acs"], b["acs"])
    assert pol.exploration_mat.shape == (3, 16, 1)
    fresh = build()
    fresh.load_state_dict(pol.state_dict())
    assert torch.equal(fresh.exploration_mat, pol.exploration_mat)
    assert fresh._acting_calls == pol._acting_calls


def test_a_policy_pickled_before_per_env_noise_existed_still_acts():
    import pickle

    pol = make()
    del pol.__dict__["per_env_noise"]  # as an instance pickled by an earlier machina
    old = pickle.loads(pickle.dumps(pol))
    with torch.no_grad():
        _, ac, _ = old(obs_batch())
    assert ac.shape == (6, 3) and old.exploration_mat.shape == (8, 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_sde_pol_acts_in_its_dtype_after_a_move_once_it_has_acted(dtype):
    # the exploration matrix is a plain attribute: .double() / .half() after the first draw
    # left it float32 and every later acting call failed on the matmul
    pol = make(sample_freq=-1)
    with torch.no_grad():
        pol(obs_batch())
    drawn = pol.exploration_mat.clone()
    pol.to(dtype)
    with torch.no_grad():
        ac_real, ac, a_i = pol(obs_batch())
    assert ac.dtype == dtype and a_i["log_std"].dtype == dtype
    assert np.all(np.abs(ac_real) <= 1.0)
    # the same draw, cast as the parameters were: the noise window goes on
    assert pol.exploration_mat.dtype == dtype
    assert torch.equal(pol.exploration_mat, drawn.to(dtype))
    assert torch.equal(pol.get_extra_state()["exploration_mat"], drawn.to(dtype))


def test_sde_pol_loads_a_float32_state_into_a_float64_policy():
    src = make(sample_freq=-1)
    with torch.no_grad():
        src(obs_batch())
    dst = make(sample_freq=-1).double()
    dst.load_state_dict(src.state_dict())
    assert dst.exploration_mat.dtype == torch.float64
    assert torch.equal(dst.exploration_mat, src.exploration_mat.double())
    obs = obs_batch()
    with torch.no_grad():
        _, ac, _ = dst(obs)
        mean, features = dst.net(obs.double())
    assert ac.dtype == torch.float64
    # acts with the loaded draw (no redraw): ac = mean + phi(s) @ E
    torch.testing.assert_close(ac, mean + features @ src.exploration_mat.double())
