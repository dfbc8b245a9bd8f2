"""machina.algos.qtopt (with svg's train functions on the same episodes): losses, Pendulum."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis
from offpolicy_parts import (
    BOX_OB,
    PENDULUM_MARGIN,
    DeltaNet,
    _off_policy_loop,
    _pendulum_spaces,
    _random_pendulum_return,
    _traj_from,
)
from torch import nn
from torch.testing import assert_close

from machina.algos import qtopt, svg
from machina.nets import PolNet, QNet, VNet
from machina.pols import ArgmaxQfPol, DeterministicActionNoisePol, TanhGaussianPol
from machina.vfuncs import CEMDeterministicSAVfunc, DeterministicSAVfunc, DeterministicSVfunc


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
