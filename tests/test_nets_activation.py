"""The hidden ``activation`` of machina's MLP nets (PolNet, SDEPolNet, VNet, QNet) and of
``make_pol`` / ``make_vf``: each net computes what the same layers with the activation's
torch module compute, ReLU stays the default, and bad names are refused by name."""

import pickle

import gymnasium as gym
import pytest
import torch

from machina.nets import HIDDEN_ACTIVATIONS, PolNet, QNet, SDEPolNet, VNet
from machina.pols import make_pol
from machina.vfuncs import make_vf

OB = gym.spaces.Box(-1.0, 1.0, (5,))
BOX = gym.spaces.Box(-1.0, 1.0, (2,))
DISCRETE = gym.spaces.Discrete(3)


def trunk(net, act, x):
    """fc1, act, fc2, act by the activation's module: the reference of the net's trunk."""
    return act(net.fc2(act(net.fc1(x))))


@pytest.mark.parametrize("name", sorted(HIDDEN_ACTIVATIONS))
def test_each_net_applies_its_activation(name):
    act = HIDDEN_ACTIVATIONS[name][1]()
    torch.manual_seed(0)
    obs, acs = 3.0 * torch.randn(7, 5), torch.randn(7, 2)
    with torch.no_grad():
        pol = PolNet(OB, BOX, activation=name)
        mean, log_std = pol(obs)
        torch.testing.assert_close(mean, torch.tanh(pol.head.mean_layer(trunk(pol, act, obs))))
        cat = PolNet(OB, DISCRETE, activation=name)
        ref = torch.softmax(cat.head.output_layer(trunk(cat, act, obs)), -1)
        torch.testing.assert_close(cat(obs), ref)
        sde = SDEPolNet(OB, BOX, activation=name)
        mean, features = sde(obs)
        torch.testing.assert_close(features, trunk(sde, act, obs))
        vnet = VNet(OB, activation=name)
        torch.testing.assert_close(vnet(obs), vnet.output_layer(trunk(vnet, act, obs)))
        qnet = QNet(OB, BOX, activation=name)
        ref = qnet.output_layer(trunk(qnet, act, torch.cat([obs, acs], -1)))
        torch.testing.assert_close(qnet(obs, acs), ref)


def test_relu_is_the_default_and_an_old_pickle_keeps_it():
    """A net pickled before the option existed (no ``activation`` attribute) acts as ReLU;
    the attribute is what the forward reads."""
    torch.manual_seed(0)
    obs, acs = 3.0 * torch.randn(4, 5), torch.randn(4, 2)
    for net in (PolNet(OB, BOX), VNet(OB), SDEPolNet(OB, BOX), QNet(OB, BOX)):
        assert net.activation == "relu"
        args = (obs, acs) if isinstance(net, QNet) else (obs,)
        tanh = pickle.loads(pickle.dumps(net))
        tanh.activation = "tanh"
        old = pickle.loads(pickle.dumps(tanh))
        del old.__dict__["activation"]  # as unpickled from before the option
        assert old.activation == "relu"
        with torch.no_grad():
            torch.testing.assert_close(old(*args), net(*args), rtol=0.0, atol=0.0)
            assert not torch.equal(tanh(*args)[0], net(*args)[0])


@pytest.mark.parametrize("bad", ["Tanh", "softmax", 3, None])
def test_unknown_activation_is_refused_by_name(bad):
    for make in (
        lambda: PolNet(OB, BOX, activation=bad),
        lambda: SDEPolNet(OB, BOX, activation=bad),
        lambda: VNet(OB, activation=bad),
        lambda: QNet(OB, BOX, activation=bad),
    ):
        with pytest.raises(ValueError, match=r"activation must be one of .*given"):
            make()


def test_the_activation_table_is_read_only():
    """The fast path rebuilds each activation from its module class: no entry may change."""
    with pytest.raises(TypeError):
        HIDDEN_ACTIVATIONS["leaky_relu"] = (torch.relu, torch.nn.LeakyReLU)  # type: ignore[index]


def test_factories_pass_the_activation_and_refuse_it_for_lstm():
    assert make_pol(OB, BOX, activation="tanh").net.activation == "tanh"
    assert make_pol(OB, BOX, sde_sample_freq=4, activation="elu").net.activation == "elu"
    assert make_vf(OB, activation="silu").net.activation == "silu"
    with pytest.raises(ValueError, match="activation: .*rnn=True"):
        make_pol(OB, BOX, rnn=True, activation="tanh")
    with pytest.raises(ValueError, match="activation: .*rnn=True"):
        make_vf(OB, rnn=True, activation="tanh")
