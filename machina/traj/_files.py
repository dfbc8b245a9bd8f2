"""A Traj's file format: an ``.npz`` archive, written atomically, read without pickle and
validated before anything is built from it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sized
from dataclasses import dataclass, field

import numpy as np

from machina.traj._columns import GROUP_KEYS
from machina.traj._replay import window_starts
from machina.utils import files

# Archive members: one "col:<key>" per column, plus these, plus the rank-based samplers'
# "rank:<key>:<seq_length or 0>:<alpha>:<field>" (fields of RankSampler.state).
REQUIRED = ("epis_index", "group_keys", "group_names")
OPTIONAL = ("column_keys", "max_steps", "pri_beta", "rng_state", "bfloat16_keys")
RANK_FIELDS = ("order", "ordered", "moved", "updates")


def write_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` archive at ``path`` (exactly that name), atomically
    (:func:`machina.utils.files.write_atomic`): a process killed while saving leaves the
    previous file intact (and a ``.<name>.*.tmp`` file behind)."""
    files.write_atomic(path, lambda f: np.savez(f, **arrays))


@dataclass
class TrajFile:
    """The validated contents of a Traj file."""

    columns: dict[str, np.ndarray]
    epis_index: np.ndarray
    groups: dict[str, str]
    max_steps: int | None
    pri_beta: float | None
    # state of the Traj's batch generator (see _rng), (S,) uint8; None: never seeded
    rng_state: np.ndarray | None = None
    # rank-based samplers' states by (key, seq_length or 0, alpha): RANK_FIELDS -> array
    rank_states: dict[tuple[str, int, float], dict[str, np.ndarray]] = field(default_factory=dict)
    # columns stored as the uint16 bits of bfloat16 values (numpy has no bfloat16)
    bfloat16_keys: frozenset[str] = frozenset()


def read_checked(path: str | os.PathLike) -> TrajFile:
    """Read and validate a file written by ``Traj.save``; never unpickles.

    Raises
    ------
    ValueError
        Naming ``path`` and what is wrong: not an ``.npz`` archive (or one that pickles),
        a missing member, episode boundaries that do not start at 0, increase and end at the
        columns' length, columns of different lengths, inconsistent groups or bound.
    """
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise _Bad("expected an .npz archive written by Traj.save, got a single .npy array")
        with archive as f:
            members = {name: f[name] for name in f.files}
    except _Bad as e:
        raise ValueError(f"Traj.load: {os.fspath(path)}: {e}") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:
        # Random bytes: numpy takes them for a pickle; a cut archive: a zip or zlib error.
        raise ValueError(
            f"Traj.load: {os.fspath(path)}: not a readable .npz archive written by Traj.save "
            f"({type(e).__name__}: {e})"
        ) from None
    try:
        return _validate(members)
    except _Bad as e:
        raise ValueError(f"Traj.load: {os.fspath(path)}: {e}") from None


class _Bad(Exception):
    """What is wrong with a file's contents (the caller adds the path)."""


