"""machina.loss_functional.qtopt: the clipped double-Q target at the CEM argmax."""

import math

import pytest
import torch
from offpolicy_parts import BOX_AC, BOX_OB, ConstQNet, PeakQNet, _tiny_batch
from torch.testing import assert_close

from machina.loss_functional import qtopt as qtopt_lf
from machina.vfuncs import CEMDeterministicSAVfunc, DeterministicSAVfunc


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
    loss = qtopt_lf.clipped_double_bellman(qf, targ_qf1, targ_qf2, batch, gamma, "mse")
    assert_close(loss, 0.5 * torch.mean(expected**2), atol=1e-3, rtol=0)
    # BCE: targets (all >= 1 here) clamp to the label 1, so each step costs -log Q = log 2
    half = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(0.5))
    bce = qtopt_lf.clipped_double_bellman(half, targ_qf1, targ_qf2, batch, gamma, "bce")
    assert_close(bce, torch.tensor(math.log(2.0)))
    # machina 0.x's default loss here (qtopt.train's is "mse")
    assert_close(qtopt_lf.clipped_double_bellman(half, targ_qf1, targ_qf2, batch, gamma), bce)
    with pytest.raises(ValueError, match="loss_type"):
        qtopt_lf.clipped_double_bellman(qf, targ_qf1, targ_qf2, batch, gamma, "huber")
    with pytest.raises(ValueError, match="qf: loss_type='bce'"):
        outside = DeterministicSAVfunc(BOX_OB, BOX_AC, ConstQNet(2.0))
        qtopt_lf.clipped_double_bellman(outside, targ_qf1, targ_qf2, batch, gamma, "bce")
