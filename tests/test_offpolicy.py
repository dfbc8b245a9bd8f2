"""Off-policy pieces: Polyak averaging, Q targets, noise, Q functions, policies, learning."""

import copy
import csv
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis, run_example
from torch import nn
from torch.testing import assert_close

from machina import loss_functional as lf
from machina.algos import ddpg, dqn, qtopt, sac, svg, td3
from machina.loss_functional import qtopt as qtopt_lf
from machina.loss_functional import svg as svg_lf
from machina.nets import PolNet, QNet, VNet
from machina.noise import GaussianActionNoise, OUActionNoise
from machina.pols import (
    ArgmaxQfPol,
    DeterministicActionNoisePol,
    GaussianPol,
    RandomPol,
    TanhGaussianPd,
    TanhGaussianPol,
)
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.utils import polyak_update
from machina.vfuncs import CEMDeterministicSAVfunc, DeterministicSAVfunc, DeterministicSVfunc

BOX_OB = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
BOX_AC = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
DISCRETE_AC = gym.spaces.Discrete(3)


# --------------------------------------------------------------------- Polyak averaging
def test_polyak_update_moves_parameters_by_tau_and_copies_buffers():
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = copy.deepcopy(source)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    source[1].running_mean.fill_(5.0)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, source, 0.1)
    for t, b, s in zip(target.parameters(), before, source.parameters()):
        assert_close(t, 0.9 * b + 0.1 * s)
        assert t.grad is None and t.requires_grad
    assert_close(target[1].running_mean, torch.full((4,), 5.0))
    polyak_update([target], [source], 1.0)
    for t, s in zip(target.parameters(), source.parameters()):
        assert_close(t, s)
    snapshot = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    polyak_update(target, source, 0.0)
    for t, s in zip(target.parameters(), snapshot):
        assert_close(t, s)


def test_polyak_update_errors_name_the_argument():
    with pytest.raises(ValueError, match="tau"):
        polyak_update(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="target"):
        polyak_update(nn.Linear(2, 3), nn.Linear(2, 2), 0.5)
    with pytest.raises(ValueError, match="target"):
        polyak_update([nn.Linear(2, 2)], [nn.Linear(2, 2)] * 2, 0.5)


