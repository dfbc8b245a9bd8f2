"""machina: a PyTorch toolkit for episode-based reinforcement learning."""

import importlib
from types import ModuleType

# Kept equal to setup.py's version (tests/test_compat_original_api.py checks it).
__version__ = "0.3.0"

_SUBPACKAGES = (
    "algos",
    "envs",
    "logger",
    "loss_functional",
    "models",
    "nets",
    "noise",
    "optims",
    "pds",
    "pols",
    "prepro",
    "samplers",
    "traj",
    "utils",
    "vfuncs",
)

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str) -> ModuleType:
    # ``import machina as mc; mc.algos.ppo_clip`` works as in machina 0.x, whose __init__
    # imported every subpackage; here each is imported when first used, so ``import
    # machina.traj`` alone stays light.
    if name in _SUBPACKAGES:
        try:
            return importlib.import_module(f"machina.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"machina.{name}":
                raise
    raise AttributeError(f"module 'machina' has no attribute {name!r}")
