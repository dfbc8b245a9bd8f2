"""Checks of gymnasium spaces with errors that name the argument, the expected and the given."""

import gymnasium as gym
import numpy as np

__all__ = ["check_flat_space", "check_space", "is_integer_box", "space_shape"]


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