# ------------------------------------------------------------------------ Q targets
class ConstQNet(nn.Module):
    """Q(s, a) = c everywhere (a parameter, so optimisers and Polyak averaging work)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, obs, acs):
        return self.c.expand(obs.shape[:-1] + (1,))


def _tiny_batch():
    """Three steps: ordinary, truncated by a time limit (dones=1, terms=0), terminated."""
    return dict(
        obs=torch.zeros(3, 3),
        acs=torch.zeros(3, 1),
        next_obs=torch.ones(3, 3),
        rews=torch.tensor([1.0, 2.0, 3.0]),
        terms=torch.tensor([False, False, True]),
        truncs=torch.tensor([False, True, False]),
        dones=torch.tensor([False, True, True]),
    )


def test_bellman_target_bootstraps_through_truncation():
    gamma, c = 0.9, 10.0
    expected = torch.tensor([1.0 + gamma * c, 2.0 + gamma * c, 3.0])
    batch = _tiny_batch()
    next_vs = torch.full((3,), c)
    assert_close(lf.bellman_target(batch["rews"], batch["terms"], next_vs, gamma), expected)

    torch.manual_seed(0)
    qf = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(c))
    det_pol = DeterministicActionNoisePol(
        BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC, deterministic=True)
    )
    assert_close(lf.ddpg_targets(det_pol, qf, batch, gamma), expected)
    assert_close(lf.td3_targets(det_pol, [qf, copy.deepcopy(qf)], batch, gamma), expected)
    # SAC with alpha = 0: the soft value is the Q value
    pol = TanhGaussianPol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC))
    log_alpha = torch.tensor(-math.inf)
    assert_close(lf.sac_targets(pol, [qf, qf], log_alpha, batch, gamma, sampling=3), expected)
    discrete_qf = DeterministicSAVfunc(BOX_OB, DISCRETE_AC, ConstQNet(c))
    assert_close(lf.dqn_targets(discrete_qf, discrete_qf, batch, gamma), expected)


def test_sac_target_subtracts_entropy_term_in_closed_form():
    """Gaussian policy with fixed mean/std: E[-alpha log pi] = alpha * entropy, exactly in mean."""
    torch.manual_seed(0)
    pol = GaussianPol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC))
    qf = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(0.0))
    batch = {k: v[:2] for k, v in _tiny_batch().items()}
    batch["terms"] = torch.tensor([False, False])
    batch["rews"] = torch.zeros(2)
    log_alpha = torch.tensor(math.log(0.5))
    targets = lf.sac_targets(pol, [qf], log_alpha, batch, 1.0, sampling=20000)
    entropy = float(pol.pd.ent(pol.pd_params(batch["next_obs"]))[0].detach())
    assert_close(targets, torch.full((2,), 0.5 * entropy), atol=0.02, rtol=0)


def _traj_from(epis):
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    return traj


def test_train_learns_from_terms_not_dones():
    """One-state chain, reward 1, truncated every step: Q -> 1 / (1 - gamma), not 1."""
    torch.manual_seed(0)
    n, gamma = 64, 0.5
    epis = [
        dict(
            obs=np.zeros((1, 3), np.float32),
            next_obs=np.zeros((1, 3), np.float32),
            acs=np.zeros(1, np.int64),
            rews=np.ones(1, np.float32),
            terms=np.zeros(1, bool),
            truncs=np.ones(1, bool),
            dones=np.ones(1, bool),
        )
        for _ in range(n)
    ]
    ac_space = gym.spaces.Discrete(1)
    qf = DeterministicSAVfunc(BOX_OB, ac_space, ConstQNet(0.0))
    targ_qf = copy.deepcopy(qf)
    optim = torch.optim.SGD(qf.parameters(), lr=0.5)
    dqn.train(_traj_from(epis), qf, targ_qf, optim, 200, 16, 1.0, gamma, log_enable=False)
    assert float(qf.net.c.detach()) == pytest.approx(1.0 / (1.0 - gamma), abs=1e-3)


@pytest.mark.parametrize(
    "missing, hint", [("next_obs", "ef.add_next_obs"), ("terms", "EpiSampler")]
)
def test_train_names_missing_key_and_estimator(rng, missing, hint):
    epis = [
        dict(
            obs=rng.normal(size=(5, 3)).astype(np.float32),
            next_obs=rng.normal(size=(5, 3)).astype(np.float32),
            acs=rng.integers(3, size=5),
            rews=np.ones(5, np.float32),
            terms=np.zeros(5, bool),
            truncs=np.zeros(5, bool),
        )
    ]
    del epis[0][missing]
    qf = DeterministicSAVfunc(BOX_OB, DISCRETE_AC, QNet(BOX_OB, DISCRETE_AC))
    optim = torch.optim.Adam(qf.parameters())
    with pytest.raises(KeyError, match=f"dqn.train: traj has no '{missing}'.*{hint}"):
        dqn.train(_traj_from(epis), qf, copy.deepcopy(qf), optim, 1, 2, 0.1, 0.9)


def test_train_functions_return_their_losses(rng):
    """Every off-policy train runs on random episodes (terms and truncs mixed)."""
    torch.manual_seed(0)
    traj = _traj_from(make_random_epis(rng, 10))
    ac_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    qfs = [DeterministicSAVfunc(BOX_OB, ac_space, QNet(BOX_OB, ac_space, 8, 8)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    one_optim = torch.optim.Adam([p for qf in qfs for p in qf.parameters()])
    pol = TanhGaussianPol(BOX_OB, ac_space, PolNet(BOX_OB, ac_space, 8, 8))
    log_alpha = torch.zeros((), requires_grad=True)
    result = sac.train(
        traj,
        pol,
        qfs,
        targ_qfs,
        log_alpha,
        torch.optim.Adam(pol.parameters()),
        one_optim,
        torch.optim.Adam([log_alpha]),
        3,
        8,
        0.1,
        0.9,
        sampling=2,
        log_enable=False,
    )
    assert {len(result[k]) for k in ("PolLoss", "QfLoss", "AlphaLoss")} == {3}
    assert result["Alpha"] != 1.0  # the temperature moved
    result = sac.train(
        traj,
        pol,
        qfs,
        targ_qfs,
        log_alpha,
        torch.optim.Adam(pol.parameters()),
        one_optim,
        torch.optim.Adam([log_alpha]),
        2,
        8,
        0.1,
        0.9,
        sampling=2,
        reparam=False,
        log_enable=False,
    )
    assert np.all(np.isfinite(result["PolLoss"]))
    det = DeterministicActionNoisePol(
        BOX_OB, ac_space, PolNet(BOX_OB, ac_space, 8, 8, deterministic=True)
    )
    optim_det = torch.optim.Adam(det.parameters())
    result = td3.train(
        traj,
        det,
        qfs,
        copy.deepcopy(det),
        targ_qfs,
        optim_det,
        one_optim,
        5,
        8,
        0.1,
        0.9,
        log_enable=False,
    )
    assert len(result["QfLoss"]) == 5 and len(result["PolLoss"]) == 2  # delay 2
    result = ddpg.train(
        traj,
        det,
        qfs[0],
        copy.deepcopy(det),
        targ_qfs[0],
        optim_det,
        torch.optim.Adam(qfs[0].parameters()),
        3,
        8,
        0.1,
        0.9,
        log_enable=False,
    )
    assert len(result["QfLoss"]) == len(result["PolLoss"]) == 3
    with pytest.raises(ValueError, match="sac.train: pol"):
        sac.train(
            traj,
            det,
            qfs,
            targ_qfs,
            log_alpha,
            optim_det,
            one_optim,
            torch.optim.Adam([log_alpha]),
            1,
            8,
            0.1,
            0.9,
        )
    with pytest.raises(ValueError, match="batch_size"):
        ddpg.train(
            traj,
            det,
            qfs[0],
            copy.deepcopy(det),
            targ_qfs[0],
            optim_det,
            one_optim,
            1,
            traj.num_step + 1,
            0.1,
            0.9,
        )


# --------------------------------------------------------------------------- noise
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


# ------------------------------------------------------------------- Q functions
def test_sa_vfunc_shapes_and_errors():
    torch.manual_seed(0)
    qf = DeterministicSAVfunc(BOX_OB, BOX_AC, QNet(BOX_OB, BOX_AC))
    qs, info = qf(np.zeros((5, 3), np.float32), np.zeros((5, 1), np.float32))
    assert qs.shape == (5,) and info["hs"] is None
    assert qf(torch.zeros(4, 5, 3), torch.zeros(4, 5, 1))[0].shape == (4, 5)
    with pytest.raises(ValueError, match="acs"):
        qf(torch.zeros(5, 3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="acs"):
        qf(torch.zeros(5, 3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="net"):
        DeterministicSAVfunc(BOX_OB, BOX_AC, QNet(BOX_OB, gym.spaces.Box(-1, 1, (2,))))
    with pytest.raises(ValueError, match="action_space"):
        qf.max(torch.zeros(5, 3))


def test_discrete_max_enumerates_every_action():
    torch.manual_seed(0)
    qf = DeterministicSAVfunc(BOX_OB, DISCRETE_AC, QNet(BOX_OB, DISCRETE_AC))
    obs = torch.randn(7, 3)
    each = torch.stack([qf(obs, torch.full((7,), a))[0] for a in range(3)], dim=-1)
    assert_close(qf.all_qs(obs), each)
    max_qs, max_acs = qf.max(obs)
    assert_close(max_qs, each.max(dim=-1).values)
    assert torch.equal(max_acs, each.argmax(dim=-1))


class PeakQNet(nn.Module):
    """Q(s, a) = -sum (a - s[:, :d])^2: the argmax is the observation's first dims."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, obs, acs):
        d = acs.shape[-1]
        return -((acs - obs[..., :d]) ** 2).sum(dim=-1, keepdim=True) + self.dummy


