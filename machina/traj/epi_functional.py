"""Estimators over whole episodes: values, returns, advantages and masks.

Every function takes either a ``Traj`` (it reads the pending episodes added with
``add_epis``) or a list of episodes, and returns a new object of the same kind with the new
keys; the input is left untouched and arrays that are not changed are shared, not copied.
Each is written once, over flat arrays of all episodes plus their lengths (``Columns``);
``machina.traj._episodes.episode_function`` adapts it to a Traj or a list.

Termination and truncation are kept apart: an episode that ended by ``terms`` bootstraps
from 0, one cut by a time limit (``truncs``) bootstraps from V of its real final
observation, ``next_vs`` at its last step (added by ``compute_vs``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from machina.traj._episodes import Columns, episode_function
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

# Rows of observations per value-function call: bounds memory on million-step batches.
_VF_CHUNK = 65536
_VF_RNN_CHUNK = 256


@episode_function
def compute_vs(data: Columns, vf: torch.nn.Module) -> dict[str, np.ndarray]:
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
    next_obs = data.require(
        "next_obs", "compute_vs", "ef.add_next_obs (EpiSampler episodes carry it)"
    )
    obs = data.require("obs", "compute_vs")
    last = data.last
    final_obs = next_obs[last]
    with torch.no_grad():
        if getattr(vf, "rnn", False):
            vs, final_vs = _values_rnn(vf, obs, final_obs, data.lengths)
        else:
            vs, final_vs = _values_ff(vf, obs), _values_ff(vf, final_obs)
    next_vs = np.empty_like(vs)
    next_vs[:-1] = vs[1:]
    next_vs[last] = final_vs
    return {"vs": vs, "next_vs": next_vs}


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
    vf: torch.nn.Module, obs: np.ndarray, final_obs: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run each episode's obs followed by its final next_obs as one sequence.

    ``obs`` is (N, *ob_shape) flat, ``final_obs`` (n_epi, *ob_shape); episodes go through
    ``vf`` time-major and zero-padded, ``_VF_RNN_CHUNK`` at a time.
    """
    device = _param_device(vf)
    starts = np.cumsum(lengths) - lengths
    vs = np.empty(len(obs), dtype=np.float32)
    final_vs = np.empty(len(lengths), dtype=np.float32)
    for lo in range(0, len(lengths), _VF_RNN_CHUNK):
        chunk_lengths = lengths[lo : lo + _VF_RNN_CHUNK]
        n = len(chunk_lengths)
        t = np.arange(int(chunk_lengths.max()) + 1)[:, None]
        real = t < chunk_lengths[None, :]  # (T_max + 1, n): the episode's own steps
        steps = (starts[lo : lo + n][None, :] + t)[real]  # flat indices, in padded order
        padded = np.zeros((len(t), n, *obs.shape[1:]), dtype=np.float32)
        padded[real] = obs[steps]
        padded[chunk_lengths, np.arange(n)] = final_obs[lo : lo + n]
        h_masks = torch.zeros(len(t), n, 1, device=device)
        h_masks[0] = 1.0
        vf.reset()
        out = vf(torch.as_tensor(padded, device=device), h_masks=h_masks)[0]
        out = out.reshape(len(t), n).cpu().numpy()
        vs[steps] = out[real]
        final_vs[lo : lo + n] = out[chunk_lengths, np.arange(n)]
    vf.reset()
    return vs, final_vs


def _terms(data: Columns) -> np.ndarray:
    """Terminated flags; episodes without ``terms`` (old data) count every end as terminal."""
    key = "terms" if "terms" in data else "dones"
    return data.require(key, "the estimators", "a sampler that records 'terms' and 'truncs'")


