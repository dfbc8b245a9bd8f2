"""Helpers every layer may use: a default device for machina 0.x's scripts, tensor-dict and
state-dict conversion, tensors to numpy, timing, the non-finite error and finiteness checks,
writing a file atomically (``files``), the optimiser step, Polyak averaging and ``frozen``
(``training``), checks of gymnasium spaces (``spaces``), the observation / hidden-state
protocol that policies, value functions and models share (``recurrent``), and the low-level
data-parallel helpers (``machina.utils.distributed``); also machina 0.x's Ray trainer helpers.

This is the bottom floor (see ``machina``'s docstring for the order): it imports nothing from
the rest of machina, only torch, numpy, gymnasium and the standard library (Ray only when its
helpers are called). machina 0.x's ``machina.utils``'s names are all here.
"""

from machina.utils import distributed
from machina.utils.aliases import keyword_aliases
from machina.utils.checks import NonFiniteError, all_finite, all_finite_array, all_finite_tensor
from machina.utils.device import cpu_mode, get_device, set_device
from machina.utils.distributed import make_model_distributed, wrap_ddp
from machina.utils.files import write_atomic
from machina.utils.ray_trainers import (
    BaseDistributedRayTrainer,
    TrainManager,
    get_redis,
    import_ray,
    init_ray,
    make_redis,
    set_redis,
)
from machina.utils.recurrent import HiddenState, RecurrentMixin, detach_hs
from machina.utils.spaces import check_flat_space, check_space
from machina.utils.tensors import (
    detach_tensor_dict,
    get_cpu_state_dict,
    state_dict_to_cpu,
    to_numpy,
)
from machina.utils.timing import measure
from machina.utils.training import frozen, optimizer_step, optimizer_steps, polyak_update

__all__ = [
    "distributed",
    "NonFiniteError",
    "all_finite",
    "all_finite_array",
    "all_finite_tensor",
    "measure",
    "write_atomic",
    "set_device",
    "get_device",
    "cpu_mode",
    "detach_tensor_dict",
    "state_dict_to_cpu",
    "get_cpu_state_dict",
    "to_numpy",
    "check_space",
    "check_flat_space",
    "HiddenState",
    "RecurrentMixin",
    "detach_hs",
    "optimizer_step",
    "optimizer_steps",
    "polyak_update",
    "frozen",
    "keyword_aliases",
    "make_model_distributed",
    "wrap_ddp",
    "import_ray",
    "init_ray",
    "BaseDistributedRayTrainer",
    "TrainManager",
    "make_redis",
    "set_redis",
    "get_redis",
]