@pytest.mark.parametrize("multivari", [True, False])
def test_cem_finds_the_argmax(multivari):
    torch.manual_seed(0)
    ac_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    qf = CEMDeterministicSAVfunc(
        BOX_OB,
        ac_space,
        PeakQNet(),
        num_sampling=128,
        num_best_sampling=10,
        num_iter=4,
        multivari=multivari,
    )
    obs = torch.tensor([[0.3, -0.5, 0.0], [-0.8, 0.9, 0.0], [2.0, 0.0, 0.0]])
    max_qs, max_acs = qf.max(obs)
    assert max_acs.shape == (3, 2) and max_qs.shape == (3,)
    # the third peak lies outside the bounds: the best action is on the boundary
    assert_close(max_acs, torch.tensor([[0.3, -0.5], [-0.8, 0.9], [1.0, 0.0]]), atol=0.05, rtol=0)


# --------------------------------------------------------------------------- policies
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


def test_argmax_qf_pol_is_greedy_and_epsilon_random():
    torch.manual_seed(0)
    qf = DeterministicSAVfunc(BOX_OB, DISCRETE_AC, QNet(BOX_OB, DISCRETE_AC))
    pol = ArgmaxQfPol(BOX_OB, DISCRETE_AC, qf, eps=0.0)
    obs = torch.randn(3000, 3)
    greedy = qf.all_qs(obs).argmax(-1)
    _, ac, a_i = pol(obs)
    assert torch.equal(ac, greedy) and a_i["max_q"].shape == (3000,)
    pol.eps = 1.0
    _, ac, _ = pol(obs)
    counts = torch.bincount(ac, minlength=3).float() / 3000
    assert_close(counts, torch.full((3,), 1 / 3), atol=0.03, rtol=0)
    _, det_ac, _ = pol.deterministic_ac_real(obs)
    assert torch.equal(det_ac, greedy)
    with pytest.raises(ValueError, match="eps"):
        pol.eps = 1.5
    with pytest.raises(ValueError, match="qfunc"):
        ArgmaxQfPol(BOX_OB, DISCRETE_AC, QNet(BOX_OB, DISCRETE_AC))
    # continuous: CEM
    cem = CEMDeterministicSAVfunc(BOX_OB, BOX_AC, PeakQNet(), num_iter=3)
    pol = ArgmaxQfPol(BOX_OB, BOX_AC, cem, eps=0.0)  # default eps is 0.x's 0.2
    ac_real, ac, _ = pol(torch.tensor([[0.5, 0.0, 0.0]]))
    assert_close(ac, torch.tensor([[0.5]]), atol=0.05, rtol=0)
    assert_close(torch.as_tensor(ac_real), torch.tensor([[1.0]]), atol=0.1, rtol=0)


