"""machina.vfuncs' state-action value functions: shapes, errors, the discrete max, CEM."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from offpolicy_parts import BOX_AC, BOX_OB, DISCRETE_AC, PeakQNet
from torch.testing import assert_close

from machina.nets import QNet
from machina.vfuncs import CEMDeterministicSAVfunc, DeterministicSAVfunc


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


def test_discrete_actions_out_of_range_or_fractional_are_named():
    # torch's one-hot failed naming no argument (out of range) or truncated (fractions)
    qf = DeterministicSAVfunc(BOX_OB, DISCRETE_AC, QNet(BOX_OB, DISCRETE_AC))
    multi = gym.spaces.MultiDiscrete([2, 4])
    qm = DeterministicSAVfunc(BOX_OB, multi, QNet(BOX_OB, multi))
    obs = torch.zeros(4, 3)
    for q, bad, match in [
        (qf, [1, 2, 3, 3], r"in \[0, n\) with n=3 .*given values from 1 to 3"),
        (qf, [0, 1, -1, 2], "from -1 to 2"),
        (qf, [0.9, 1.0, 2.0, 0.0], "with fractions"),
        (qm, [[1, 3], [2, 0], [0, 0], [1, 1]], r"n=\[2 4\].*from 0 to 3"),
    ]:
        with pytest.raises(ValueError, match="acs: DeterministicSAVfunc expects whole action"):
            q(obs, torch.tensor(bad))
        with pytest.raises(ValueError, match=match):
            q(obs, torch.tensor(bad))
    assert qf(obs, torch.tensor([0.0, 1.0, 2.0, 2.0]))[0].shape == (4,)  # whole floats pass
    assert qm(obs, torch.tensor([[1, 3], [0, 0], [1, 2], [0, 1]]))[0].shape == (4,)


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


def test_float64_q_functions_evaluate_and_search():
    # actions were cast to float32 (and CEM's noise drawn float32): a .double() Q function
    # failed at every call
    discrete = DeterministicSAVfunc(BOX_OB, DISCRETE_AC, QNet(BOX_OB, DISCRETE_AC)).double()
    box = DeterministicSAVfunc(BOX_OB, BOX_AC, QNet(BOX_OB, BOX_AC)).double()
    obs = torch.zeros(4, 3)
    assert discrete(obs, torch.tensor([0, 1, 2, 0]))[0].dtype == torch.float64
    assert discrete.max(obs)[0].dtype == torch.float64
    assert box(obs, torch.zeros(4, 1))[0].dtype == torch.float64
    for multivari in (True, False):
        cem = CEMDeterministicSAVfunc(BOX_OB, BOX_AC, QNet(BOX_OB, BOX_AC), multivari=multivari)
        max_qs, max_acs = cem.double().max(obs)
        assert max_qs.dtype == max_acs.dtype == torch.float64


def test_cem_searches_a_wide_action_range_in_many_dimensions():
    """Bounds +-100 in 6 dims (as many as the elite): the elite's covariance, of rank < d,
    lost its diagonal floor to float32 rounding and Cholesky failed on most seeds."""
    ob = gym.spaces.Box(-1, 1, (3,), np.float32)
    ac = gym.spaces.Box(-100, 100, (6,), np.float32)
    for seed in range(5):
        torch.manual_seed(seed)
        qf = CEMDeterministicSAVfunc(ob, ac, QNet(ob, ac), normalize_ac=False)
        best_qs, best_acs = qf.max(torch.zeros(4, 3))
        assert best_acs.shape == (4, 6) and torch.isfinite(best_qs).all()
        assert (best_acs.abs() <= 100).all()
