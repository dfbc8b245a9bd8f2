"""Estimators over whole episodes: values, returns, advantages and masks.

Every function takes either a ``Traj`` (it reads the pending episodes added with
``add_epis``) or a list of episodes, and returns a new object of the same kind with the new
keys; the input is left untouched and arrays that are not changed are shared, not copied.
The arithmetic runs over all episodes at once on flat arrays.

Termination and truncation are kept apart: an episode that ended by ``terms`` bootstraps
from 0, one cut by a time limit (``truncs``) bootstraps from V of its real final
observation, ``next_vs`` at its last step (added by ``compute_vs``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from machina.traj._episodes import (
    concat,
    episode_function,
    last_steps,
    lengths_of,
    require,
    split_into,
)
from machina.traj._scan import reverse_discounted_sum

__all__ = [
    "add_next_obs",
    "centerize_advs",
    "compute_advs",
    "compute_h_masks",
    "compute_rets",
    "compute_vs",
    "lambda_returns",
]

Epi = dict
# Rows of observations per value-function call: bounds memory on million-step batches.
_VF_CHUNK = 65536
_VF_RNN_CHUNK = 256


@episode_function
def compute_vs(data: Sequence[Epi], vf: torch.nn.Module) -> list[Epi]:
    """Add ``vs`` = V(obs) and ``next_vs`` = V(next_obs), each (T,) float32.

    ``next_vs[t]`` equals ``vs[t + 1]`` inside an episode; at the last step it is V of the
    final observation gymnasium returned, which truncated episodes bootstrap from.
    A recurrent ``vf`` (``vf.rnn``) runs each episode from a fresh hidden state.

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``obs`` (T, *ob_shape) and ``next_obs`` (T, *ob_shape).
    vf : torch.nn.Module
        ``vf(obs) -> (vs, info)`` as ``machina.vfuncs.DeterministicSVfunc``.
    """
    require(data, "next_obs", "compute_vs", "ef.add_next_obs (EpiSampler episodes carry it)")
    lengths = lengths_of(data)
    obs = concat(data, "obs", lengths)
    final_obs = np.stack([np.asarray(epi["next_obs"][-1]) for epi in data])
    with torch.no_grad():
        if getattr(vf, "rnn", False):
            vs, final_vs = _values_rnn(vf, data, lengths)
        else:
            vs, final_vs = _values_ff(vf, obs), _values_ff(vf, final_obs)
    next_vs = np.empty_like(vs)
    next_vs[:-1] = vs[1:]
    next_vs[last_steps(lengths)] = final_vs
    return split_into(data, lengths, vs=vs, next_vs=next_vs)


def _param_device(module: torch.nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _values_ff(vf: torch.nn.Module, obs: np.ndarray) -> np.ndarray:
    device = _param_device(vf)
    out = []
    for start in range(0, len(obs), _VF_CHUNK):
        chunk = torch.as_tensor(obs[start : start + _VF_CHUNK], dtype=torch.float32, device=device)
        out.append(vf(chunk)[0].reshape(-1).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def _values_rnn(
    vf: torch.nn.Module, epis: Sequence[Epi], lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run each episode's obs followed by its final next_obs as one sequence."""
    device = _param_device(vf)
    vs, final_vs = [], []
    for start in range(0, len(epis), _VF_RNN_CHUNK):
        chunk = epis[start : start + _VF_RNN_CHUNK]
        seqs = [np.concatenate([epi["obs"], epi["next_obs"][-1:]]) for epi in chunk]
        t_max = max(len(s) for s in seqs)
        padded = np.zeros((t_max, len(seqs), *seqs[0].shape[1:]), dtype=np.float32)
        for i, seq in enumerate(seqs):
            padded[: len(seq), i] = seq
        h_masks = torch.zeros(t_max, len(seqs), 1, device=device)
        h_masks[0] = 1.0
        vf.reset()
        out = vf(torch.as_tensor(padded, device=device), h_masks=h_masks)[0]
        out = out.reshape(t_max, len(seqs)).cpu().numpy()
        for i, seq in enumerate(seqs):
            vs.append(out[: len(seq) - 1, i])
            final_vs.append(out[len(seq) - 1, i])
    vf.reset()
    return np.concatenate(vs).astype(np.float32), np.asarray(final_vs, dtype=np.float32)


def _terms(epis: Sequence[Epi], lengths: np.ndarray) -> np.ndarray:
    """Terminated flags; episodes without ``terms`` (old data) count every end as terminal."""
    key = "terms" if all("terms" in epi for epi in epis) else "dones"
    require(epis, key, "the estimators", "a sampler that records 'terms' and 'truncs'")
    return concat(epis, key, lengths).astype(bool)


def _bootstrap_values(epis: Sequence[Epi], lengths: np.ndarray, fn_name: str) -> np.ndarray:
    """``next_vs``, or zeros when no episode is truncated and none were computed."""
    if all("next_vs" in epi for epi in epis):
        return concat(epis, "next_vs", lengths).astype(np.float64)
    n_trunc = sum(
        bool(np.asarray(epi.get("truncs", [False]))[-1])
        and not bool(np.asarray(epi.get("terms", [False]))[-1])
        for epi in epis
    )
    if n_trunc:
        raise KeyError(
            f"{fn_name}: {n_trunc} truncated episode(s) need 'next_vs' to bootstrap from; "
            "call ef.compute_vs(data, vf) first"
        )
    return np.zeros(int(lengths.sum()))


