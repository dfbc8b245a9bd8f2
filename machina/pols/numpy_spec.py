"""The ops of a feed-forward policy net, for a numpy copy of its act step (see
``BasePol.numpy_inference``).

:func:`net_ops` reads a net as a list of ops when every step of its ``forward`` is known
exactly, and returns None otherwise (the sampler then calls the policy itself). Known nets:

- machina's ``PolNet`` (fc1, its activation, fc2, its activation, its stochastic ``PolHead``);
- an ``nn.Sequential`` (nested ones are flattened), optionally led by ``nn.Flatten()``, of
  ``nn.Linear`` and the activations of :data:`ACTIVATIONS`, ending in ``nn.Softmax`` over the
  last axis (a categorical net: ``pi (B, n)``) or in machina's stochastic ``PolHead`` (Gaussian
  ``(mean, log_std)`` or categorical ``pi``).

Modules are matched by exact type (a subclass may override ``forward``), machina's nets by
qualified name.

An op is a tuple:

- ``("linear", W (out, in), b (out,))``: ``h @ W.T + b`` (float32 views of the parameters;
  zeros for a layer without bias);
- ``("act", name, params)``: an elementwise activation, ``name`` a key of
  :data:`ACTIVATIONS`, ``params`` its arguments as a dict (``{"alpha": 1.0}`` for ELU);
- ``("softmax",)``: softmax over the features, the categorical net's last op.

A Gaussian net's ops end with ``("act", "tanh", {})`` (the mean), or with the mean's linear
layer for a ``PolHead(squash_mean=False)``; its ``log_std`` is apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from machina.nets import HIDDEN_ACTIVATIONS

__all__ = ["ACTIVATIONS", "gaussian_log_std", "net_ops", "sde_net_ops"]

Op = tuple[Any, ...]


def _no_params(module: nn.Module) -> dict[str, Any]:
    return {}


#: activation module type -> (op name, its parameters as a dict). Identity, and Dropout in
#: eval mode or of p = 0, are left out of the ops (they change nothing).
ACTIVATIONS: dict[type, tuple[str, Any]] = {
    nn.ReLU: ("relu", _no_params),
    nn.Tanh: ("tanh", _no_params),
    nn.Sigmoid: ("sigmoid", _no_params),
    nn.SiLU: ("silu", _no_params),
    nn.ELU: ("elu", lambda m: {"alpha": float(m.alpha)}),
    nn.LeakyReLU: ("leaky_relu", lambda m: {"negative_slope": float(m.negative_slope)}),
    nn.SELU: ("selu", _no_params),
    nn.GELU: ("gelu", lambda m: {"approximate": str(m.approximate)}),
    nn.Softplus: ("softplus", lambda m: {"beta": float(m.beta), "threshold": float(m.threshold)}),
    nn.Mish: ("mish", _no_params),
}

_POLNET = "machina.nets.mlp.PolNet"
_SDEPOLNET = "machina.nets.mlp.SDEPolNet"
_POLHEAD = "machina.nets._layers.PolHead"


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


class _NotPlain(Exception):
    """A layer the numpy copy cannot stand for (a Linear subclass, a wrapper): torch path."""


def _linear(layer: nn.Module) -> Op:
    # exactly nn.Linear: a subclass (weight norm's included) or a replacement module may
    # compute anything else (an instance-set forward: _numpy_ready refuses the policy)
    if type(layer) is not nn.Linear:
        raise _NotPlain
    weight = layer.weight.detach().numpy()
    if layer.bias is None:
        bias = np.zeros(weight.shape[0], weight.dtype)
    else:
        bias = layer.bias.detach().numpy()
    return ("linear", weight, bias)


def _head_ops(head: nn.Module, kind: str) -> list[Op] | None:
    """The ops of machina's ``PolHead`` for a policy of ``kind``, or None."""
    if _qualname(head) != _POLHEAD or head.deterministic:
        return None
    if kind == "gaussian" and hasattr(head, "mean_layer") and hasattr(head, "log_std_param"):
        mean_ops: list[Op] = [_linear(head.mean_layer)]
        if head.squash_mean:
            mean_ops.append(("act", "tanh", {}))
        return mean_ops
    # Discrete only: a MultiDiscrete head masks its logits (it has a `valid` buffer)
    if kind == "categorical" and not hasattr(head, "valid") and hasattr(head, "output_layer"):
        return [_linear(head.output_layer), ("softmax",)]
    return None


