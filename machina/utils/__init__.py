"""Helpers every layer may use: a default device for the original's scripts, tensor-dict and
state-dict conversion, timing, the non-finite error, and the low-level data-parallel helpers
(``machina.utils.distributed``); also the original machina's Ray trainer helpers.

This is the bottom floor: it imports only torch, numpy and the standard library (Ray only
when its helpers are called). The names are the original ``machina.utils``'s.
"""

from machina.utils import distributed
from machina.utils.checks import NonFiniteError
from machina.utils.device import cpu_mode, get_device, set_device
from machina.utils.distributed import make_model_distributed, wrap_ddp
from machina.utils.ray_trainers import (
    BaseDistributedRayTrainer,
    TrainManager,
    get_redis,
    init_ray,
    make_redis,
    set_redis,
)
from machina.utils.tensors import detach_tensor_dict, get_cpu_state_dict, state_dict_to_cpu
from machina.utils.timing import measure

__all__ = [
    "distributed",
    "NonFiniteError",
    "measure",
    "set_device",
    "get_device",
    "cpu_mode",
    "detach_tensor_dict",
    "state_dict_to_cpu",
    "get_cpu_state_dict",
    "make_model_distributed",
    "wrap_ddp",
    "init_ray",
    "BaseDistributedRayTrainer",
    "TrainManager",
    "make_redis",
    "set_redis",
    "get_redis",
]
