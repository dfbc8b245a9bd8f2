"""Episodes to and from a pandas DataFrame: one row per step, one column per scalar.

Column names: ``epi`` (episode number) and ``t`` (step in the episode) first; then a key's
scalar per step as ``rews``, its entries as ``obs[0]``, ``obs[1]``... (``obs[2,3]`` for a
multi-dimensional observation); ``a_is`` and ``e_is`` keys as ``a_is/mean[0]``,
``e_is/x_pos``. Every column keeps its dtype, so :func:`from_dataframe` rebuilds the episodes
exactly.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from machina.datasets._episodes import Epi, as_epis, policy_to_env_acs
from machina.pols import BasePol
from machina.traj import Traj
from machina.utils.tensors import to_numpy

__all__ = ["from_dataframe", "to_dataframe"]

GROUPS = ("a_is", "e_is")
_COLUMN = re.compile(r"^(?P<key>[^\[]+)(\[(?P<index>[0-9,]+)\])?$")


def _import_pandas() -> Any:
    try:
        import pandas
    except ImportError as error:  # an optional extra
        raise ImportError('DataFrames need pandas: pip install "machina[datasets]"') from error
    return pandas


def _columns(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """``values (N, *shape)`` as one column per entry of ``shape``."""
    if values.ndim == 1:
        return {name: values}
    flat = values.reshape(len(values), -1)
    indices = np.ndindex(*values.shape[1:])
    return {f"{name}[{','.join(map(str, i))}]": flat[:, j] for j, i in enumerate(indices)}


def to_dataframe(epis: Sequence[Epi] | Traj, pol: BasePol | None = None) -> Any:
    """One row per step of every episode.

    Parameters
    ----------
    epis : list of dict or Traj
        Episodes (dicts of arrays of a common length ``T``, ``a_is`` / ``e_is`` dicts of
        such arrays); a Traj's registered episodes (its pending ones when none are).
    pol : BasePol, optional
        When given, ``ac_real`` columns hold ``pol.convert_ac_for_real(acs)``, the actions the
        environment received (``acs`` are in the policy's space).

    Returns
    -------
    pandas.DataFrame
        ``sum(T)`` rows; columns as described in this module's docstring.
    """
    pd = _import_pandas()
    epis = as_epis(epis)
    lengths = [len(to_numpy(epi["rews"])) for epi in epis]
    keys = [k for k in epis[0] if k not in GROUPS]
    taken = sorted({"epi", "t"} & set(keys))
    if taken:  # they would overwrite the index columns
        raise ValueError(
            f"epis: keys {taken} are the DataFrame's episode and step columns; rename them"
        )
    data: dict[str, np.ndarray] = {
        "epi": np.repeat(np.arange(len(epis)), lengths),
        "t": np.concatenate([np.arange(n) for n in lengths]),
    }

    def column(get: Any, name: str) -> None:
        try:
            values = np.concatenate([to_numpy(get(epi)) for epi in epis])
        except KeyError as error:
            raise ValueError(f"epis: key {name!r} is missing from some episodes") from error
        data.update(_columns(name, values))

    for key in keys:
        column(lambda epi, key=key: epi[key], key)
    if pol is not None:
        column(lambda epi: policy_to_env_acs(pol, to_numpy(epi["acs"])), "ac_real")
    for group in GROUPS:
        for sub in epis[0].get(group) or {}:
            column(lambda epi, group=group, sub=sub: epi[group][sub], f"{group}/{sub}")
    return pd.DataFrame(data)


def _check_steps(steps: np.ndarray, epi_ids: np.ndarray, starts: np.ndarray) -> None:
    """Each episode's sorted ``t`` must be ``0..T-1`` once each: a repeated or missing step
    would otherwise merge episodes or close a gap silently."""
    lengths = np.diff(np.append(starts, len(steps)))
    expected = np.arange(len(steps)) - np.repeat(starts, lengths)
    bad = np.flatnonzero(steps != expected)
    if len(bad) == 0:
        return
    i = int(np.searchsorted(starts, bad[0], side="right")) - 1
    row = int(bad[0] - starts[i])
    raise ValueError(
        f"df: episode {epi_ids[i]}: expected t = 0..T-1 once each, got t = {steps[bad[0]]} "
        f"at its sorted row {row} of {lengths[i]}: t must start at 0 and go up by 1; its "
        "'epi' id repeats or rows are missing (concatenated to_dataframe frames need distinct "
        "'epi' ids, e.g. offset each frame's)"
    )


def _check_entries(key: str, shape: tuple[int, ...], present: set[tuple[int, ...]]) -> None:
    """Every ``key[i,...]`` column up to ``shape`` must be there: a missing one would leave its
    entries uninitialised."""
    missing = [i for i in np.ndindex(*shape) if i not in present]
    if missing:
        names = ", ".join(f"{key}[{','.join(map(str, i))}]" for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(
            f"df: expected columns {key}[...] for every entry of shape {shape}, "
            f"missing {names}{more}"
        )


def from_dataframe(df: Any) -> list[Epi]:
    """Episodes from a :func:`to_dataframe` frame (rows grouped by ``epi``, ordered by ``t``).

    Returns
    -------
    list of dict
        One dict per ``epi`` value, in ascending order; ``a_is/...`` and ``e_is/...`` columns
        become the ``a_is`` / ``e_is`` dicts, ``name[i,j]`` columns one array of shape
        ``(T, max i + 1, max j + 1)``.

    Raises
    ------
    ValueError
        When an episode's ``t`` is not ``0..T-1`` once each (its ``epi`` id repeats, as in
        concatenated frames each numbered from 0, or rows are missing), or a ``name[i,...]``
        column is missing.
    """
    for required in ("epi", "t"):
        if required not in df.columns:
            raise ValueError(f"df: expected a column {required!r} (to_dataframe's), got none")
    df = df.sort_values(["epi", "t"], kind="stable")
    epi_ids, starts = np.unique(df["epi"].to_numpy(), return_index=True)
    bounds = list(starts) + [len(df)]
    _check_steps(df["t"].to_numpy(), epi_ids, starts)
    arrays: dict[str, np.ndarray] = {}
    entries: dict[str, list[tuple[tuple[int, ...], str]]] = {}
    for name in df.columns:
        if name in ("epi", "t"):
            continue
        match = _COLUMN.match(str(name))
        if match is None:
            raise ValueError(f"df: column {name!r} is not 'key' or 'key[i,...]'")
        key, index = match["key"], match["index"]
        if index is None:
            arrays[key] = df[name].to_numpy()
        else:
            entries.setdefault(key, []).append((tuple(map(int, index.split(","))), name))
    for key, parts in entries.items():
        ranks = sorted({len(i) for i, _ in parts})
        if len(ranks) > 1:  # obs[0] beside obs[1,2]: no one shape holds both
            raise ValueError(
                f"df: columns {key}[...] index {' and '.join(map(str, ranks))} dimensions; "
                "expected one number of indices for every entry of a key"
            )
        shape = tuple(max(i[d] for i, _ in parts) + 1 for d in range(len(parts[0][0])))
        _check_entries(key, shape, {i for i, _ in parts})
        first = df[parts[0][1]].to_numpy()
        values = np.empty((len(df), *shape), dtype=first.dtype)
        for index, name in parts:
            where: tuple[Any, ...] = (slice(None), *index)
            values[where] = df[name].to_numpy()
        arrays[key] = values
    epis = []
    for i in range(len(epi_ids)):
        rows = slice(bounds[i], bounds[i + 1])
        epi: Epi = {group: {} for group in GROUPS}
        for key, values in arrays.items():
            group, _, sub = key.partition("/")
            if group in GROUPS and sub:
                epi[group][sub] = values[rows]
            else:
                epi[key] = values[rows]
        epis.append(epi)
    _warn_unflagged_ends(arrays, epi_ids, np.asarray(bounds[1:], dtype=np.int64) - 1)
    return epis


def _warn_unflagged_ends(
    arrays: dict[str, np.ndarray], epi_ids: np.ndarray, last: np.ndarray
) -> None:
    """Warn of episodes whose last row has none of the end flags the frame holds (``terms``,
    ``truncs``, ``dones``): a sampler ends every episode with one, so rows are likely missing
    at their end (``t`` cannot show that), and the estimators would take the cut for an end."""
    flags = [arrays[k][last].astype(bool) for k in ("terms", "truncs", "dones") if k in arrays]
    if not flags:
        return
    unflagged = ~np.logical_or.reduce(flags)
    if unflagged.any():
        ids = epi_ids[unflagged]
        warnings.warn(
            f"df: {len(ids)} episode(s) end on a row with no end flag (epi {ids[:5].tolist()}"
            f"{' ...' if len(ids) > 5 else ''}): rows missing at their end? Every sampled "
            "episode ends terminated or truncated",
            stacklevel=3,
        )
