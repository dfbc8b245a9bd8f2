"""Ready-made MLP and LSTM nets for policies and value functions."""

from machina.nets.lstm import PolNetLSTM, VNetLSTM
from machina.nets.mlp import PolNet, QNet, VNet

__all__ = ["PolNet", "PolNetLSTM", "QNet", "VNet", "VNetLSTM"]
