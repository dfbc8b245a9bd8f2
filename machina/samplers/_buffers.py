"""Growable time-major buffers of one run, and the packing of their episodes into columns.

Row ``t`` of a ``History`` holds every slot's data at engine step ``t``; episodes are cut out
once, at the end of a run, by one gather per key (``pack_episodes``), into a few flat columns
that are cheap to send (the packed format both transports carry) and that
``unpack_episodes`` turns into episode dicts without copying.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from machina.samplers._task import Episode


def numeric_info(info: dict[str, Any]) -> dict[str, np.ndarray]:
    """Keep the numeric scalar / array entries of a step's info dict."""
    out = {}
    for key, value in info.items():
        if isinstance(value, (bool, int, float, np.number, np.bool_, np.ndarray)):
            arr = np.asarray(value)
            if arr.dtype.kind in "biuf":
                out[key] = arr
    return out


def env_info_columns(infos: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack one episode's per-step numeric infos into (T, ...) columns.

    A key becomes a column only if every step has it with one shape: the columns must share
    the episode's first axis T.
    """
    columns = {}
    for key, first in infos[0].items():
        rows = [info.get(key) for info in infos]
        if all(r is not None and r.shape == first.shape for r in rows):
            columns[key] = np.stack(rows)
    return columns


class Growable:
    """Arrays whose first axis grows by doubling (zero-filled, so unused rows stay finite)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.fields: dict[str, np.ndarray] = {}

    def add(self, name: str, item_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        arr = np.zeros((self.capacity, *item_shape), dtype=dtype)
        self.fields[name] = arr
        return arr

    def widen(self, name: str, dtype: Any) -> np.ndarray:
        """Field ``name`` recast, with the rows written so far, to hold ``dtype``'s values
        too (a value of a wider dtype than the first one would be truncated)."""
        arr = self.fields[name]
        wider = np.result_type(arr.dtype, dtype)
        if wider != arr.dtype:
            arr = self.fields[name] = arr.astype(wider)
        return arr

    def ensure(self, size: int) -> bool:
        """Make room for ``size`` items; True when the arrays were reallocated."""
        if size <= self.capacity:
            return False
        capacity = self.capacity
        while capacity < size:
            capacity *= 2
        for name, arr in self.fields.items():
            grown = np.zeros((capacity, *arr.shape[1:]), dtype=arr.dtype)
            grown[: self.capacity] = arr
            self.fields[name] = grown
        self.capacity = capacity
        return True


class History(Growable):
    """Time-major buffers of one ``run``: row ``t`` holds every slot's data at engine step t.

    Writing a whole step is one numpy copy per key (the policy's outputs for the batch), and
    the observations the policy reads are a contiguous row, so no per-step Python objects are
    kept. Rows are never compacted: the buffers hold about the sample itself plus, per slot,
    the rows it spent idle once its quota was met.
    """

    def __init__(self, num_slots: int, capacity: int = 64) -> None:
        super().__init__(capacity)
        self.n = num_slots

    def add(self, name: str, item_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return super().add(name, (self.n, *item_shape), dtype)

    def gather(self, name: str, flat_index: np.ndarray) -> np.ndarray:
        """Rows ``flat_index`` (``row * n + slot``) of one field, as a new array."""
        arr = self.fields[name]
        # np.take: several times faster than fancy indexing for rows of a 2-D array
        return np.take(arr.reshape(-1, *arr.shape[2:]), flat_index, axis=0)


def pack_episodes(
    history: History, finals: np.ndarray, records: list[tuple], discrete_acs: bool
) -> dict[str, Any]:
    """All finished episodes as flat columns (episodes concatenated) and their boundaries.

    Parameters
    ----------
    history : History
        The run's buffers (``obs``, ``acs``, ``rews``, ``a_is/<key>`` fields, and
        ``raw_obs`` when the run had a prepro on array observations).
    finals : ndarray
        The final observation of episode ``i`` (in order of ending) at ``finals[i]``.
    records : list of tuple
        ``(slot, first_row, length, term, trunc, infos)`` per episode in order of ending;
        ``infos`` is the list of per-step numeric infos when every step had one, else None.
    discrete_acs : bool
        Cast actions to int64.

    Returns
    -------
    packed : dict
        ``cols`` (dict of flat arrays, ``a_is`` a dict of them), ``bounds`` (episode ``i``
        spans ``bounds[i]:bounds[i + 1]``), ``e_is`` (a dict of columns per episode) and
        ``slots`` (each episode's slot). Small to pickle (a few arrays), and
        ``unpack_episodes`` turns it into episodes.
    """
    if not records:
        return pack_columns(history, finals, *([np.zeros(0, np.int64)] * 5), discrete_acs)
    num = len(records)
    slots, firsts, lengths = (
        np.fromiter((r[j] for r in records), dtype=np.int64, count=num) for j in range(3)
    )
    terms = np.fromiter((r[3] for r in records), dtype=bool, count=num)
    truncs = np.fromiter((r[4] for r in records), dtype=bool, count=num)
    infos = [r[5] for r in records]
    return pack_columns(history, finals, slots, firsts, lengths, terms, truncs, discrete_acs, infos)


def pack_columns(
    history: History,
    finals: np.ndarray,
    slots: np.ndarray,
    firsts: np.ndarray,
    lengths: np.ndarray,
    terms: np.ndarray,
    truncs: np.ndarray,
    discrete_acs: bool,
    infos: list[list | None] | None = None,
) -> dict[str, Any]:
    """``pack_episodes`` on arrays: episode ``i`` (in order of ending) ran in slot
    ``slots[i]`` from row ``firsts[i]`` for ``lengths[i]`` steps and ended with ``terms[i]``,
    ``truncs[i]`` (all (num,)); ``infos``, optional, its per-step numeric infos (or None).

    Environment infos kept as history fields (the vector path) are ``e_is/<key>`` with
    ``e_is_mask/<key>`` (bool, where the step had the key): an episode gets the key when
    every one of its steps had it. A ``raw_obs`` field goes to every episode's ``e_is``.
    """
    num = len(slots)
    if not num:
        return {
            "cols": {"a_is": {}},
            "bounds": np.zeros(1, dtype=np.int64),
            "e_is": [],
            "slots": np.zeros(0, dtype=np.int64),
        }
    order = np.lexsort((firsts, slots))  # by slot, then start
    slots, firsts, lengths = slots[order], firsts[order], lengths[order]
    bounds = np.zeros(num + 1, dtype=np.int64)
    np.cumsum(lengths, out=bounds[1:])
    total = int(bounds[-1])
    within = np.arange(total, dtype=np.int64) - np.repeat(bounds[:-1], lengths)
    flat_index = (np.repeat(firsts, lengths) + within) * history.n + np.repeat(slots, lengths)
    ends = bounds[1:] - 1

    obs = history.gather("obs", flat_index)
    # Within an episode the next observation is the following row; at its end, the final one.
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[ends] = finals[order]
    terms_col = np.zeros(total, dtype=bool)
    truncs_col = np.zeros(total, dtype=bool)
    terms_col[ends] = terms[order]
    truncs_col[ends] = truncs[order]
    acs = history.gather("acs", flat_index)
    if discrete_acs:
        acs = acs.astype(np.int64, copy=False)
    cols = {
        "obs": obs,
        "acs": acs,
        "rews": history.gather("rews", flat_index),
        "next_obs": next_obs,
        "terms": terms_col,
        "truncs": truncs_col,
        "dones": terms_col | truncs_col,
        "a_is": {
            name[len("a_is/") :]: history.gather(name, flat_index)
            for name in history.fields
            if name.startswith("a_is/")
        },
    }
    if infos is None:
        e_is: list[dict[str, np.ndarray]] = [{} for _ in range(num)]
    else:
        e_is = [{} if infos[i] is None else env_info_columns(infos[i]) for i in order.tolist()]
    _history_e_is(history, flat_index, bounds, e_is)
    return {"cols": cols, "bounds": bounds, "e_is": e_is, "slots": slots}


def _history_e_is(
    history: History, flat_index: np.ndarray, bounds: np.ndarray, e_is: list[dict]
) -> None:
    """Add the infos kept as history fields to each episode's ``e_is`` (see
    ``pack_columns``), as slices of one gathered column per key."""
    starts = bounds[:-1]
    for name in history.fields:
        if not name.startswith("e_is/"):
            continue
        key = name[len("e_is/") :]
        column = history.gather(name, flat_index)
        every = np.logical_and.reduceat(history.gather("e_is_mask/" + key, flat_index), starts)
        for i in np.flatnonzero(every).tolist():
            e_is[i][key] = column[bounds[i] : bounds[i + 1]]
    if "raw_obs" in history.fields:
        raw = history.gather("raw_obs", flat_index)
        for i, epi_e_is in enumerate(e_is):
            epi_e_is["raw_obs"] = raw[bounds[i] : bounds[i + 1]]


class SampledEpisode(dict):
    """An episode as a sampler returns it: a plain dict, except that ``epi["real_rews"]``
    (the environment's rewards) is its ``rews`` while it holds no ``real_rews`` of its own.

    machina 0.x's GAIL/AIRL scripts read ``real_rews`` from the sampled episodes after the
    pseudo-reward estimator, which then changed them in place; machina's estimators return
    new episodes and leave these with the environment's rewards in ``rews``, which this
    lets those scripts read under the old name. Nothing else differs: ``"real_rews" in
    epi`` and ``epi.get("real_rews")`` see no such key, and copies (``copy``, pickling) are
    plain dicts. Pickled, it is written as a call of ``dict``, which
    ``torch.load(weights_only=True)`` refuses (as it refuses the numpy arrays an episode
    holds); save ``[dict(epi) for epi in epis]`` for that loader.
    """

    __slots__ = ()

    def __missing__(self, key: str) -> Any:
        if key == "real_rews" and "rews" in self:
            return self["rews"]
        raise KeyError(key)

    def __reduce__(self) -> tuple:
        # pickled (files of episodes, copies) as the plain dict it is: no file names this class
        return dict, (dict(self),)


def unpack_episodes(packed: dict[str, Any]) -> list[Episode]:
    """Split packed columns into episode dicts (views of the columns, no copy)."""
    cols, bounds, e_is = packed["cols"], packed["bounds"].tolist(), packed["e_is"]
    columns = [(key, value) for key, value in cols.items() if key != "a_is"]
    a_is = list(cols["a_is"].items())
    epis = []
    for a, b, epi_e_is in zip(bounds[:-1], bounds[1:], e_is):
        epi = SampledEpisode({key: value[a:b] for key, value in columns})
        epi["a_is"] = {key: value[a:b] for key, value in a_is}
        epi["e_is"] = epi_e_is
        epis.append(epi)
    return epis


class StepOutputs:
    """The policy's per-step outputs in a run's ``History``: ``acs`` and ``a_is/<key>``.

    The fields are added at the first write, when the shapes and dtypes of the policy's
    outputs are known; ``refresh`` picks up the arrays again after the history grew.
    """

    def __init__(self, history: History) -> None:
        self.history = history
        self.acs: np.ndarray | None = None
        self.a_is: dict[str, np.ndarray] = {}

    def _allocate(self, ac: np.ndarray, a_i: dict[str, np.ndarray]) -> None:
        self.acs = self.history.add("acs", ac.shape[1:], ac.dtype)
        for key, value in a_i.items():
            if value.ndim >= 1:
                self.a_is[key] = self.history.add("a_is/" + key, value.shape[1:], value.dtype)

    def refresh(self) -> None:
        """Re-read the arrays after ``History.ensure`` reallocated them."""
        if self.acs is not None:
            self.acs = self.history.fields["acs"]
            self.a_is = {key: self.history.fields["a_is/" + key] for key in self.a_is}

    def write(self, t: int, rows: Any, ac: np.ndarray, a_i: dict[str, np.ndarray]) -> None:
        """Row ``t``'s columns ``rows`` (a slice, index array or Ellipsis) get ``ac``, ``a_i``."""
        if self.acs is None:
            self._allocate(ac, a_i)
        self.acs[t][rows] = ac
        for key, buf in self.a_is.items():
            buf[t][rows] = a_i[key]

    def row_views(self, t: int) -> dict[str, np.ndarray] | None:
        """Row ``t`` of every output (key ``"ac"`` and the ``a_i`` keys), to write into; None
        before the first write."""
        if self.acs is None:
            return None
        views = {"ac": self.acs[t]}
        for key, buf in self.a_is.items():
            views[key] = buf[t]
        return views
