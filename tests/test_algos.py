"""Algorithms and losses: closed-form values, trust regions and clear errors."""

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from machina import loss_functional as lf
from machina.algos import ppo_clip, ppo_kl, trpo, vpg
from machina.nets import PolNet
from machina.pols import DeterministicActionNoisePol, make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.utils import optimizer_step
from machina.vfuncs import make_vf


def sampled(env_id, num_envs, max_steps, **pol_kwargs):
    """A small policy and value function (seed 0) and episodes the policy sampled."""
    torch.manual_seed(0)
    env = gym.make(env_id)
    pol = make_pol(env.observation_space, env.action_space, h_size=16, **pol_kwargs)
    vf = make_vf(env.observation_space, h_size=16)
    with EpiSampler(env, pol, seed=0, num_envs=num_envs) as sampler:
        epis = sampler.sample(pol, max_steps=max_steps)
    return pol, vf, epis


@pytest.fixture(scope="module")
def setup():
    return sampled("CartPole-v1", num_envs=4, max_steps=400)


def estimated_traj(epis, vf, register=True):
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_vs(traj, vf)
    traj = ef.compute_rets(traj, 0.99)
    traj = ef.compute_advs(traj, 0.99, 0.95)
    if register:
        traj.register_epis()
    return traj


def test_clipped_loss_at_the_sampling_policy_is_minus_mean_advantage(setup):
    pol, vf, epis = setup
    batch = dict(estimated_traj(epis, vf).data_map)
    # Unchanged policy: every ratio is 1, so clipping is inactive.
    loss = lf.pg_clip(pol, batch, clip_param=0.2, ent_beta=0.0)
    assert torch.allclose(loss, -batch["advs"].mean(), atol=1e-5)
    kl_loss = lf.pg_kl(pol, batch, kl_beta=5.0)
    assert torch.allclose(kl_loss, -batch["advs"].mean(), atol=1e-5)
    assert float(lf.kl_old_new(pol, batch).detach()) == pytest.approx(0.0, abs=1e-6)


def test_clipped_loss_matches_formula_after_a_change(setup):
    pol, vf, epis = setup
    batch = dict(estimated_traj(epis, vf).data_map)
    batch["pi"] = torch.full_like(batch["pi"], 0.5)  # pretend the sampler acted uniformly
    _, _, a_i = pol(batch["obs"])
    new_p = a_i["pi"].gather(1, batch["acs"].long().reshape(-1, 1)).squeeze(1)
    ratio = new_p / 0.5
    advs = batch["advs"]
    expected = -torch.min(ratio * advs, ratio.clamp(0.9, 1.1) * advs).mean()
    assert torch.allclose(lf.pg_clip(pol, batch, 0.1), expected, atol=1e-5)


def test_value_loss_is_half_mean_squared_error(setup):
    _, vf, epis = setup
    batch = dict(estimated_traj(epis, vf).data_map)
    vs = vf(batch["obs"])[0]
    expected = 0.5 * ((vs - batch["rets"]) ** 2).mean()
    assert torch.allclose(lf.monte_carlo(vf, batch), expected)


def test_trpo_step_stays_in_the_trust_region(setup):
    sampling_pol, vf, epis = setup
    pol = make_pol(sampling_pol.observation_space, sampling_pol.action_space, h_size=16)
    pol.load_state_dict(sampling_pol.state_dict())
    batch = dict(estimated_traj(epis, vf).data_map)
    batch["advs"] = (batch["advs"] - batch["advs"].mean()) / batch["advs"].std()
    loss, kl = trpo.update_pol(pol, batch, max_kl=0.01)
    assert 0 < kl <= 0.015
    assert float(lf.kl_old_new(pol, batch).detach()) == pytest.approx(kl, rel=1e-4)
    # The surrogate E[ratio * A] starts at E[A] = 0 and must improve.
    assert loss < 0
    # a trust region of 0 or less: every step was refused, the policy never moved, silently
    for max_kl in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"trpo.update_pol: max_kl: expected a positive"):
            trpo.update_pol(pol, batch, max_kl=max_kl)


