"""machina.loss_functional.q (and the SAC target): Bellman targets bootstrap through
truncation, and SAC's soft target subtracts the entropy term."""

import copy
import math

import torch
from offpolicy_parts import BOX_AC, BOX_OB, DISCRETE_AC, ConstQNet, _tiny_batch
from torch.testing import assert_close

from machina import loss_functional as lf
from machina.nets import PolNet
from machina.pols import DeterministicActionNoisePol, GaussianPol, TanhGaussianPol
from machina.vfuncs import DeterministicSAVfunc


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