def _bootstrap_values(data: Columns, fn_name: str) -> np.ndarray:
    """``next_vs``, or zeros when no episode is truncated and none were computed."""
    if "next_vs" in data:
        return data["next_vs"]
    if "truncs" in data:
        last = data.last
        truncated = data["truncs"][last].astype(bool)
        if "terms" in data:
            truncated &= ~data["terms"][last].astype(bool)
        n_trunc = int(truncated.sum())
        if n_trunc:
            raise KeyError(
                f"{fn_name}: {n_trunc} truncated episode(s) need 'next_vs' to bootstrap from; "
                "call ef.compute_vs(data, vf) first"
            )
    return np.zeros(data.num_step)


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
        Rewards, V(next observation) and terminated flags, each (N,). Only an episode's
        last step can be terminal: ``terms`` is read there alone.
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
    rews, next_vs, terms = np.asarray(rews), np.asarray(next_vs), np.asarray(terms)
    lengths = np.asarray(lengths, dtype=np.int64)
    n = int(lengths.sum())
    for name, arr in (("rews", rews), ("next_vs", next_vs), ("terms", terms)):
        if np.shape(arr) != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {np.shape(arr)}")
    last = np.cumsum(lengths) - 1
    # Inside an episode only a (1 - lam) share of V(s[t+1]) enters; at its end all of it,
    # unless the episode terminated.
    # (Casting once, then operating in place, is 2x faster than numpy's mixed-type ufuncs.)
    x = next_vs.astype(np.float64)
    x *= gamma * (1.0 - lam)
    x[last] = gamma * np.where(terms[last], 0.0, next_vs[last])
    x += rews
    return reverse_discounted_sum(x, gamma * lam, lengths, out=x)


@episode_function
def compute_rets(data: Columns, gamma: float) -> dict[str, np.ndarray]:
    """Add ``rets`` (T,) float32, discounted returns bootstrapped at truncation.

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``rews`` (T,), ``terms`` (T,), ``truncs`` (T,) and, when any episode
        is truncated, ``next_vs`` (T,) from ``compute_vs``.
    gamma : float
        Discount factor in [0, 1].
    """
    next_vs = _bootstrap_values(data, "compute_rets")
    rews = data.require("rews", "compute_rets")
    rets = lambda_returns(rews, next_vs, _terms(data), data.lengths, gamma, 1.0)
    return {"rets": rets.astype(np.float32)}


@episode_function
def compute_advs(data: Columns, gamma: float, lam: float) -> dict[str, np.ndarray]:
    """Add ``advs`` (T,) float32, generalised advantage estimates (Schulman et al., 2016).

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``rews``, ``terms``, ``vs`` and ``next_vs`` (T,) from ``compute_vs``.
    gamma, lam : float
        Discount and GAE lambda, each in [0, 1].
    """
    vs = data.require("vs", "compute_advs", "ef.compute_vs(data, vf)")
    next_vs = _bootstrap_values(data, "compute_advs")
    rews = data.require("rews", "compute_advs")
    advs = lambda_returns(rews, next_vs, _terms(data), data.lengths, gamma, lam)
    advs -= vs
    return {"advs": advs.astype(np.float32)}


@episode_function
def centerize_advs(data: Columns, eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Normalise ``advs`` to zero mean and unit standard deviation over all episodes."""
    advs = data.require("advs", "centerize_advs", "ef.compute_advs(data, gamma, lam)")
    advs = advs.astype(np.float64)
    advs -= advs.mean()
    # The standard deviation by einsum: no temporary arrays, 3x faster than advs.std() here.
    std = np.sqrt(np.einsum("i,i->", advs, advs) / max(len(advs), 1))
    advs *= 1.0 / (std + eps)
    return {"advs": advs.astype(np.float32)}


@episode_function
def compute_h_masks(data: Columns) -> dict[str, np.ndarray]:
    """Add ``h_masks`` (T,) float32: 1 at each episode's first step, where a recurrent
    network's hidden state is reset, 0 elsewhere."""
    h_masks = np.zeros(data.num_step, dtype=np.float32)
    h_masks[data.starts] = 1.0
    return {"h_masks": h_masks}


@episode_function
def add_next_obs(data: Columns) -> dict[str, np.ndarray]:
    """Make sure every episode has ``next_obs`` (T, *ob_shape).

    Episodes from ``EpiSampler`` already carry the true next observations and are returned
    as they are. For episodes recorded without them, ``next_obs[t] = obs[t + 1]``; the final
    observation was never stored, so the last step repeats ``obs[-1]`` and a warning says
    that those episodes cannot be bootstrapped correctly if they were truncated.
    """
    if "next_obs" in data:
        return {}
    obs = data.require("obs", "add_next_obs")
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    last = data.last
    next_obs[last] = obs[last]
    warnings.warn(
        "add_next_obs: episodes without 'next_obs' lack their final observation; the last step "
        "repeats obs[-1]",
        stacklevel=3,
    )
    return {"next_obs": next_obs}
