"""State-value function shapes and hidden state; value and Q nets."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.testing import assert_close

from machina.nets import PolNet, QNet, VNet, VNetLSTM
from machina.vfuncs import DeterministicSVfunc

OB_SPACE = gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)


def random_obs(*lead):
    return np.random.default_rng(0).normal(size=(*lead, 3)).astype(np.float32)


def test_feed_forward_shapes_and_numpy_obs():
    torch.manual_seed(0)
    vf = DeterministicSVfunc(OB_SPACE, VNet(OB_SPACE))
    vs, info = vf(random_obs(5).astype(np.float64))
    assert vs.shape == (5,) and vs.dtype == torch.float32
    assert info["mean"] is vs and info["hs"] is None and not vf.rnn
    assert vf(np.zeros(3))[0].shape == (1,)
    vs.sum().backward()
    assert vf.net.output_layer.weight.grad is not None


def test_recurrent_shapes_state_and_reset():
    torch.manual_seed(0)
    vf = DeterministicSVfunc(OB_SPACE, VNetLSTM(OB_SPACE, 8, 6), rnn=True)
    obs = random_obs(4, 2)
    vs, info = vf(obs)
    assert vs.shape == (4, 2)
    assert [h.shape for h in info["hs"]] == [(1, 2, 6), (1, 2, 6)]
    assert_close(vf.hs[0], info["hs"][0].detach())
    continued, _ = vf(obs)  # starts from the stored state
    vf.reset()
    assert vf.hs is None
    restarted, _ = vf(obs)
    assert_close(restarted, vs)
    assert (continued - vs).abs().max() > 0


def test_recurrent_h_masks_reset_the_state():
    torch.manual_seed(0)
    vf = DeterministicSVfunc(OB_SPACE, VNetLSTM(OB_SPACE, 8, 6), rnn=True)
    obs = random_obs(5, 2)
    hs = tuple(torch.randn_like(h) for h in vf.net.init_hs(2))
    h_masks = torch.zeros(5, 2, 1)
    h_masks[2, 1] = 1.0
    vs, _ = vf(obs, hs=hs, h_masks=h_masks)
    fresh, _ = vf(obs[2:, 1:], hs=vf.net.init_hs(1))
    assert_close(vs[2:, 1:], fresh)
    unmasked, _ = vf(obs, hs=hs)
    assert (unmasked[2:, 1:] - fresh).abs().max() > 1e-4


def test_unchecked_recurrent_net_keeps_its_state_as_a_checked_one():
    # a net that cannot take observation_space (machina 0.x's feature nets) is called
    # unchecked; its stored state kept the graph and the first batch size (the next call
    # with another number of rows failed inside the LSTM)
    features = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    with pytest.warns(UserWarning, match="unchecked"):
        vf = DeterministicSVfunc(OB_SPACE, VNetLSTM(features, 8, 6), rnn=True)
    obs = torch.randn(4, 2, 2, requires_grad=True)
    vf(obs)
    assert all(h.grad_fn is None for h in vf.hs)
    assert vf(torch.randn(4, 3, 2))[0].shape == (4, 3)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^net: DeterministicSVfunc needs .*\(\.\.\., 1\)"):
        # two outputs (mean, log_std); one (B, k) output is accepted (multi-output nets, as
        # machina 0.x's DIAYN discriminator, issue 14)
        DeterministicSVfunc(OB_SPACE, PolNet(OB_SPACE, gym.spaces.Box(-1.0, 1.0, (2,))))
    with pytest.raises(ValueError, match=r"^net: DeterministicSVfunc with rnn=True needs"):
        DeterministicSVfunc(OB_SPACE, VNet(OB_SPACE), rnn=True)
    vf = DeterministicSVfunc(OB_SPACE, VNet(OB_SPACE))
    with pytest.raises(ValueError, match=r"^obs: expected finite values"):
        vf(np.full((2, 3), np.nan))


@pytest.mark.parametrize(
    "action_space",
    [
        gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32),
        gym.spaces.Discrete(4),
        gym.spaces.MultiDiscrete([2, 3]),
    ],
)
def test_qnet_shapes(action_space):
    torch.manual_seed(0)
    qf = QNet(OB_SPACE, action_space)
    acs = torch.as_tensor(np.stack([action_space.sample() for _ in range(6)]))
    assert qf(torch.as_tensor(random_obs(6)), acs).shape == (6, 1)
    assert VNet(OB_SPACE)(torch.zeros(6, 3)).shape == (6, 1)