# --------------------------------------------------------------------------- learning
def _off_policy_loop(
    env_id,
    pol,
    train,
    max_steps,
    threshold,
    num_envs=1,
    steps_per_iter=200,
    eval_every=2000,
    eval_epis=10,
    before_sample=None,
    first_eval=None,
    seed=0,
):
    """The README's off-policy loop; stops at the first evaluation reaching ``threshold``.

    Returns (deterministic eval return, env steps, mean return of the last sampled episodes).
    """
    env = gym.make(env_id)
    off_traj = Traj(max_steps=100_000)
    next_eval = eval_every if first_eval is None else first_eval
    step, eval_return, train_return = 0, -np.inf, -np.inf
    with EpiSampler(env, pol, num_envs=num_envs, seed=seed) as sampler:
        while step < max_steps:
            if before_sample is not None:
                before_sample(step)
            epis = sampler.sample(pol, max_steps=steps_per_iter)
            traj = _traj_from(epis)
            off_traj.add_traj(traj)
            step += traj.num_step
            train(off_traj, traj.num_step)
            train_return = float(np.mean([epi["rews"].sum() for epi in epis]))
            if step >= next_eval:
                next_eval += eval_every
                eval_epis_ = sampler.sample(pol, max_epis=eval_epis, deterministic=True)
                eval_return = float(np.mean([epi["rews"].sum() for epi in eval_epis_]))
                if eval_return >= threshold:
                    break
    return eval_return, step, train_return


def _pendulum_spaces():
    env = gym.make("Pendulum-v1")
    return env.observation_space, env.action_space


def test_sac_transform_batch_sees_every_batch_and_trains_on_its_result(rng):
    """transform_batch gets each of the epoch batches (copies: the replay keeps its rewards)
    and the step uses what it returns: rewards of 1000 give a far larger Q loss."""
    traj = _traj_from(make_random_epis(rng, 10))
    rews_before = traj.data_map["rews"].clone()
    ac_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    losses, seen = {}, []

    def relabel(batch):
        seen.append(len(batch["rews"]))
        batch["rews"] = torch.full_like(batch["rews"], 1000.0)
        return batch

    for name, transform in (("identity", None), ("relabel", relabel)):
        torch.manual_seed(0)
        qfs = [
            DeterministicSAVfunc(BOX_OB, ac_space, QNet(BOX_OB, ac_space, 8, 8)) for _ in range(2)
        ]
        pol = TanhGaussianPol(BOX_OB, ac_space, PolNet(BOX_OB, ac_space, 8, 8))
        log_alpha = torch.zeros((), requires_grad=True)
        result = sac.train(
            traj,
            pol,
            qfs,
            [copy.deepcopy(qf) for qf in qfs],
            log_alpha,
            torch.optim.Adam(pol.parameters()),
            torch.optim.Adam([p for qf in qfs for p in qf.parameters()]),
            torch.optim.Adam([log_alpha]),
            3,
            8,
            0.1,
            0.9,
            log_enable=False,
            transform_batch=transform,
        )
        losses[name] = result["QfLoss"][0]
    assert seen == [8, 8, 8]
    assert losses["relabel"] > 1e4 * losses["identity"]
    assert torch.equal(traj.data_map["rews"], rews_before)


