"""Ready-made MLP and LSTM nets for policies and value functions."""

from machina.nets.lstm import PolNetLSTM, VNetLSTM
from machina.nets.mixture import MixturePolNet
from machina.nets.mlp import PolNet, QNet, VNet
from machina.nets.model import ModelNet

__all__ = ["MixturePolNet", "ModelNet", "PolNet", "PolNetLSTM", "QNet", "VNet", "VNetLSTM"]
