"""machina.algos.ddpg and td3 (deterministic policy gradient) on Pendulum."""

import copy

import pytest
import torch
from offpolicy_parts import _off_policy_loop, _pendulum_spaces

from machina.algos import ddpg, td3
from machina.nets import PolNet, QNet
from machina.noise import GaussianActionNoise
from machina.pols import DeterministicActionNoisePol
from machina.vfuncs import DeterministicSAVfunc


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
            batch_size=min(128, off_traj.num_step),
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