def test_sac_solves_pendulum_within_15k_steps():
    torch.manual_seed(0)
    ob, ac = _pendulum_spaces()
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac))
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    log_alpha = torch.zeros((), requires_grad=True)
    optims = dict(
        optim_pol=torch.optim.Adam(pol.parameters(), 1e-3),
        optim_qfs=[torch.optim.Adam(qf.parameters(), 1e-3) for qf in qfs],
        optim_alpha=torch.optim.Adam([log_alpha], 1e-3),
    )

    def train(off_traj, epoch):
        result = sac.train(
            off_traj,
            pol,
            qfs,
            targ_qfs,
            log_alpha,
            epoch=epoch,
            batch_size=min(256, off_traj.num_step),
            tau=0.005,
            gamma=0.99,
            log_enable=False,
            **optims,
        )
        assert len(result["QfLoss"]) == epoch and np.isfinite(result["Entropy"])

    eval_return, steps, _ = _off_policy_loop("Pendulum-v1", pol, train, 15_000, -250.0)
    print(f"SAC Pendulum-v1: eval return {eval_return:.1f} after {steps} steps")
    assert eval_return >= -250.0


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_deterministic_pg_improves_pendulum_past_minus_600(algo):
    torch.manual_seed(0)
    ob, ac = _pendulum_spaces()
    net = PolNet(ob, ac, deterministic=True)
    pol = DeterministicActionNoisePol(ob, ac, net, noise=GaussianActionNoise(ac, 0.1))
    targ_pol = copy.deepcopy(pol)
    qfs = [DeterministicSAVfunc(ob, ac, QNet(ob, ac)) for _ in range(2 if algo == "td3" else 1)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_qfs = [torch.optim.Adam(qf.parameters(), 1e-3) for qf in qfs]

    def train(off_traj, epoch):
        common = dict(
            epoch=epoch,
            batch_size=min(256, off_traj.num_step),
            tau=0.005,
            gamma=0.99,
            log_enable=False,
        )
        if algo == "td3":
            td3.train(off_traj, pol, qfs, targ_pol, targ_qfs, optim_pol, optim_qfs, **common)
        else:
            ddpg.train(
                off_traj, pol, qfs[0], targ_pol, targ_qfs[0], optim_pol, optim_qfs[0], **common
            )

    eval_return, steps, _ = _off_policy_loop("Pendulum-v1", pol, train, 10_000, -600.0)
    print(f"{algo} Pendulum-v1: eval return {eval_return:.1f} after {steps} steps")
    assert eval_return >= -600.0


def test_dqn_reaches_150_on_cartpole():
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    ob, ac = env.observation_space, env.action_space
    qf = DeterministicSAVfunc(ob, ac, QNet(ob, ac))
    targ_qf = copy.deepcopy(qf)
    pol = ArgmaxQfPol(ob, ac, qf, eps=1.0)
    optim = torch.optim.Adam(qf.parameters(), 1e-3)

    def anneal(step):
        pol.eps = max(0.04, 1.0 - 0.96 * step / 5000)

    def train(off_traj, epoch):
        dqn.train(
            off_traj,
            qf,
            targ_qf,
            optim,
            epoch,
            batch_size=min(128, off_traj.num_step),
            tau=0.005,  # 0.05 lets the Q values diverge far above 1 / (1 - gamma)
            gamma=0.99,
            log_enable=False,
        )

    eval_return, steps, _ = _off_policy_loop(
        "CartPole-v1",
        pol,
        train,
        30_000,
        150.0,
        num_envs=4,
        before_sample=anneal,
        first_eval=6000,  # once epsilon has reached its floor: judge what was learned
    )
    print(f"DQN CartPole-v1: eval return {eval_return:.1f} after {steps} steps")
    assert eval_return >= 150.0


# ------------------------------------------------------------------- QT-Opt and SVG
def test_qtopt_target_is_the_smaller_target_at_the_cem_argmax():
    """min(Q'_1, Q'_2) at argmax Q'_1, bootstrapped through truncation, not termination."""
    torch.manual_seed(0)
    gamma = 0.9
    batch = _tiny_batch()
    # Q'_1 peaks at a = next_obs[:, :1] = 1 with value 0; the lagged Q'_2 is a constant
    targ_qf1 = CEMDeterministicSAVfunc(BOX_OB, BOX_AC, PeakQNet(), num_sampling=256, num_iter=3)
    for c, next_v in [(-2.0, -2.0), (5.0, 0.0)]:
        targ_qf2 = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(c))
        expected = torch.tensor([1.0 + gamma * next_v, 2.0 + gamma * next_v, 3.0])
        targets = qtopt_lf.clipped_double_targets(targ_qf1, targ_qf2, batch, gamma)
        assert_close(targets, expected, atol=1e-3, rtol=0)
    qf = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(0.0))
    loss = qtopt_lf.clipped_double_bellman(qf, targ_qf1, targ_qf2, batch, gamma)
    assert_close(loss, 0.5 * torch.mean(expected**2), atol=1e-3, rtol=0)
    # BCE: targets (all >= 1 here) clamp to the label 1, so each step costs -log Q = log 2
    half = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(0.5))
    bce = qtopt_lf.clipped_double_bellman(half, targ_qf1, targ_qf2, batch, gamma, "bce")
    assert_close(bce, torch.tensor(math.log(2.0)))
    with pytest.raises(ValueError, match="loss_type"):
        qtopt_lf.clipped_double_bellman(qf, targ_qf1, targ_qf2, batch, gamma, "huber")
    with pytest.raises(ValueError, match="qf: loss_type='bce'"):
        outside = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(2.0))
        qtopt_lf.clipped_double_bellman(outside, targ_qf1, targ_qf2, batch, gamma, "bce")


