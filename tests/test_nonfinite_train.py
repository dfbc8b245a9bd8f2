"""A non-finite loss or gradient stops a train function before the optimiser steps: the
error names the loss and the batch keys, and the parameters and optimiser state are
bit-identical to what they were before the call."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.algos import ppo_clip, sac, td3, trpo, vpg
from machina.nets import PolNet, QNet
from machina.pols import DeterministicActionNoisePol, TanhGaussianPol, make_pol
from machina.samplers import EpiSampler
from machina.traj import Traj
from machina.traj import epi_functional as ef
from machina.utils import NonFiniteError, optimizer_step
from machina.vfuncs import DeterministicSAVfunc, make_vf

OB = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
AC = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def snapshot(*objs):
    """Deep copies of the state dicts of modules and optimisers (tensors included)."""
    return [copy.deepcopy(o.state_dict()) for o in objs]


def assert_bit_identical(before, after):
    assert len(before) == len(after)
    for b, a in zip(before, after):
        _assert_same(b, a)


def _assert_same(b, a):
    if isinstance(b, torch.Tensor):
        assert torch.equal(b, a)
    elif isinstance(b, dict):
        assert b.keys() == a.keys()
        for k in b:
            _assert_same(b[k], a[k])
    elif isinstance(b, list | tuple):
        assert len(b) == len(a)
        for x, y in zip(b, a):
            _assert_same(x, y)
    else:
        assert b == a


@pytest.fixture(scope="module")
def cartpole_epis():
    env = gym.make("CartPole-v1")
    pol = make_pol(env.observation_space, env.action_space, h_size=16)
    with EpiSampler(env, pol, seed=0, num_envs=4) as sampler:
        return env, sampler.sample(pol, max_steps=300)


def on_policy_traj(epis, vf, nan_rews=False):
    """The estimators of a PPO script; with ``nan_rews`` every 10th reward is NaN (the
    reliability issue's injection: after centerize_advs every advantage is NaN)."""
    if nan_rews:
        epis = [dict(epi, rews=epi["rews"].astype(np.float32).copy()) for epi in epis]
        for epi in epis:
            epi["rews"][::10] = np.nan
    traj = Traj()
    traj.add_epis(epis)
    traj = ef.compute_vs(traj, vf)
    traj = ef.compute_rets(traj, 0.99)
    traj = ef.compute_advs(traj, 0.99, 0.95)
    traj = ef.centerize_advs(traj)
    traj = ef.compute_h_masks(traj)
    traj.register_epis()
    return traj


@pytest.mark.parametrize("algo, rnn", [(ppo_clip, False), (ppo_clip, True), (vpg, False)])
def test_on_policy_nan_rewards_leave_model_and_adam_unchanged(cartpole_epis, algo, rnn):
    env, epis = cartpole_epis
    torch.manual_seed(0)
    pol = make_pol(env.observation_space, env.action_space, rnn=rnn, h_size=8)
    vf = make_vf(env.observation_space, rnn=rnn, h_size=8)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    batch_size = 4 if rnn else 64
    # A clean call first, so Adam has moment estimates that a NaN step would corrupt.
    algo.train(
        on_policy_traj(epis, vf), pol, vf, optim_pol, optim_vf, 1, batch_size, log_enable=False
    )
    bad = on_policy_traj(epis, vf, nan_rews=True)
    before = snapshot(pol, vf, optim_pol, optim_vf)
    with pytest.raises(NonFiniteError) as info:
        algo.train(bad, pol, vf, optim_pol, optim_vf, 1, batch_size, log_enable=False)
    msg = str(info.value)
    assert f"{algo.__name__.rsplit('.', 1)[-1]}.train: pol_loss" in msg
    assert "'advs'" in msg and "'rets'" in msg and "'obs'" in msg  # the batch keys
    assert "non-finite values in:" in msg and "advs" in msg.split("non-finite values in:")[1]
    assert_bit_identical(before, snapshot(pol, vf, optim_pol, optim_vf))


def off_policy_traj(rng, nan_fraction=0.0):
    traj = Traj()
    epis = make_random_epis(rng, 12)
    traj.add_epis(epis)
    traj.register_epis()
    if nan_fraction:
        # Written into the stored column: NaN rewards that reached a replay buffer.
        rews = traj.writable_column("rews")
        rews[torch.rand(rews.shape, generator=torch.Generator().manual_seed(1)) < nan_fraction] = (
            float("nan")
        )
    return traj


def test_sac_nan_rewards_leave_every_module_and_optimiser_unchanged(rng):
    torch.manual_seed(0)
    qfs = [DeterministicSAVfunc(OB, AC, QNet(OB, AC, 8, 8)) for _ in range(2)]
    targ_qfs = [copy.deepcopy(qf) for qf in qfs]
    pol = TanhGaussianPol(OB, AC, PolNet(OB, AC, 8, 8))
    log_alpha = torch.zeros((), requires_grad=True)
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_qfs = [torch.optim.Adam(qf.parameters(), 1e-3) for qf in qfs]
    optim_alpha = torch.optim.Adam([log_alpha], 1e-3)

    def train(traj):
        sac.train(traj, pol, qfs, targ_qfs, log_alpha, optim_pol, optim_qfs, optim_alpha, 2, 16,
                  0.1, 0.9, log_enable=False)  # fmt: skip

    train(off_policy_traj(rng))
    bad = off_policy_traj(rng, nan_fraction=0.5)
    modules = [pol, *qfs, *targ_qfs, optim_pol, *optim_qfs, optim_alpha]
    before, alpha_before = snapshot(*modules), log_alpha.detach().clone()
    with pytest.raises(NonFiniteError, match=r"sac\.train: qf_loss is nan") as info:
        train(bad)
    assert "'rews'" in str(info.value) and "'next_obs'" in str(info.value)
    assert_bit_identical(before, snapshot(*modules))
    assert torch.equal(log_alpha, alpha_before)


def test_td3_infinite_rewards_in_replay_stop_before_the_step(rng):
    torch.manual_seed(0)
    qfs = [DeterministicSAVfunc(OB, AC, QNet(OB, AC, 8, 8)) for _ in range(2)]
    pol = DeterministicActionNoisePol(OB, AC, PolNet(OB, AC, 8, 8, deterministic=True))
    targ_pol, targ_qfs = copy.deepcopy(pol), [copy.deepcopy(qf) for qf in qfs]
    optim_pol = torch.optim.Adam(pol.parameters(), 1e-3)
    optim_qfs = torch.optim.Adam([p for qf in qfs for p in qf.parameters()], 1e-3)
    traj = off_policy_traj(rng)
    traj.writable_column("rews")[::3] = float("inf")
    before = snapshot(pol, *qfs, optim_pol, optim_qfs)
    with pytest.raises(NonFiniteError, match=r"td3\.train: qf_loss") as info:
        td3.train(traj=traj, pol=pol, qfs=qfs, targ_pol=targ_pol, targ_qfs=targ_qfs,
                  optim_pol=optim_pol, optim_qfs=optim_qfs, epoch=2, batch_size=16, tau=0.1,
                  gamma=0.9, log_enable=False)  # fmt: skip
    assert "non-finite values in: ['rews']" in str(info.value)
    assert_bit_identical(before, snapshot(pol, *qfs, optim_pol, optim_qfs))


def test_non_finite_gradient_of_a_finite_loss_raises_before_the_step():
    # sqrt'(0) is infinite: the loss is 0, its gradient is not.
    w = torch.nn.Parameter(torch.tensor([0.0, 1.0]))
    optim = torch.optim.Adam([w], 0.1)
    optimizer_step(optim, (w[1] - 2).square())  # Adam state for w; w[0] stays 0
    before = snapshot(optim) + [w.detach().clone()]
    for clip in (None, 1.0):
        with pytest.raises(NonFiniteError, match=r"the gradient of w_loss is not finite"):
            optimizer_step(optim, w[0].sqrt(), [w], clip, name="w_loss", batch={"x": w})
        assert_bit_identical(before, snapshot(optim) + [w.detach().clone()])


def test_gradient_check_covers_parameters_left_out_of_the_clip():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([a, b], 0.1)
    with pytest.raises(NonFiniteError):
        optimizer_step(optim, a.sum() + b.sqrt().sum(), [a], max_grad_norm=1.0)
    assert float(a.detach()) == 1.0 and float(b.detach()) == 0.0


def test_error_without_a_batch_names_the_loss():
    w = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(NonFiniteError, match=r"^loss is inf; the optimiser did not step"):
        optimizer_step(torch.optim.SGD([w], 0.1), (w * float("inf")).sum())


def test_trpo_nan_rewards_raise_before_any_step(cartpole_epis):
    """TRPO computes its own natural-gradient step (not optimizer_step): a NaN surrogate or
    gradient raises too, before the policy or the value net moves."""
    env, epis = cartpole_epis
    torch.manual_seed(0)
    pol = make_pol(env.observation_space, env.action_space, h_size=8)
    vf = make_vf(env.observation_space, h_size=8)
    optim_vf = torch.optim.Adam(vf.parameters(), 1e-3)
    trpo.train(on_policy_traj(epis, vf), pol, vf, optim_vf, 1, 64, log_enable=False)
    bad = on_policy_traj(epis, vf, nan_rews=True)
    before = snapshot(pol, vf, optim_vf)
    with pytest.raises(NonFiniteError, match="trpo.update_pol: the surrogate is nan"):
        trpo.train(bad, pol, vf, optim_vf, 1, 64, log_enable=False)
    assert_bit_identical(before, snapshot(pol, vf, optim_vf))


def test_the_reused_gradient_check_resets_between_steps():
    """The check's flag is reused from step to step: a refused step, then finite steps,
    then a non-finite one again are each judged on their own gradients."""
    w = torch.nn.Parameter(torch.tensor([0.0, 1.0]))
    optim = torch.optim.SGD([w], 0.1)
    for _ in range(2):
        with pytest.raises(NonFiniteError):
            optimizer_step(optim, w[0].sqrt())  # infinite gradient, finite loss
        assert float(w[0].detach()) == 0.0
        for _ in range(2):
            before = float(w[1].detach())
            optimizer_step(optim, (w[1] - 2).square())
            assert float(w[1].detach()) != before  # finite: the step was taken