def _validate(members: dict[str, np.ndarray]) -> TrajFile:
    missing = [name for name in REQUIRED if name not in members]
    if missing:
        raise _Bad(f"missing member(s) {missing}; expected {list(REQUIRED)} and 'col:<key>'s")
    unknown = [
        n for n in members if not n.startswith(("col:", "rank:")) and n not in REQUIRED + OPTIONAL
    ]
    if unknown:
        raise _Bad(f"unknown member(s) {unknown}")
    index = members["epis_index"]
    if index.ndim != 1 or index.dtype.kind not in "iu" or len(index) == 0:
        raise _Bad(
            f"epis_index: expected a 1-d integer array, got dtype {index.dtype} and shape "
            f"{index.shape}"
        )
    index = index.astype(np.int64)
    if index[0] != 0:
        raise _Bad(f"epis_index: expected to start at 0, got {int(index[0])}")
    steps = np.diff(index)
    if len(steps) and steps.min() <= 0:
        i = int(np.argmin(steps))
        raise _Bad(
            f"epis_index: expected strictly increasing boundaries (episodes of >= 1 step), "
            f"got {int(index[i])} then {int(index[i + 1])} at positions {i}, {i + 1}"
        )
    num_step = int(index[-1])
    columns = {name[4:]: a for name, a in members.items() if name.startswith("col:")}
    if num_step > 0 and not columns:
        raise _Bad(f"epis_index: {len(steps)} episodes but no 'col:<key>' column")
    if "column_keys" in members:  # older files have none: their columns go unchecked
        listed = members["column_keys"]
        if listed.ndim != 1 or listed.dtype.kind != "U":
            raise _Bad(f"column_keys: expected a 1-d array of names, got {listed!r}")
        absent = sorted(set(map(str, listed.tolist())) - set(columns))
        unlisted = sorted(set(columns) - set(map(str, listed.tolist())))
        if absent or unlisted:
            raise _Bad(
                f"column_keys: the archive's columns differ from those saved: missing "
                f"{['col:' + k for k in absent]}, not saved {['col:' + k for k in unlisted]}"
            )
    lengths = {len(c) if c.ndim else -1 for c in columns.values()}
    if len(lengths) == 1 and num_step not in lengths:
        raise _Bad(
            f"epis_index: expected to end at the columns' length {lengths.pop()}, got {num_step}"
        )
    for key, column in columns.items():
        if column.ndim == 0 or len(column) != num_step:
            raise _Bad(
                f"col:{key}: expected a first axis of length {num_step} (epis_index[-1]), "
                f"got shape {column.shape}"
            )
        if column.dtype.kind not in "biufc":
            raise _Bad(
                f"col:{key}: expected a bool, integer, float or complex column, got {column.dtype}"
            )
    group_keys, group_names = members["group_keys"], members["group_names"]
    if group_keys.shape != group_names.shape or group_keys.ndim != 1:
        raise _Bad(
            f"group_keys, group_names: expected two 1-d arrays of one length, got shapes "
            f"{group_keys.shape} and {group_names.shape}"
        )
    groups = dict(zip(map(str, group_keys.tolist()), map(str, group_names.tolist())))
    for key, name in groups.items():
        if name not in GROUP_KEYS or key not in columns:
            raise _Bad(
                f"group_keys: {key!r} -> {name!r}: expected a stored column in one of {GROUP_KEYS}"
            )
    max_steps = None
    if "max_steps" in members:
        bound = members["max_steps"]
        if bound.shape != () or bound.dtype.kind not in "iu" or int(bound) < 1:
            raise _Bad(f"max_steps: expected a positive integer scalar, got {bound!r}")
        max_steps = int(bound)
        if num_step > max_steps:
            raise _Bad(f"epis_index: {num_step} steps exceed the file's max_steps {max_steps}")
    pri_beta = None
    if "pri_beta" in members:
        beta = members["pri_beta"]
        if beta.shape != () or beta.dtype.kind != "f" or not 0.0 <= float(beta) <= 1.0:
            raise _Bad(f"pri_beta: expected a float scalar in [0, 1], got {beta!r}")
        pri_beta = float(beta)
    rng_state = members.get("rng_state")
    if rng_state is not None and (rng_state.ndim != 1 or rng_state.dtype != np.uint8):
        raise _Bad(
            f"rng_state: expected a 1-d uint8 array (a generator's state), got dtype "
            f"{rng_state.dtype} and shape {rng_state.shape}"
        )
    rank_states = rank_states_of(members, columns, index)
    bfloat16_keys = frozenset()
    if "bfloat16_keys" in members:
        listed = members["bfloat16_keys"]
        keys = set(map(str, listed.tolist())) if listed.ndim == 1 else set()
        if (
            listed.ndim != 1
            or listed.dtype.kind != "U"
            or any(k not in columns or columns[k].dtype != np.uint16 for k in keys)
        ):
            raise _Bad(
                f"bfloat16_keys: expected names of uint16 columns (bfloat16 bits), got {listed!r}"
            )
        bfloat16_keys = frozenset(keys)
    return TrajFile(
        columns, index, groups, max_steps, pri_beta, rng_state, rank_states, bfloat16_keys
    )


def rank_states_of(
    members: dict[str, np.ndarray], columns: Mapping[str, Sized], index: np.ndarray
) -> dict[tuple[str, int, float], dict[str, np.ndarray]]:
    """The rank-based samplers' states, each checked against its priority column."""
    states: dict[tuple[str, int, float], dict[str, np.ndarray]] = {}
    for name, value in members.items():
        if not name.startswith("rank:"):
            continue
        parts = name[5:].rsplit(":", 3)
        try:
            key, seq, alpha, part = parts
            sampler = (key, int(seq), float(alpha))
        except ValueError:
            raise _Bad(f"{name}: expected rank:<key>:<seq_length>:<alpha>:<field>") from None
        if part not in RANK_FIELDS or key not in columns or sampler[1] < 0:
            raise _Bad(f"{name}: expected a field of {RANK_FIELDS} for a stored column")
        states.setdefault(sampler, {})[part] = value
    for (key, seq, alpha), state in states.items():
        where = f"rank:{key}:{seq}:{alpha!r}"
        if set(state) != set(RANK_FIELDS):
            raise _Bad(f"{where}: expected the fields {list(RANK_FIELDS)}, got {sorted(state)}")
        n = len(columns[key]) if seq == 0 else len(window_starts(index, seq))
        order, ordered, moved, updates = (state[f] for f in RANK_FIELDS)
        if (
            order.shape != (n,)
            or order.dtype.kind not in "iu"
            or ordered.shape != (n,)
            or ordered.dtype.kind != "f"
            or moved.shape != (n,)
            or moved.dtype != np.bool_
            or updates.shape != ()
            or updates.dtype.kind not in "iu"
        ):
            raise _Bad(
                f"{where}: expected order ({n},) int, ordered ({n},) float, moved ({n},) bool "
                f"and updates () int, got {[(a.dtype.name, a.shape) for a in state.values()]}"
            )
        if n and not np.array_equal(np.bincount(order, minlength=n), np.ones(n, np.int64)):
            raise _Bad(f"{where}: order: expected a permutation of range({n})")
    return states
