"""Helpers for environments' observations."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import gymnasium
import numpy as np

from machina.utils.spaces import space_shape

__all__ = ["flatten_to_dict"]


def flatten_to_dict(
    flatten_obs: np.ndarray,
    dict_space: gymnasium.spaces.Dict,
    dict_keys: Iterable[str] | None = None,
) -> OrderedDict[str, np.ndarray]:
    """Split flat observations back into the parts of a ``Dict`` observation space.

    Parameters
    ----------
    flatten_obs : numpy.ndarray or torch.Tensor
        ``(..., n)``: the parts of each observation concatenated in ``dict_keys`` order,
        each flattened (as ``gymnasium.wrappers.FlattenObservation`` gives them when the
        keys are in the space's order).
    dict_space : gymnasium.spaces.Dict
        The space of the unflattened observations.
    dict_keys : iterable of str, optional
        The order of the parts; default the space's key order.

    Returns
    -------
    OrderedDict of str to array
        Each key's part, ``(..., *dict_space[key].shape)``, a view of ``flatten_obs``.
    """
    if not isinstance(dict_space, gymnasium.spaces.Dict):
        raise TypeError(f"dict_space: expected a gymnasium.spaces.Dict, got {dict_space!r}")
    keys = list(dict_space.spaces.keys() if dict_keys is None else dict_keys)
    missing = [k for k in keys if k not in dict_space.spaces]
    if missing:
        raise KeyError(f"dict_keys: {missing} are not keys of dict_space {list(dict_space)}")
    shapes = [space_shape(f"dict_space[{k!r}]", dict_space.spaces[k]) for k in keys]
    sizes = [int(np.prod(shape)) for shape in shapes]
    if flatten_obs.shape[-1] != sum(sizes):
        raise ValueError(
            f"flatten_obs: expected a last axis of {sum(sizes)} (the parts {keys} of sizes "
            f"{sizes}), got shape {tuple(flatten_obs.shape)}"
        )
    lead = tuple(flatten_obs.shape[:-1])
    parts = OrderedDict()
    start = 0
    for key, size, key_shape in zip(keys, sizes, shapes):
        parts[key] = flatten_obs[..., start : start + size].reshape(lead + key_shape)
        start += size
    return parts