def test_ppo_kl_adapts_beta(setup):
    sampling_pol, vf, epis = setup
    pol = make_pol(sampling_pol.observation_space, sampling_pol.action_space, h_size=16)
    pol.load_state_dict(sampling_pol.state_dict())
    traj = estimated_traj(epis, vf)
    vf = make_vf(sampling_pol.observation_space, h_size=16)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-2)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    # machina 0.x's rule: x1.5 above 1.3 * kl_targ, /1.5 below 0.7 * kl_targ, else kept.
    # A tiny target is always exceeded by a large step: beta grows.
    result = ppo_kl.train(traj, pol, vf, 1.0, 1e-8, optim_pol, optim_vf, 3, 64, log_enable=False)
    assert result["new_kl_beta"] == 1.5 and result["kl_mean"] > 1e-8
    # A huge target is never reached: beta shrinks.
    result = ppo_kl.train(traj, pol, vf, 1.0, 1e3, optim_pol, optim_vf, 1, 64, log_enable=False)
    assert result["new_kl_beta"] == 1.0 / 1.5
    # Within [0.7, 1.3] of the target (the KL just measured, up to float error): kept.
    kl = result["kl_mean"]
    frozen = torch.optim.SGD(pol.parameters(), lr=0.0)  # the step moves nothing: same KL
    frozen_vf = torch.optim.SGD(vf.parameters(), lr=0.0)
    result = ppo_kl.train(traj, pol, vf, 2.0, kl, frozen, frozen_vf, 1, 64, log_enable=False)
    assert result["new_kl_beta"] == 2.0


def test_ppo_kl_clips_the_policy_gradient_only(setup):
    """As in machina 0.x: ``max_grad_norm`` clips the policy's step, not the value
    function's (``ppo_kl.update_vf`` has no clip either); ppo_clip clips both."""
    sampling_pol, vf, epis = setup
    traj = estimated_traj(epis, vf)
    traj.data_map["rets"] = traj.data_map["rets"] * 1e3  # a value gradient far above 1e-3
    for algo, vf_clipped in ((ppo_kl, False), (ppo_clip, True)):
        pol = make_pol(sampling_pol.observation_space, sampling_pol.action_space, h_size=16)
        pol.load_state_dict(sampling_pol.state_dict())
        vf = make_vf(sampling_pol.observation_space, h_size=16)
        optim_pol = torch.optim.SGD(pol.parameters(), lr=1.0)
        optim_vf = torch.optim.SGD(vf.parameters(), lr=1.0)
        if algo is ppo_kl:  # 0.x's positional order
            ppo_kl.train(traj, pol, vf, 1.0, 0.01, optim_pol, optim_vf, 1, traj.num_step, 1e-3)
        else:
            ppo_clip.train(traj, pol, vf, optim_pol, optim_vf, 1, traj.num_step, max_grad_norm=1e-3)
        # One minibatch: the gradients the step took, clipped in place, are left in .grad.
        # A clipped norm is max_norm * total / (total + 1e-6) (torch's clip), computed in
        # float32: within 1e-4 relative of max_norm for any total above 0.01 (the raw
        # norms here are ~0.4 for the policy and ~2e4 for the value function).
        pol_norm = float(torch.cat([p.grad.flatten() for p in pol.parameters()]).norm())
        vf_norm = float(torch.cat([p.grad.flatten() for p in vf.parameters()]).norm())
        assert pol_norm == pytest.approx(1e-3, rel=1e-4)
        if vf_clipped:
            assert vf_norm == pytest.approx(1e-3, rel=1e-4)
        else:
            assert vf_norm > 1.0


def test_missing_keys_name_the_estimator(setup):
    pol, vf, epis = setup
    optim = torch.optim.Adam(pol.parameters())
    traj = Traj()
    traj.add_epis(epis)
    traj.register_epis()
    with pytest.raises(KeyError, match=r"'advs'.*ef\.compute_advs"):
        ppo_clip.train(traj, pol, vf, optim, optim, 1, 32, log_enable=False)
    pending = estimated_traj(epis, vf, register=False)
    with pytest.raises(ValueError, match="register_epis"):
        vpg.train(pending, pol, vf, optim, optim, 1, 32, log_enable=False)
    with pytest.raises(TypeError, match="traj"):
        trpo.train(epis, pol, vf, optim, log_enable=False)