def _hidden_activation(net: nn.Module) -> Op | None:
    """The activation op of a ``PolNet`` or ``SDEPolNet``, from its ``activation`` name
    (torch's default parameters), or None for a name this module does not know."""
    entry = HIDDEN_ACTIVATIONS.get(getattr(net, "activation", "relu"))
    if entry is None or entry[1] not in ACTIVATIONS:
        return None
    module_type = entry[1]
    name, params = ACTIVATIONS[module_type]
    return ("act", name, params(module_type()))


def _flat_modules(net: nn.Sequential) -> list[nn.Module]:
    modules: list[nn.Module] = []
    for module in net:
        if type(module) is nn.Sequential:
            modules.extend(_flat_modules(module))
        else:
            modules.append(module)
    return modules


def _sequential_ops(net: nn.Sequential, kind: str, ob_ndim: int) -> list[Op] | None:
    modules = _flat_modules(net)
    if modules and type(modules[0]) is nn.Flatten:
        flatten = modules.pop(0)
        # obs (B, *ob_shape) -> (B, ob_dim): what the numpy copy's reshape does
        if flatten.start_dim != 1 or flatten.end_dim != -1:
            return None
    elif ob_ndim != 1:
        return None  # nn.Linear on the last axis of (B, *ob_shape) is no MLP of the obs
    if not modules:
        return None
    ops: list[Op] = []
    for i, module in enumerate(modules):
        last = i == len(modules) - 1
        if type(module) is nn.Linear:
            ops.append(_linear(module))
        elif type(module) in ACTIVATIONS:
            name, params = ACTIVATIONS[type(module)]
            ops.append(("act", name, params(module)))
        elif type(module) is nn.Identity or (
            type(module) is nn.Dropout and (module.p == 0.0 or not module.training)
        ):
            continue
        elif last and type(module) is nn.Softmax and kind == "categorical":
            if module.dim not in (None, 1, -1):
                return None
            ops.append(("softmax",))
        elif last:
            head = _head_ops(module, kind)
            if head is None:
                return None
            ops.extend(head)
        else:
            return None
    return ops


def _well_formed(ops: list[Op], kind: str) -> bool:
    """A first linear layer, then the kind's output: softmax, or tanh (or nothing: a linear
    head) for the mean."""
    if not ops or ops[0][0] != "linear":
        return False
    if kind == "categorical":
        return ops[-1] == ("softmax",) and all(op[0] != "softmax" for op in ops[:-1])
    mean_out = ops[-1] == ("act", "tanh", {}) or ops[-1][0] == "linear"
    return mean_out and all(op[0] != "softmax" for op in ops)


def net_ops(net: nn.Module, kind: str, ob_ndim: int) -> list[Op] | None:
    """The ops of ``net``'s forward, or None when it is not a net this module knows exactly.

    Parameters
    ----------
    net : torch.nn.Module
        The policy's feed-forward net, ``net(obs (B, *ob_shape))``.
    kind : str
        ``"gaussian"`` (the net returns ``(mean, log_std)``) or ``"categorical"`` (``pi``).
    ob_ndim : int
        Number of axes of one observation.

    Returns
    -------
    list of tuple or None
        The ops (see the module docstring); no hooks on any module (the caller checks that).
    """
    try:
        if _qualname(net) == _POLNET:
            head = _head_ops(net.head, kind)
            if head is None:
                return None
            act = _hidden_activation(net)
            if act is None:
                return None
            ops = [_linear(net.fc1), act, _linear(net.fc2), act, *head]
        elif type(net) is nn.Sequential:
            ops = _sequential_ops(net, kind, ob_ndim)
        else:
            return None
    except _NotPlain:
        return None
    if ops is None or not _well_formed(ops, kind):
        return None
    return ops


def gaussian_log_std(net: nn.Module) -> Any:
    """The state-independent ``log_std (d,)`` parameter of a net :func:`net_ops` read as
    Gaussian (its ``PolHead`` is the last module), as a float32 array view."""
    head = net.head if _qualname(net) == _POLNET else _flat_modules(net)[-1]
    return head.log_std_param.detach().numpy()


def sde_net_ops(net: nn.Module) -> list[Op] | None:
    """The ops of machina's ``SDEPolNet`` (the net of ``GaussianSDEPol``), or None for any
    other net: fc1, its activation, fc2, its activation (the output is the exploration
    features), and the mean's linear layer last, without tanh."""
    if _qualname(net) != _SDEPOLNET:
        return None
    act = _hidden_activation(net)
    if act is None:
        return None
    try:
        return [_linear(net.fc1), act, _linear(net.fc2), act, _linear(net.mean_layer)]
    except _NotPlain:
        return None
