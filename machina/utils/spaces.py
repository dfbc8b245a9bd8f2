"""Checks of gymnasium spaces with errors that name the argument, the expected and the given."""

import gymnasium as gym
import numpy as np

__all__ = [
    "check_flat_space",
    "check_space",
    "default_target_entropy",
    "is_integer_box",
    "space_shape",
]


def space_shape(name: str, space: gym.Space) -> tuple[int, ...]:
    """``space.shape``; ``ValueError`` naming ``name`` for a space without one (gymnasium
    allows ``shape=None``, e.g. for ``Graph`` or ``Sequence`` spaces)."""
    if space.shape is None:
        raise ValueError(f"{name}: expected a space with a shape, got {space!r}")
    return space.shape


def check_space(
    name: str, space: gym.Space, expected: type | tuple[type, ...], owner: str
) -> gym.Space:
    """Raise ``ValueError`` unless ``space`` is an instance of ``expected``.

    Parameters
    ----------
    name : str
        Argument name shown in the message, e.g. ``"action_space"``.
    space : gymnasium.Space
        The given space.
    expected : type or tuple of types
        Accepted space classes.
    owner : str
        Class that needs the space, e.g. ``"GaussianPol"``.

    Returns
    -------
    gymnasium.Space
        ``space`` unchanged.
    """
    expected = expected if isinstance(expected, tuple) else (expected,)
    if not isinstance(space, expected):
        names = " or ".join(f"gymnasium.spaces.{cls.__name__}" for cls in expected)
        raise ValueError(f"{name}: {owner} needs a {names}, got {space!r}")
    return space


def check_flat_space(name: str, space: gym.Space, owner: str) -> None:
    """Raise ``ValueError`` unless a Box or MultiDiscrete ``space`` is one-dimensional."""
    if len(space_shape(name, space)) != 1:
        raise ValueError(
            f"{name}: {owner} needs a one-dimensional {type(space).__name__} "
            f"(shape (d,)), got {space!r} with shape {space.shape}"
        )


def is_integer_box(space: gym.Space) -> bool:
    """A Box of an integer dtype: its actions are rounded to the nearest integer (a cast would
    truncate towards 0) and drawn uniformly over ``low..high``."""
    return isinstance(space, gym.spaces.Box) and np.dtype(space.dtype).kind in "iu"


def default_target_entropy(action_space: gym.Space) -> float:
    """SAC's default target entropy for ``action_space``.

    A Box: ``-prod(shape)`` (Haarnoja et al., 2018). A discrete space, whose entropy is never
    negative (so a negative target would only ever lower the temperature): ``0.98`` of its
    largest entropy, ``0.98 * sum(log n_i)`` over its ``n_i`` choices per dimension
    (Christodoulou, 2019, "Soft Actor-Critic for Discrete Action Settings").
    """
    if isinstance(action_space, gym.spaces.Discrete):
        return 0.98 * float(np.log(int(action_space.n)))
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return 0.98 * float(np.sum(np.log(np.asarray(action_space.nvec, dtype=np.float64))))
    if isinstance(action_space, gym.spaces.MultiBinary):
        return 0.98 * float(np.prod(action_space.shape)) * float(np.log(2.0))
    return -float(np.prod(space_shape("action_space", action_space)))
