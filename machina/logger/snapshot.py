"""Per-iteration snapshots of arbitrary objects: ``save_itr_params`` and its settings.

machina 0.x's logger (from rllab) kept a snapshot directory, a mode and a gap as module
state; ``save_itr_params(itr, params)`` pickled ``params`` there with joblib. The same calls
work here. For new code, :class:`machina.logger.Run` checkpoints models, optimisers and
samplers and resumes them exactly.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

__all__ = [
    "set_snapshot_dir",
    "get_snapshot_dir",
    "set_snapshot_mode",
    "get_snapshot_mode",
    "set_snapshot_gap",
    "get_snapshot_gap",
    "save_itr_params",
]

SNAPSHOT_MODES = ("all", "last", "gap", "none")

_settings: dict[str, Any] = {"dir": None, "mode": "all", "gap": 1}


def set_snapshot_dir(dir_name: str | os.PathLike | None) -> None:
    """Directory of the snapshots; None (the default) turns ``save_itr_params`` off."""
    _settings["dir"] = None if dir_name is None else os.fspath(dir_name)


def get_snapshot_dir() -> str | None:
    """The snapshot directory, or None."""
    return _settings["dir"]


def set_snapshot_mode(mode: str) -> None:
    """``"all"`` (``itr_<i>.pkl`` every call), ``"last"`` (``params.pkl``, overwritten),
    ``"gap"`` (``itr_<i>.pkl`` when ``i`` is a multiple of the gap) or ``"none"``."""
    if mode not in SNAPSHOT_MODES:
        raise ValueError(f"mode: expected one of {SNAPSHOT_MODES}, got {mode!r}")
    _settings["mode"] = mode


def get_snapshot_mode() -> str:
    """The snapshot mode (default ``"all"``)."""
    return _settings["mode"]


def set_snapshot_gap(gap: int) -> None:
    """Iterations between two snapshots in ``"gap"`` mode (default 1)."""
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
        raise ValueError(f"gap: expected a positive int, got {gap!r}")
    _settings["gap"] = gap


def get_snapshot_gap() -> int:
    """The snapshot gap."""
    return _settings["gap"]


def save_itr_params(itr: int, params: Any) -> str | None:
    """Pickle ``params`` for iteration ``itr`` as the snapshot settings say.

    Files are written with joblib (compressed, as machina 0.x did; ``joblib.load`` reads
    them) when it is installed, otherwise with :mod:`pickle` (``pickle.load`` reads them).
    Both unpickle arbitrary code when loaded: load only files you wrote.

    Parameters
    ----------
    itr : int
        The iteration.
    params : object
        Anything picklable, e.g. a dict of ``state_dict()``s.

    Returns
    -------
    str or None
        The file written, or None when nothing was (no directory, ``"none"`` mode, or an
        iteration between two gaps).
    """
    directory, mode = _settings["dir"], _settings["mode"]
    if not directory or mode == "none":
        return None
    if mode == "gap" and itr % _settings["gap"] != 0:
        return None
    name = "params.pkl" if mode == "last" else f"itr_{itr}.pkl"
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    tmp = path + ".tmp"
    try:
        import joblib
    except ImportError:
        with open(tmp, "wb") as f:
            pickle.dump(params, f)
    else:
        joblib.dump(params, tmp, compress=3)
    os.replace(tmp, path)  # a reader never sees half a file
    return path