def test_svg_losses_in_closed_form():
    torch.manual_seed(0)
    gamma, c = 0.9, 10.0
    batch = _tiny_batch()
    pol = TanhGaussianPol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC))
    qf = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(c))
    expected = torch.tensor([1.0 + gamma * c, 2.0 + gamma * c, 3.0])
    assert_close(svg_lf.svg_targets(pol, qf, batch, gamma, sampling=3), expected)
    # the action gradient of Q = -(a - 0.5)^2 points the mean toward 0.5
    peak = DeterministicSAVfunc(BOX_OB, BOX_AC, PeakQNet())
    peak_batch = dict(obs=torch.full((4, 3), 0.5))
    loss = svg_lf.ag(pol, peak, peak_batch, sampling=64)
    loss.backward()
    mean_bias_grad = pol.net.head.mean_layer.bias.grad
    mean = float(pol.pd_params(peak_batch["obs"])["mean"][0, 0].detach())
    assert float(mean_bias_grad[0]) * (mean - 0.5) > 0  # descent moves the mean to 0.5
    # an exact model has zero regression loss; the SVG(1) return of a known model and value
    dm = lambda obs, acs: torch.ones_like(obs)  # noqa: E731
    assert float(svg_lf.delta_regression(dm, batch)) == 0.0
    vf = DeterministicSVfunc(BOX_OB, ConstVNet(c))
    rew_fn = lambda obs, acs: -(acs[..., 0] ** 2)  # noqa: E731
    det_pol = DeterministicActionNoisePol(
        BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC, deterministic=True)
    )
    # a deterministic policy's action is its mean: -E[r + gamma (1 - term) V]
    acs = det_pol.pd_params(batch["obs"])["mean"][:, 0]
    expected = -torch.mean(-(acs**2) + gamma * c * torch.tensor([1.0, 1.0, 0.0]))
    assert_close(svg_lf.svg1_pol(det_pol, vf, dm, rew_fn, batch, gamma), expected)


