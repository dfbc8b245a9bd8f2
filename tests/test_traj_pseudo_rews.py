"""The pseudo-reward estimators refuse recurrent modules with an error naming the function
and the argument (machina.utils.recurrent.check_feed_forward)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_random_epis

from machina.nets import PolNet
from machina.nets.discrim import StateDiscrimNet
from machina.nets.lstm import VNetLSTM
from machina.pols import GaussianPol
from machina.traj.epi_functional import compute_airl_pseudo_rews, compute_pseudo_rews
from machina.vfuncs import DeterministicSVfunc

OB = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
AC = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_pseudo_rews_refuse_recurrent_modules(rng):
    torch.manual_seed(0)
    epis = make_random_epis(rng, 2)
    recurrent = DeterministicSVfunc(OB, VNetLSTM(OB, 8, 8), rnn=True)
    with pytest.raises(
        ValueError, match=r"compute_pseudo_rews: rew_giver: recurrent .*feed-forward"
    ):
        compute_pseudo_rews(epis, recurrent, state_only=True)
    pol = GaussianPol(OB, AC, PolNet(OB, AC, 8, 8))
    feed_forward = DeterministicSVfunc(OB, StateDiscrimNet(OB))
    with pytest.raises(ValueError, match=r"compute_airl_pseudo_rews: shaping_vf: recurrent"):
        compute_airl_pseudo_rews(epis, pol, 0.9, rewf=feed_forward, shaping_vf=recurrent)
