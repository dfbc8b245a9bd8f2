"""Episodes as flat columns plus lengths, and back to per-episode dicts of views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Epi = dict
# Episode keys whose values are dicts of arrays; their sub-keys become top-level columns.
GROUP_KEYS = ("a_is", "e_is")


@dataclass(frozen=True, eq=False)
class FlatEpisodes:
    """Whole episodes concatenated: one array per key plus every episode's length.

    Never modified in place: ``with_columns`` returns a new instance that shares the
    unchanged arrays.

    Attributes
    ----------
    columns : dict of str to np.ndarray
        One array per key, shape (N, ...); ``a_is`` / ``e_is`` sub-keys are columns too.
    groups : dict of str to str
        Column key -> ``"a_is"`` / ``"e_is"`` for the keys that came from those groups.
    lengths : np.ndarray
        Episode lengths, (n_epi,) int64, summing to N.
    """

    columns: dict[str, np.ndarray]
    groups: dict[str, str]
    lengths: np.ndarray

    @classmethod
    def from_epis(cls, epis: Sequence[Epi]) -> FlatEpisodes:
        """Concatenate episodes, checking that they share keys and first-axis lengths."""
        if isinstance(epis, Mapping):
            raise TypeError("epis: expected a list of episode dicts, got a single dict")
        epis = list(epis)
        if not epis:
            return cls({}, {}, np.zeros(0, dtype=np.int64))
        first = epis[0]
        groups = {k: g for g in GROUP_KEYS for k in first.get(g, {})}
        keys = [k for k in first if k not in GROUP_KEYS]
        if not keys:
            raise ValueError("epis[0]: expected arrays such as 'obs' and 'rews', got none")
        clash = set(keys) & set(groups)
        if clash:
            raise ValueError(
                f"episodes: agent/env info keys {sorted(clash)} clash with episode keys"
            )
        info_clash = set(first.get("a_is", {})) & set(first.get("e_is", {}))
        if info_clash:
            raise ValueError(
                f"episodes: keys {sorted(info_clash)} are in both a_is and e_is; they would "
                "share one column (rename the env info)"
            )
        expected = {*keys, *groups}
        first_keys = first.keys()
        first_sub = {g: first.get(g, {}).keys() for g in GROUP_KEYS}
        for i, epi in enumerate(epis):
            # Fast path: the same dict keys as epis[0]. Otherwise compare the column names.
            if epi.keys() != first_keys or any(
                epi.get(g, {}).keys() != sub for g, sub in first_sub.items()
            ):
                found = {k for k in epi if k not in GROUP_KEYS}
                found |= {k for g in GROUP_KEYS for k in epi.get(g, {})}
                if found != expected:
                    diff = sorted(found ^ expected)
                    raise ValueError(f"epis[{i}]: keys {diff} differ from those of epis[0]")
        lengths = _first_axis_lengths([epi[keys[0]] for epi in epis], keys[0])
        empty = np.flatnonzero(lengths == 0)
        if len(empty):
            raise ValueError(
                f"epis[{empty[0]}]['{keys[0]}']: episodes must have at least one step, got 0"
            )
        columns = {k: concat_checked([epi[k] for epi in epis], lengths, k) for k in keys}
        for k, g in groups.items():
            columns[k] = concat_checked(
                [epi.get(g, {}).get(k) for epi in epis], lengths, f"{g}.{k}"
            )
        for k, column in columns.items():  # torch holds numbers only (register_epis failed)
            if column.dtype.kind not in "biufc":
                group = groups.get(k)
                dtypes = [np.asarray(epi[group][k] if group else epi[k]).dtype for epi in epis]
                i = next((i for i, d in enumerate(dtypes) if d.kind not in "biufc"), 0)
                name = f"{group}.{k}" if group else k
                raise ValueError(
                    f"epis[{i}]['{name}']: expected numbers (bool, integer, float or complex), "
                    f"got dtype {dtypes[i]}"
                )
        return cls(columns, groups, lengths)

    @property
    def num_epi(self) -> int:
        return len(self.lengths)

    @property
    def num_step(self) -> int:
        return int(self.lengths.sum())

    def with_columns(self, new: Mapping[str, np.ndarray]) -> FlatEpisodes:
        """A copy with ``new`` columns added or replaced; the other arrays are shared."""
        clash = sorted(set(new) & set(self.groups))
        if clash:
            raise ValueError(f"episodes: new keys {clash} clash with agent/env info keys")
        for key, value in new.items():
            if value.shape[:1] != (self.num_step,):
                raise ValueError(
                    f"{key}: expected a first axis of length {self.num_step}, got {value.shape}"
                )
        return FlatEpisodes({**self.columns, **new}, self.groups, self.lengths)

    def to_epis(self) -> list[Epi]:
        """Per-episode dicts of views of the columns, ``a_is`` / ``e_is`` regrouped."""
        return split_columns(self.columns, self.groups, self.lengths)


def split_columns(
    columns: Mapping[str, np.ndarray], groups: Mapping[str, str], lengths: np.ndarray
) -> list[Epi]:
    """Per-episode dicts of views of flat ``columns``.

    Keys listed in ``groups`` go under their group; every episode has both ``a_is`` and
    ``e_is``, empty when no column belongs to it.
    """
    bounds = np.cumsum(lengths)[:-1]
    pieces = {k: np.split(v, bounds) for k, v in columns.items()}
    top = [k for k in columns if k not in groups]
    by_group = {g: [k for k in columns if groups.get(k) == g] for g in GROUP_KEYS}
    out = []
    for i in range(len(lengths)):
        epi: Epi = {k: pieces[k][i] for k in top}
        for g, keys in by_group.items():
            epi[g] = {k: pieces[k][i] for k in keys}
        out.append(epi)
    return out


def _first_axis_lengths(parts: list, key: str) -> np.ndarray:
    try:
        return np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    except TypeError:  # a scalar or 0-d array: find it for the message
        for i, part in enumerate(parts):
            if np.ndim(part) == 0:
                raise ValueError(
                    f"epis[{i}]['{key}']: expected an array with a first axis, got shape ()"
                ) from None
        raise


def concat_checked(parts: list, lengths: np.ndarray, key: str) -> np.ndarray:
    """``parts`` concatenated, each checked to have its episode's length."""
    try:
        ok = np.array_equal(_first_axis_lengths(parts, key), lengths)
    except ValueError:
        ok = False
    if not ok:
        for i, (part, length) in enumerate(zip(parts, lengths)):
            column_part(part, int(length), i, key)
    try:
        return np.concatenate(parts)
    except ValueError:  # numpy's message names neither the key nor the episode
        shapes = [np.shape(part)[1:] for part in parts]
        odd = [i for i, shape in enumerate(shapes) if shape != shapes[0]]
        if not odd:
            raise
        raise ValueError(
            f"epis[{odd[0]}]['{key}']: expected steps of shape {shapes[0]} (as epis[0]'s), got "
            f"{shapes[odd[0]]}"
        ) from None


def column_part(value, length: int, i: int, key: str) -> np.ndarray:
    """``value`` as an array whose first axis is ``length``, or a ValueError naming it."""
    value = np.asarray(value)
    if length == 0:
        raise ValueError(f"epis[{i}]['{key}']: episodes must have at least one step, got 0")
    if value.ndim == 0 or len(value) != length:
        raise ValueError(
            f"epis[{i}]['{key}']: expected a first axis of length {length}, got shape {value.shape}"
        )
    return value
