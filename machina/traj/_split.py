"""Splitting episodes into training and held-out sets (``ef.train_test_split``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["train_test_split"]


def train_test_split(epis: Sequence[dict], train_size: float) -> tuple[list[dict], list[dict]]:
    """The first ``int(len(epis) * train_size)`` episodes, and the rest.

    Whole episodes go to one side, so held-out steps never come from a training episode.
    The order is kept; shuffle ``epis`` first for a random split.

    Parameters
    ----------
    epis : list of dict
        Episodes.
    train_size : float
        Fraction in [0, 1] of the episodes to train on.

    Returns
    -------
    (list of dict, list of dict)
        Training and held-out episodes (the same dicts, not copies).
    """
    if isinstance(epis, Mapping) or not isinstance(epis, Iterable):
        # one episode's dict would be split by its keys; a Traj is not a list of episodes
        hint = "; for a Traj, pass traj.epis()" if hasattr(epis, "epis") else ""
        raise TypeError(f"epis: expected a list of episode dicts, got {type(epis).__name__}{hint}")
    if not 0.0 <= train_size <= 1.0:
        raise ValueError(f"train_size: expected a float in [0, 1], got {train_size!r}")
    epis = list(epis)
    num_train = int(len(epis) * train_size)
    return epis[:num_train], epis[num_train:]