def test_batch_larger_than_traj_trains_on_all_its_steps(setup):
    """A minibatch size above the steps held trains on one batch of all of them per epoch,
    with a warning (machina 0.x yielded no batch: its runs silently trained on nothing)."""
    pol, vf, epis = setup
    runs = []
    for extra in (0, 1):
        p, v = copy.deepcopy(pol), copy.deepcopy(vf)
        traj = estimated_traj(epis, v)
        batch_size = traj.num_step + extra
        optim_pol, optim_vf = torch.optim.Adam(p.parameters()), torch.optim.Adam(v.parameters())
        torch.manual_seed(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = ppo_clip.train(traj, p, v, optim_pol, optim_vf, 2, batch_size, log_enable=False)
        runs.append((out["PolLoss"], [t.clone() for t in p.parameters()], caught))
    (loss, params, quiet), (big_loss, big_params, warned) = runs
    assert len(loss) == len(big_loss) == 2 and loss == big_loss  # one batch per epoch
    assert all(torch.equal(a, b) for a, b in zip(params, big_params))
    assert not quiet and any("is larger than the steps" in str(w.message) for w in warned)


def test_policy_gradient_algorithms_refuse_a_deterministic_policy():
    """A deterministic policy has no log-likelihood: the error names the policy, where the
    losses failed in autograd ('element 0 of tensors does not require grad') or came out
    infinite and blamed the data."""
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    pol = DeterministicActionNoisePol(
        env.observation_space,
        env.action_space,
        PolNet(env.observation_space, env.action_space, 8, 8, deterministic=True),
    )
    vf = make_vf(env.observation_space, h_size=8)
    with EpiSampler(env, pol, seed=0) as sampler:
        traj = estimated_traj(sampler.sample(pol, max_steps=50), vf)
    optim_pol, optim_vf = torch.optim.Adam(pol.parameters()), torch.optim.Adam(vf.parameters())
    calls = {
        "ppo_clip": lambda: ppo_clip.train(traj, pol, vf, optim_pol, optim_vf, 1, 32),
        "ppo_kl": lambda: ppo_kl.train(traj, pol, vf, 1.0, 0.01, optim_pol, optim_vf, 1, 32),
        "trpo": lambda: trpo.train(traj, pol, vf, optim_vf, 1, 32),
        "vpg": lambda: vpg.train(traj, pol, vf, optim_pol, optim_vf, 1, 32),
    }
    before = [p.detach().clone() for p in pol.parameters()]
    for algo, call in calls.items():
        with pytest.raises(ValueError, match=rf"{algo}\.train: pol: needs a stochastic policy"):
            call()
    assert all(torch.equal(a, b) for a, b in zip(before, pol.parameters()))


def test_optimizer_step_clips_gradients():
    lin = torch.nn.Linear(3, 1)
    optim = torch.optim.SGD(lin.parameters(), lr=1.0)
    before = torch.cat([p.detach().clone().reshape(-1) for p in lin.parameters()])
    loss = 1e6 * lin(torch.ones(1, 3)).sum()
    optimizer_step(optim, loss, lin.parameters(), max_grad_norm=0.5)
    after = torch.cat([p.detach().reshape(-1) for p in lin.parameters()])
    assert np.isclose(float((after - before).norm()), 0.5, rtol=1e-4)


class _RandomLengthEnv(gym.Env):
    """Many discrete action dimensions and episodes of random length: padded sequences."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.MultiDiscrete([5] * 20)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self._left = int(self.np_random.integers(2, 30))
        return self.observation_space.sample(), {}

    def step(self, action):
        self._left -= 1
        obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return obs, float(action.sum()), self._left == 0, False, {}


def test_recurrent_ppo_on_padded_multi_categorical_sequences_stays_finite():
    # Padding steps carry all-zero recorded probabilities: log 0 summed over 20 dimensions
    # once overflowed exp(llh - llh_old) to inf, and inf * mask 0 made the loss NaN.
    torch.manual_seed(0)
    env = _RandomLengthEnv()
    pol = make_pol(env.observation_space, env.action_space, rnn=True, h_size=16)
    vf = make_vf(env.observation_space, rnn=True, h_size=16)
    with EpiSampler(env, pol, seed=0) as sampler:
        epis = sampler.sample(pol, max_epis=8)
    assert len({len(e["rews"]) for e in epis}) > 1
    traj = estimated_traj(epis, vf)
    batch = next(traj.iterate_rnn(batch_size=8))
    assert (batch["out_masks"] == 0).any()
    for loss in (lf.pg_clip(pol, batch, 0.2), lf.pg_kl(pol, batch, 1.0), lf.kl_old_new(pol, batch)):
        pol.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in pol.parameters() if p.grad is not None)


class _ForwardOnly(torch.nn.Module):
    """A policy as machina 0.x users wrote them: ``forward`` and ``pd``, no ``pd_params``."""

    def __init__(self, pol):
        super().__init__()
        self.pol, self.pd = pol, pol.pd

    def forward(self, obs):
        return self.pol(obs)


@pytest.mark.parametrize(
    "env_id, kwargs",
    [("CartPole-v1", {}), ("Pendulum-v1", {}), ("Pendulum-v1", {"sde_sample_freq": 4})],
)
def test_policy_losses_read_pd_params_as_the_forward_pass_gives_them(env_id, kwargs):
    # The losses take machina policies' parameters from pd_params (no action drawn); a policy
    # with only forward goes through forward. Both give the same losses and gradients.
    pol, vf, epis = sampled(env_id, num_envs=2, max_steps=300, **kwargs)
    batch = next(estimated_traj(epis, vf).iterate(64))
    wrapped = _ForwardOnly(pol)
    assert not hasattr(wrapped, "pd_params")
    losses = [
        lambda p: lf.pg(p, batch, ent_beta=0.01),
        lambda p: lf.pg_clip(p, batch, 0.2, ent_beta=0.01),
        lambda p: lf.pg_kl(p, batch, 1.0),
        lambda p: lf.kl_old_new(p, batch),
    ]
    for loss_fn in losses:
        results = []
        for p in (pol, wrapped):
            pol.zero_grad()
            loss = loss_fn(p)
            loss.backward()
            results.append((loss.detach(), [q.grad.clone() for q in pol.parameters()]))
        (a, grads_a), (b, grads_b) = results
        # the same float32 operations in the same order: equal to the bit
        assert torch.equal(a, b)
        assert all(torch.equal(g, h) for g, h in zip(grads_a, grads_b))


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda p, b, e: lf.pg(p, b, ent_beta=e),
        lambda p, b, e: lf.pg_clip(p, b, 0.2, ent_beta=e),
        lambda p, b, e: lf.pg_kl(p, b, 1.0, ent_beta=e),
    ],
    ids=["pg", "pg_clip", "pg_kl"],
)
def test_entropy_bonus_is_subtracted_and_left_out_at_zero(loss_fn, monkeypatch):
    pol, vf, epis = sampled("Pendulum-v1", num_envs=2, max_steps=300)
    batch = next(estimated_traj(epis, vf).iterate(64))
    ent = pol.pd.ent(pol.pd_params(batch["obs"])).mean()
    base = loss_fn(pol, batch, 0.0)
    # float32 loss and entropy of magnitude ~1: a few ulps apart at most
    torch.testing.assert_close(loss_fn(pol, batch, 0.1), base - 0.1 * ent)
    # Without a bonus the entropy is never computed: a pd without one still trains.
    monkeypatch.setattr(pol.pd, "ent", None)
    pol.zero_grad()
    loss_fn(pol, batch, 0.0).backward()
    assert all(torch.isfinite(q.grad).all() for q in pol.parameters() if q.grad is not None)


def test_standardize_advs_against_numpy():
    from machina.algos._common import standardize_advs

    rng = np.random.default_rng(0)
    advs = rng.normal(3.0, 5.0, 50)
    out = standardize_advs({"advs": torch.tensor(advs, dtype=torch.float32), "obs": "kept"})
    expected = (advs - advs.mean()) / (advs.std(ddof=1) + 1e-8)
    # float32 mean and std over 50 values: a few ulps of error in each, on values of ~1.
    np.testing.assert_allclose(out["advs"].numpy(), expected, rtol=0, atol=50 * 2**-23)
    assert out["obs"] == "kept"
    one = {"advs": torch.ones(1)}
    assert standardize_advs(one) is one  # no spread: left as it is, as stable-baselines3


def test_standardize_advs_leaves_padding_out():
    from machina.algos._common import standardize_advs

    rng = np.random.default_rng(1)
    advs = rng.normal(-2.0, 4.0, (6, 3))
    masks = np.ones((6, 3))
    masks[4:, 0] = masks[2:, 2] = 0
    advs[masks == 0] = 1e6  # padding: must not reach the statistics
    batch = {"advs": torch.tensor(advs, dtype=torch.float32), "out_masks": torch.tensor(masks)}
    out = standardize_advs(batch)["advs"].numpy()
    real = advs[masks > 0]
    expected = (advs - real.mean()) / (real.std(ddof=1) + 1e-8)
    np.testing.assert_allclose(out[masks > 0], expected[masks > 0], rtol=0, atol=50 * 2**-23)
    assert (out[masks == 0] == 0).all()
    assert batch["advs"][5, 0] == 1e6  # the given batch is unchanged


@pytest.mark.parametrize("algo", ["ppo_clip", "ppo_kl"])
def test_minibatch_norm_advs_makes_the_update_invariant_to_the_advantages_scale(setup, algo):
    pol0, vf0, epis = setup
    est = ef.compute_advs(ef.compute_rets(ef.compute_vs(epis, vf0), 0.99), 0.99, 0.95)

    def update(scale, shift, norm):
        pol, vf = (
            make_pol(pol0.observation_space, pol0.action_space, h_size=16),
            make_vf(pol0.observation_space, h_size=16),
        )
        pol.load_state_dict(pol0.state_dict())
        vf.load_state_dict(vf0.state_dict())
        data = Traj(seed=0)
        data.add_epis([{**e, "advs": scale * e["advs"] + shift} for e in est])
        data.register_epis()
        optims = torch.optim.SGD(pol.parameters(), 0.1), torch.optim.SGD(vf.parameters(), 0.1)
        kw = dict(log_enable=False, minibatch_norm_advs=norm)
        if algo == "ppo_clip":
            ppo_clip.train(data, pol, vf, *optims, 2, 64, max_grad_norm=None, **kw)
        else:
            ppo_kl.train(data, pol, vf, 1.0, 0.01, *optims, 2, 64, **kw)
        return torch.cat([p.detach().reshape(-1) for p in pol.parameters()])

    base = update(1.0, 0.0, True)
    # Standardised per minibatch, 7A + 3 trains as A does (float32 rounding of the
    # standardisation, carried through 2 epochs of SGD steps of lr 0.1).
    assert torch.allclose(update(7.0, 3.0, True), base, rtol=0, atol=1e-4)
    assert not torch.allclose(update(7.0, 3.0, False), update(1.0, 0.0, False), atol=1e-2)


def test_joint_step_is_one_clipped_step_on_the_summed_loss(setup):
    pol0, vf0, epis = setup
    est = ef.compute_advs(ef.compute_rets(ef.compute_vs(epis, vf0), 0.99), 0.99, 0.95)

    def nets():
        pol = make_pol(pol0.observation_space, pol0.action_space, h_size=16)
        vf = make_vf(pol0.observation_space, h_size=16)
        pol.load_state_dict(pol0.state_dict())
        vf.load_state_dict(vf0.state_dict())
        return pol, vf, [*pol.parameters(), *vf.parameters()]

    traj = Traj()
    traj.add_epis(est)
    traj.register_epis()
    pol, vf, params = nets()
    optim = torch.optim.SGD(params, 0.1)
    result = ppo_clip.train(traj, pol, vf, optim, optim, 1, traj.num_step, max_grad_norm=0.05,
                            log_enable=False, joint_step=True)  # fmt: skip
    # The reference: stable-baselines3's form, written out (one batch: the whole Traj).
    ref_pol, ref_vf, ref_params = nets()
    batch = dict(traj.data_map)
    pol_loss = lf.pg_clip(ref_pol, batch, 0.2, 1e-3)
    vf_loss = 0.5 * ((ref_vf(batch["obs"])[0] - batch["rets"]) ** 2).mean()
    (pol_loss + vf_loss).backward()
    # the losses before the step, one per minibatch (here one)
    assert result["PolLoss"] == pytest.approx([float(pol_loss)], rel=1e-5)
    assert result["VfLoss"] == pytest.approx([float(vf_loss)], rel=1e-5)
    torch.nn.utils.clip_grad_norm_(ref_params, 0.05)
    with torch.no_grad():
        for p in ref_params:
            p -= 0.1 * p.grad
    for a, b in zip(params, ref_params):
        # The same float32 arithmetic up to the order of a few reductions.
        assert torch.allclose(a, b, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="optim_pol: joint_step needs one optimiser"):
        ppo_clip.train(traj, pol, vf, torch.optim.SGD(pol.parameters(), 0.1), optim, 1, 64,
                       log_enable=False, joint_step=True)  # fmt: skip


def test_ppo_clip_make_optims_joint_or_one_per_network():
    """joint_step: one Adam over both nets at pol_lr, returned twice; else one per net."""
    pol, vf = torch.nn.Linear(3, 2), torch.nn.Linear(3, 1)
    optim_pol, optim_vf = ppo_clip.make_optims(pol, vf, 3e-4, 1e-3, joint_step=True, eps=1e-5)
    assert optim_pol is optim_vf
    (group,) = optim_pol.param_groups
    assert {id(p) for p in group["params"]} == {
        id(p) for p in [*pol.parameters(), *vf.parameters()]
    }
    assert (group["lr"], group["eps"]) == (3e-4, 1e-5)
    optim_pol, optim_vf = ppo_clip.make_optims(pol, vf, 3e-4, 1e-3)
    assert optim_pol is not optim_vf
    assert [p for g in optim_vf.param_groups for p in g["params"]] == list(vf.parameters())
    assert (optim_pol.param_groups[0]["lr"], optim_vf.param_groups[0]["lr"]) == (3e-4, 1e-3)
    assert optim_vf.param_groups[0]["eps"] == 1e-8
