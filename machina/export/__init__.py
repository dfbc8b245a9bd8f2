"""Export a trained policy's action (scaling included) to TorchScript, torch.export or ONNX."""

from machina.export.action_module import ActionModule, noise_shape
from machina.export.export import FORMATS, export_pol, load_exported

__all__ = ["FORMATS", "ActionModule", "export_pol", "load_exported", "noise_shape"]