class ConstVNet(nn.Module):
    """V(s) = c everywhere."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, obs):
        return self.c.expand(obs.shape[:-1] + (1,))


def test_svg1_value_loss_weights_by_the_likelihood_ratio():
    """On-policy data: weights 1 (plain TD); data from a far policy: clipped weights."""
    torch.manual_seed(0)
    gamma = 0.9
    pol = GaussianPol(BOX_OB, BOX_AC, PolNet(BOX_OB, BOX_AC))
    obs = torch.randn(64, 3)
    params = {k: v.detach() for k, v in pol.pd_params(obs).items()}
    batch = dict(
        obs=obs,
        next_obs=torch.randn(64, 3),
        acs=pol.pd.sample(params).detach(),
        rews=torch.randn(64),
        terms=torch.rand(64) < 0.2,
        **params,
    )
    vf = DeterministicSVfunc(BOX_OB, VNet(BOX_OB, 8, 8))
    targ_vf = copy.deepcopy(vf)
    with torch.no_grad():
        for p in targ_vf.parameters():
            p.add_(0.1)
    vs = vf(obs)[0]
    targets = lf.bellman_target(batch["rews"], batch["terms"], targ_vf(batch["next_obs"])[0], gamma)
    td = 0.5 * (vs - targets) ** 2
    assert_close(svg_lf.svg1_vf(vf, targ_vf, pol, batch, gamma), td.mean())
    # recorded log_std far below the policy's: ratios explode and are clipped before normalising
    far = dict(batch, log_std=batch["log_std"] - 3.0)
    new = pol.pd_params(obs)
    ratio = torch.exp(pol.pd.llh(batch["acs"], new) - pol.pd.llh(batch["acs"], far))
    weights = ratio.clamp(max=2.0)
    expected = (weights / weights.mean() * td).mean()
    assert_close(svg_lf.svg1_vf(vf, targ_vf, pol, far, gamma, max_weight=2.0), expected)
    del far["log_std"]
    with pytest.raises(KeyError, match="log_std"):
        svg_lf.svg1_vf(vf, targ_vf, pol, far, gamma)


def test_qtopt_and_svg_train_return_their_losses(rng):
    """qtopt, svg (SVG(0)) and svg.train_svg1 run on random episodes, terms and truncs mixed."""
    torch.manual_seed(0)
    epis = make_random_epis(rng, 10)
    for epi in epis:
        epi["a_is"]["log_std"] = np.full_like(epi["a_is"]["mean"], -0.5)
        epi["acs"] = np.tanh(epi["acs"])
    traj = _traj_from(epis)
    ac = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    qf = CEMDeterministicSAVfunc(BOX_OB, ac, QNet(BOX_OB, ac, 8, 8), num_sampling=16, num_iter=1)
    plain = DeterministicSAVfunc(BOX_OB, ac, QNet(BOX_OB, ac, 8, 8))
    lagged_qf, targ_qf1 = copy.deepcopy(qf), copy.deepcopy(qf)
    before = [p.clone() for p in targ_qf1.parameters()]
    plain_before = [p.clone() for p in plain.parameters()]
    optim_qf = torch.optim.Adam(qf.parameters())
    result = qtopt.train(
        traj, qf, lagged_qf, targ_qf1, plain, optim_qf, 3, 8, 0.5, 0.9, log_enable=False
    )
    assert len(result["QfLoss"]) == 3 and result["grad_step"] == 3
    assert not all(torch.equal(a, b) for a, b in zip(before, targ_qf1.parameters()))
    # targ_qf2 follows lagged_qf, which is not trained: three steps of tau = 0.5 toward it
    for p, p0, lag in zip(plain.parameters(), plain_before, lagged_qf.parameters()):
        assert_close(p, lag + 0.125 * (p0 - lag))
    with pytest.raises(ValueError, match="qtopt.train: targ_qf1"):
        qtopt.train(traj, qf, lagged_qf, plain, plain, optim_qf, 1, 8, log_enable=False)
    with pytest.raises(ValueError, match="qtopt.train: loss_type"):
        qtopt.train(traj, qf, lagged_qf, targ_qf1, plain, optim_qf, 1, 8, loss_type="l1")

    pol = TanhGaussianPol(BOX_OB, ac, PolNet(BOX_OB, ac, 8, 8))
    optim_pol = torch.optim.Adam(pol.parameters())
    optim_plain = torch.optim.Adam(plain.parameters())
    common = dict(epoch=3, batch_size=8, tau=0.1, gamma=0.9, sampling=2, log_enable=False)
    result = svg.train(
        traj, pol, copy.deepcopy(pol), plain, copy.deepcopy(plain), optim_pol, optim_plain, **common
    )
    assert {len(result[k]) for k in ("PolLoss", "QfLoss")} == {3}
    vf = DeterministicSVfunc(BOX_OB, VNet(BOX_OB, 8, 8))
    dm = nn.Linear(5, 3)
    rew_fn = lambda obs, acs: -(acs**2).sum(-1)  # noqa: E731
    result = svg.train_svg1(
        traj,
        pol,
        vf,
        copy.deepcopy(vf),
        DeltaNet(dm),
        rew_fn,
        optim_pol,
        torch.optim.Adam(vf.parameters()),
        optim_dm=torch.optim.Adam(dm.parameters()),
        **common,
    )
    assert {len(result[k]) for k in ("PolLoss", "VfLoss", "DmLoss")} == {3}
    assert np.all(np.isfinite(result["PolLoss"]))
    det = DeterministicActionNoisePol(BOX_OB, ac, PolNet(BOX_OB, ac, 8, 8, deterministic=True))
    with pytest.raises(ValueError, match="svg.train: pol"):
        svg.train(traj, det, det, plain, plain, optim_pol, optim_plain, **common)
    with pytest.raises(ValueError, match="svg.train: sampling"):
        svg.train(traj, pol, pol, plain, plain, optim_pol, optim_plain, **dict(common, sampling=0))
    with pytest.raises(ValueError, match="dm: expected a model"):
        svg.train_svg1(
            traj, pol, vf, vf, DeltaNet(nn.Linear(5, 2)), rew_fn, optim_pol, optim_pol, **common
        )


class DeltaNet(nn.Module):
    """Dynamics model from a linear layer of ``(obs, acs)``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, obs, acs):
        return self.layer(torch.cat([obs, acs], dim=-1))


def _random_pendulum_return(seed=0, epis=10):
    """Mean return of uniformly random actions: the baseline the learners must beat."""
    env = gym.make("Pendulum-v1")
    pol = RandomPol(env.observation_space, env.action_space)
    with EpiSampler(env, pol, seed=seed) as sampler:
        return float(np.mean([e["rews"].sum() for e in sampler.sample(pol, max_epis=epis)]))


