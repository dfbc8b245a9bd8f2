"""machina.algos.svg: SVG(0) and SVG(1) beat random actions on Pendulum."""

import copy

import pytest
import torch
from offpolicy_parts import (
    PENDULUM_MARGIN,
    DeltaNet,
    _off_policy_loop,
    _pendulum_spaces,
    _random_pendulum_return,
)
from torch import nn

from machina.algos import svg
from machina.nets import PolNet, QNet, VNet
from machina.pols import TanhGaussianPol
from machina.vfuncs import DeterministicSAVfunc, DeterministicSVfunc


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
