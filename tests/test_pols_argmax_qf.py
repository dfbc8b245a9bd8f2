"""machina.pols.argmax_qf_pol: greedy, epsilon-random, and CEM for continuous actions."""

import pytest
import torch
from offpolicy_parts import BOX_AC, BOX_OB, DISCRETE_AC, PeakQNet
from torch.testing import assert_close

from machina.nets import QNet
from machina.pols import ArgmaxQfPol
from machina.vfuncs import CEMDeterministicSAVfunc, DeterministicSAVfunc


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
    # a Q function whose max enumerates Discrete actions: refused at once, not at the first act
    box_qf = DeterministicSAVfunc(BOX_OB, BOX_AC, QNet(BOX_OB, BOX_AC))
    with pytest.raises(ValueError, match=r"qfunc: DeterministicSAVfunc.max searches Discrete"):
        ArgmaxQfPol(BOX_OB, BOX_AC, box_qf)

    class OwnSearch(DeterministicSAVfunc):  # a subclass with its own max for a Box
        def max(self, obs):
            acs = torch.zeros(len(obs), 1)
            return self(obs, acs)[0], acs

    ArgmaxQfPol(BOX_OB, BOX_AC, OwnSearch(BOX_OB, BOX_AC, QNet(BOX_OB, BOX_AC)), eps=0.0)
    # continuous: CEM
    cem = CEMDeterministicSAVfunc(BOX_OB, BOX_AC, PeakQNet(), num_iter=3)
    pol = ArgmaxQfPol(BOX_OB, BOX_AC, cem, eps=0.0)  # default eps is 0.x's 0.2
    ac_real, ac, _ = pol(torch.tensor([[0.5, 0.0, 0.0]]))
    assert_close(ac, torch.tensor([[0.5]]), atol=0.05, rtol=0)
    assert_close(torch.as_tensor(ac_real), torch.tensor([[1.0]]), atol=0.1, rtol=0)
