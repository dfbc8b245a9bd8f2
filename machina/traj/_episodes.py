"""The one place where estimators accept either a Traj or a list of episodes."""

from __future__ import annotations

import functools
import inspect
import itertools
import operator
import weakref
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from machina.traj._columns import FlatEpisodes, concat_checked
from machina.traj.traj import Traj

Epi = dict
_rews = operator.itemgetter("rews")
_REWS = itertools.repeat("rews")
_keys = operator.methodcaller("keys")


class Columns:
    """Read-only flat view of episodes given to an estimator's math.

    ``data[key]`` is the key of every episode concatenated, shape (N, ...). From a Traj these
    are its pending columns as they are; from a list of episodes a key is concatenated on
    first use only, so an estimator pays only for the keys it reads. ``a_is`` / ``e_is``
    sub-keys are not visible, whichever the source.

    Attributes
    ----------
    lengths : np.ndarray
        Episode lengths, (n_epi,) int64, summing to N.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        keys: set[str],
        load: Callable[[str], np.ndarray],
        missing: Callable[[str], str],
    ):
        self.lengths = lengths
        self._keys = keys
        self._load = load
        self._missing = missing
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def of_flat(cls, flat: FlatEpisodes) -> Columns:
        keys = {k for k in flat.columns if k not in flat.groups}
        return cls(
            flat.lengths,
            keys,
            flat.columns.__getitem__,
            lambda key: f"the Traj's pending episodes have no '{key}'",
        )

    @classmethod
    def of_epis(cls, epis: Sequence[Epi]) -> Columns:
        # The checks run as C loops (map) over the episodes: a Python loop per episode
        # costs several times more at thousands of episodes.
        if all(issubclass(t, dict) for t in set(map(type, epis))) and all(
            map(operator.contains, epis, _REWS)
        ):
            lengths = np.fromiter(map(len, map(_rews, epis)), dtype=np.int64, count=len(epis))
        else:  # episodes without rewards (expert data): their length from 'obs'
            for i, epi in enumerate(epis):
                if not isinstance(epi, Mapping) or not ("rews" in epi or "obs" in epi):
                    raise KeyError(f"epis[{i}]: expected an episode dict with 'rews' or 'obs'")
            lengths = np.array(
                [len(epi["rews"] if "rews" in epi else epi["obs"]) for epi in epis], np.int64
            )
        empty = np.flatnonzero(lengths == 0)
        if len(empty):
            raise ValueError(f"epis[{empty[0]}]: episodes must have at least one step, got 0")
        first = epis[0].keys() if epis else set()
        if all(map(first.__eq__, map(_keys, epis))):  # the usual case: one dict layout
            keys = set(first)
        else:
            keys = set.intersection(*(set(epi) for epi in epis))

        def load(key: str) -> np.ndarray:
            flat = _split_flat(epis, key)  # a column an earlier estimator added
            if flat is not None:
                return flat
            return concat_checked([epi[key] for epi in epis], lengths, key)

        def missing(key: str) -> str:
            i = next(i for i, epi in enumerate(epis) if key not in epi)
            return f"epis[{i}] has no '{key}'"

        return cls(lengths, keys - {"a_is", "e_is"}, load, missing)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            if key not in self._keys:
                raise KeyError(self._missing(key))
            self._cache[key] = self._load(key)
        return self._cache[key]

    def require(self, key: str, fn_name: str, added_by: str | None = None) -> np.ndarray:
        """``self[key]``, or a KeyError naming ``fn_name`` and the estimator that adds it."""
        if key not in self._keys:
            hint = f"; call {added_by} first" if added_by else ""
            raise KeyError(f"{fn_name}: {self._missing(key)}{hint}")
        return self[key]

    @functools.cached_property
    def num_step(self) -> int:
        return int(self.lengths.sum())

    @functools.cached_property
    def ends(self) -> np.ndarray:
        """Flat index one past each episode's last step, (n_epi,)."""
        return np.cumsum(self.lengths)

    @property
    def last(self) -> np.ndarray:
        """Flat index of each episode's last step, (n_epi,)."""
        return self.ends - 1

    @property
    def starts(self) -> np.ndarray:
        """Flat index of each episode's first step, (n_epi,)."""
        return self.ends - self.lengths


# Flat columns that estimators split into per-episode views for lists of episodes, by id:
# a weak reference to the flat array and the ids of its views in episode order. The next
# estimator on such a list reads the flat array instead of concatenating the episodes.
_SPLIT: dict[int, tuple[weakref.ref, tuple[int, ...]]] = {}


def _split_into_views(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Per-episode views of ``flat``, remembered (see ``_split_flat``)."""
    ends = np.cumsum(lengths).tolist()
    views = [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]
    if flat.base is None:  # the views' base is flat itself only when flat owns its data
        key = id(flat)
        _SPLIT[key] = (weakref.ref(flat), tuple(map(id, views)))
        weakref.finalize(flat, _SPLIT.pop, key, None)
    return views


def _split_flat(epis: Sequence[Epi], key: str) -> np.ndarray | None:
    """The flat array that ``epis`` hold views of under ``key``, in order, or None.

    True when every episode's array is the very view ``_split_into_views`` made, in the same
    order: an edit in place of a view edits the flat array (shared memory); an array
    assigned anew, a reordered, shortened or longer list, fails the check.
    """
    base = getattr(epis[0].get(key), "base", None)
    entry = _SPLIT.get(id(base)) if base is not None else None
    if entry is None or entry[0]() is not base:
        return None
    arrays = [epi.get(key) for epi in epis]
    if tuple(map(id, arrays)) != entry[1]:
        return None
    if not all(getattr(a, "base", None) is base for a in arrays):
        return None
    return base


Estimator = Callable[..., Mapping[str, np.ndarray]]


def episode_function(fn: Estimator) -> Callable:
    """Turn ``fn(data: Columns, ...) -> {key: (N, ...) array}`` into an estimator on episodes.

    The estimator takes a Traj (its pending episodes) or a list of episode dicts and returns
    a new object of the same kind with the columns ``fn`` returned added or replaced. The
    input is left untouched and arrays that ``fn`` did not return are shared, not copied:
    a Traj gets them as new flat pending columns (no per-episode split), a list gets new
    episode dicts holding each episode's slice.
    """

    @functools.wraps(fn)
    def wrapper(data, *args, **kwargs):
        if isinstance(data, Traj):
            flat = data.pending
            if flat is None or flat.num_epi == 0:
                raise ValueError(
                    f"{fn.__name__}: the Traj has no pending episodes; call traj.add_epis(epis) "
                    "before the estimators and traj.register_epis() after them"
                )
            new = fn(Columns.of_flat(flat), *args, **kwargs)
            return data.with_pending(flat.with_columns(new))
        if isinstance(data, Mapping) or not isinstance(data, Sequence):
            raise TypeError(
                f"{fn.__name__}: data: expected a Traj or a list of episode dicts, "
                f"got {type(data).__name__}"
            )
        epis = list(data)
        if not epis:
            return []
        columns = Columns.of_epis(epis)
        new = fn(columns, *args, **kwargs)
        views = {k: _split_into_views(v, columns.lengths) for k, v in new.items()}
        out = [epi.copy() for epi in epis]  # dict.copy: several times {**epi, ...} here
        for key, pieces in views.items():
            for epi, piece in zip(out, pieces):
                epi[key] = piece
        return out

    # The public signature: data is what the caller passes, not the Columns fn receives.
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    params[0] = params[0].replace(annotation="Traj | list[dict]")
    wrapper.__signature__ = signature.replace(
        parameters=params, return_annotation="Traj | list[dict]"
    )
    return wrapper