#: a learner must beat the random policy (about -1200 on Pendulum-v1) by this much
PENDULUM_MARGIN = 700.0


def test_qtopt_beats_random_on_pendulum_by_700():
    torch.manual_seed(0)
    baseline = _random_pendulum_return()
    ob, ac = _pendulum_spaces()
    cem = dict(num_sampling=32, num_best_sampling=4, num_iter=1, multivari=False)
    qf = CEMDeterministicSAVfunc(ob, ac, QNet(ob, ac, 32, 32), **cem)
    lagged_qf, targ_qf1, targ_qf2 = (copy.deepcopy(qf) for _ in range(3))
    pol = ArgmaxQfPol(ob, ac, qf, eps=0.2)
    optim = torch.optim.Adam(qf.parameters(), 1e-3)
    grad_steps = [0]

    def train(off_traj, epoch):
        result = qtopt.train(
            off_traj,
            qf,
            lagged_qf,
            targ_qf1,
            targ_qf2,
            optim,
            epoch,
            batch_size=min(128, off_traj.num_step),
            tau=0.005,
            gamma=0.99,
            log_enable=False,
        )
        grad_steps[0] += result["grad_step"]
        if grad_steps[0] % 1000 < epoch:  # refresh the lagged copy every 1000 steps
            lagged_qf.load_state_dict(qf.state_dict())

    threshold = baseline + PENDULUM_MARGIN
    # every action is a CEM search: evaluate less often, on fewer episodes, to keep it short
    eval_return, steps, _ = _off_policy_loop(
        "Pendulum-v1", pol, train, 8000, threshold, eval_every=1000, eval_epis=5, first_eval=3000
    )
    print(f"QT-Opt Pendulum-v1: {eval_return:.1f} after {steps} steps (random {baseline:.1f})")
    assert eval_return >= threshold


@pytest.mark.parametrize("variant", [0, 1])
def test_svg_beats_random_on_pendulum_by_700(variant):
    torch.manual_seed(0)
    baseline = _random_pendulum_return()
    ob, ac = _pendulum_spaces()
    pol = TanhGaussianPol(ob, ac, PolNet(ob, ac))
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    common = dict(tau=0.005, gamma=0.99, log_enable=False)
    if variant == 0:
        targ_pol = copy.deepcopy(pol)
        qf = DeterministicSAVfunc(ob, ac, QNet(ob, ac))
        targ_qf = copy.deepcopy(qf)
        optim_qf = torch.optim.Adam(qf.parameters(), 1e-3)

        def train(off_traj, epoch):
            bs = min(256, off_traj.num_step)
            svg.train(
                off_traj, pol, targ_pol, qf, targ_qf, optim_pol, optim_qf, epoch, bs, **common
            )

    else:
        vf = DeterministicSVfunc(ob, VNet(ob))
        targ_vf = copy.deepcopy(vf)
        dm = DeltaNet(nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 3)))
        optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
        optim_dm = torch.optim.Adam(dm.parameters(), 1e-3)

        def pendulum_rew(obs, acs):  # Pendulum-v1's reward; policy actions in [-1, 1]
            th = torch.atan2(obs[..., 1], obs[..., 0])
            return -(th**2 + 0.1 * obs[..., 2] ** 2 + 0.001 * (2.0 * acs[..., 0]) ** 2)

        def train(off_traj, epoch):
            svg.train_svg1(
                off_traj,
                pol,
                vf,
                targ_vf,
                dm,
                pendulum_rew,
                optim_pol,
                optim_vf,
                epoch,
                min(256, off_traj.num_step),
                optim_dm=optim_dm,
                **common,
            )

    threshold = baseline + PENDULUM_MARGIN
    eval_return, steps, _ = _off_policy_loop(
        "Pendulum-v1", pol, train, 8000, threshold, eval_every=1000
    )
    print(f"SVG({variant}) Pendulum-v1: {eval_return:.1f} after {steps} steps ({baseline:.1f})")
    assert eval_return >= threshold


@pytest.mark.parametrize(
    "script, args",
    [
        ("run_qtopt.py", ["--lag", "200"]),
        ("run_svg.py", ["--svg", "0"]),
        ("run_svg.py", ["--svg", "1"]),
    ],
)
def test_qtopt_and_svg_examples_run(tmp_path, script, args):
    budget = ["--max_steps", "400", "--eval_interval", "200", "--eval_epis", "2"]
    run_example(script, "--log", tmp_path, *budget, *args)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and np.isfinite(float(rows[-1]["EvalReturn"]))
    assert (tmp_path / "models" / "pol_last.pt").stat().st_size > 0
