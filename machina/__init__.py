"""machina: a PyTorch toolkit for episode-based reinforcement learning.

Layers
------
The packages stand on floors. A package imports only from lower floors; packages on one
floor do not import each other. ``tests/test_layers.py`` reads every import (at module level
and inside functions) and fails on an import against this table, on a cycle between
packages, and on a private name imported from another package: a name another package needs
is public and lives on the lowest floor that uses it.

    9  samplers, distributed, export, datasets
    8  algos
    7  logger
    6  checkpoint
    5  traj
    4  loss_functional
    3  pols
    2  models, vfuncs
    1  nets, pds, envs, prepro, optims, noise
    0  utils

- 0 ``utils`` is what every floor shares and imports nothing from machina: checks of
  gymnasium spaces, the observation and hidden-state protocol of policies, value functions
  and models (``RecurrentMixin``), finiteness checks and array conversion, the training steps
  (``optimizer_step``, ``polyak_update``, ``frozen``), data-parallel primitives, timing.
- 1 holds building blocks that know nothing of each other: torch nets, probability
  distributions, environments, normalisers, optimisers, exploration noise.
- 2 and 3: value functions and dynamics models wrap nets; policies wrap nets and
  distributions and may plan with a model (``MPCPol``), so models sit below policies.
- 4 losses are pure functions of (modules, batch); 5 ``traj`` stores episodes and runs the
  estimators, some of which (priorities, GAIL/AIRL/DIAYN rewards) evaluate those losses.
- 6 checkpoints save a run with its ``Traj``; 7 the logger's ``Run`` resumes through them;
  8 the algorithms log through the logger.
- 9 is what nothing in the library imports: the samplers (sampling meets learning only in
  the policy and the episodes it returns, so the learning side never imports the sampling
  side), ``torch.distributed`` set-up, export and the dataset converters.

``machina.utils.measure`` writes through ``machina.logger`` without importing it: the logger
installs its ``log`` as measure's sink when it is imported (``machina.utils.timing.set_sink``).
"""

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