def lambda_returns(
    rews: np.ndarray,
    next_vs: np.ndarray,
    terms: np.ndarray,
    lengths: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """TD(lambda) returns of concatenated episodes.

    ``G[t] = r[t] + gamma * ((1 - lam) * V(s[t+1]) + lam * G[t+1])`` inside an episode and
    ``G[T-1] = r[T-1] + gamma * (1 - term) * V(s_T)`` at its end, so a truncated episode is
    bootstrapped and a terminated one is not. ``lam = 1`` gives discounted returns;
    ``G - V(s)`` is the GAE advantage.

    Parameters
    ----------
    rews, next_vs, terms : np.ndarray
        Rewards, V(next observation) and terminated flags, each (N,).
    lengths : np.ndarray
        Episode lengths, (n_epi,), summing to N.
    gamma, lam : float
        Discount and lambda, each in [0, 1].

    Returns
    -------
    np.ndarray
        (N,) float64.
    """
    for name, value in (("gamma", gamma), ("lam", lam)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}: expected a float in [0, 1], got {value!r}")
    n = int(np.sum(lengths))
    for name, arr in (("rews", rews), ("next_vs", next_vs), ("terms", terms)):
        if np.shape(arr) != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {np.shape(arr)}")
    not_last = np.ones(n)
    not_last[last_steps(lengths)] = 0.0
    # Inside an episode only a (1 - lam) share of V(s[t+1]) enters; at its end all of it,
    # unless the episode terminated.
    bootstrap = next_vs * (1.0 - np.asarray(terms, dtype=np.float64)) * (1.0 - lam * not_last)
    x = np.asarray(rews, dtype=np.float64) + gamma * bootstrap
    return reverse_discounted_sum(x, gamma * lam, lengths)


@episode_function
def compute_rets(data: Sequence[Epi], gamma: float) -> list[Epi]:
    """Add ``rets`` (T,) float32, discounted returns bootstrapped at truncation.

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``rews`` (T,), ``terms`` (T,), ``truncs`` (T,) and, when any episode
        is truncated, ``next_vs`` (T,) from ``compute_vs``.
    gamma : float
        Discount factor in [0, 1].
    """
    lengths = lengths_of(data)
    rews = concat(data, "rews", lengths)
    next_vs = _bootstrap_values(data, lengths, "compute_rets")
    rets = lambda_returns(rews, next_vs, _terms(data, lengths), lengths, gamma, 1.0)
    return split_into(data, lengths, rets=rets.astype(np.float32))


@episode_function
def compute_advs(data: Sequence[Epi], gamma: float, lam: float) -> list[Epi]:
    """Add ``advs`` (T,) float32, generalised advantage estimates (Schulman et al., 2016).

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``rews``, ``terms``, ``vs`` and ``next_vs`` (T,) from ``compute_vs``.
    gamma, lam : float
        Discount and GAE lambda, each in [0, 1].
    """
    require(data, "vs", "compute_advs", "ef.compute_vs(data, vf)")
    lengths = lengths_of(data)
    rews = concat(data, "rews", lengths)
    vs = concat(data, "vs", lengths).astype(np.float64)
    next_vs = _bootstrap_values(data, lengths, "compute_advs")
    advs = lambda_returns(rews, next_vs, _terms(data, lengths), lengths, gamma, lam) - vs
    return split_into(data, lengths, advs=advs.astype(np.float32))


@episode_function
def centerize_advs(data: Sequence[Epi], eps: float = 1e-6) -> list[Epi]:
    """Normalise ``advs`` to zero mean and unit standard deviation over all episodes."""
    require(data, "advs", "centerize_advs", "ef.compute_advs(data, gamma, lam)")
    lengths = lengths_of(data)
    advs = concat(data, "advs", lengths).astype(np.float64)
    advs = (advs - advs.mean()) / (advs.std() + eps)
    return split_into(data, lengths, advs=advs.astype(np.float32))


@episode_function
def compute_h_masks(data: Sequence[Epi]) -> list[Epi]:
    """Add ``h_masks`` (T,) float32: 1 at each episode's first step, where a recurrent
    network's hidden state is reset, 0 elsewhere."""
    lengths = lengths_of(data)
    h_masks = np.zeros(int(lengths.sum()), dtype=np.float32)
    h_masks[np.cumsum(lengths) - lengths] = 1.0
    return split_into(data, lengths, h_masks=h_masks)


@episode_function
def add_next_obs(data: Sequence[Epi]) -> list[Epi]:
    """Make sure every episode has ``next_obs`` (T, *ob_shape).

    Episodes from ``EpiSampler`` already carry the true next observations and are returned
    as they are. For episodes recorded without them, ``next_obs[t] = obs[t + 1]``; the final
    observation was never stored, so the last step repeats ``obs[-1]`` and a warning says
    that those episodes cannot be bootstrapped correctly if they were truncated.
    """
    if all("next_obs" in epi for epi in data):
        return list(data)
    lengths = lengths_of(data)
    obs = concat(data, "obs", lengths)
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    last = last_steps(lengths)
    next_obs[last] = obs[last]
    warnings.warn(
        "add_next_obs: episodes without 'next_obs' lack their final observation; the last step "
        "repeats obs[-1]",
        stacklevel=3,
    )
    return split_into(data, lengths, next_obs=next_obs)
