"""Ready-made MLP and LSTM nets for policies and value functions."""

from machina.nets._layers import HIDDEN_ACTIVATIONS, PolHead
from machina.nets.discrim import DiscrimNet, StateDiscrimNet
from machina.nets.lstm import PolNetLSTM, QNetLSTM, VNetLSTM
from machina.nets.mixture import MixturePolNet
from machina.nets.mlp import PolNet, QNet, SDEPolNet, VNet
from machina.nets.model import ModelNet
from machina.nets.skill_discrim import SkillDiscrimNet

__all__ = [
    "HIDDEN_ACTIVATIONS",
    "DiscrimNet",
    "MixturePolNet",
    "ModelNet",
    "PolHead",
    "PolNet",
    "PolNetLSTM",
    "QNet",
    "QNetLSTM",
    "SDEPolNet",
    "SkillDiscrimNet",
    "StateDiscrimNet",
    "VNet",
    "VNetLSTM",
]
