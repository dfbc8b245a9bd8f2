"""Estimators over whole episodes: values, returns, advantages, masks, priorities, n-step,
normalisation.

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

import math
import warnings

import numpy as np
import torch

from machina.loss_functional import q as lf_q
from machina.loss_functional import sac as lf_sac
from machina.traj import _replay
from machina.traj._diayn_rews import compute_diayn_rews
from machina.traj._episodes import Columns, episode_function
from machina.traj._hidden_states import compute_hs
from machina.traj._modules import chunked_no_grad, module_device
from machina.traj._normalize import normalize_obs_and_acs
from machina.traj._pseudo_rews import compute_airl_pseudo_rews, compute_pseudo_rews
from machina.traj._replay import window_counts, window_pris, window_starts
from machina.traj._scan import reverse_discounted_sum
from machina.traj._split import train_test_split
from machina.utils.ends import terminated
from machina.utils.tensors import to_numpy

__all__ = [
    "add_next_obs",
    "centerize_advs",
    "compute_advs",
    "compute_airl_pseudo_rews",
    "compute_diayn_rews",
    "compute_h_masks",
    "compute_hs",
    "compute_nstep",
    "compute_pris",
    "compute_pseudo_rews",
    "compute_rets",
    "compute_seq_pris",
    "compute_vs",
    "lambda_returns",
    "normalize_obs_and_acs",
    "set_all_pris",
    "train_test_split",
]

# Episodes per recurrent value-function call: bounds the padded (T, B) batch.
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


def _values_ff(vf: torch.nn.Module, obs: np.ndarray) -> np.ndarray:
    device = module_device(vf)

    def values(rows: slice) -> torch.Tensor:
        batch = torch.as_tensor(obs[rows], dtype=torch.float32, device=device)
        out = vf(batch)[0]
        if out.numel() != len(batch):  # e.g. (B, 2): reshaped, it misaligned every value
            raise ValueError(
                f"vf: expected one value per observation, (B,) or (B, 1), got shape "
                f"{tuple(out.shape)} for B={len(batch)} observations"
            )
        return out.reshape(-1)

    return chunked_no_grad(len(obs), values)


def _values_rnn(
    vf: torch.nn.Module, obs: np.ndarray, final_obs: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run each episode's obs followed by its final next_obs as one sequence.

    ``obs`` is (N, *ob_shape) flat, ``final_obs`` (n_epi, *ob_shape); episodes go through
    ``vf`` time-major and zero-padded, ``_VF_RNN_CHUNK`` at a time.
    """
    device = module_device(vf)
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
        out = to_numpy(out.reshape(len(t), n), bfloat16_as_float32=True)
        vs[steps] = out[real]
        final_vs[lo : lo + n] = out[chunk_lengths, np.arange(n)]
    vf.reset()
    return vs, final_vs


def _terms(data: Columns) -> np.ndarray:
    """Terminated flags; episodes without ``terms`` (old data) count every ``dones`` end as
    terminal but those ``truncs`` marks truncated (``dones`` is either; an end both
    terminated and truncated needs ``terms`` to be read as terminated)."""
    if "terms" not in data:
        data.require("dones", "the estimators", "a sampler that records 'terms' and 'truncs'")
    return terminated(data)


def _bootstrap_values(data: Columns, fn_name: str, vs: np.ndarray | None = None) -> np.ndarray:
    """``next_vs``; when none were computed and no episode is truncated, ``vs`` of the next
    step inside each episode and 0 at its end (machina 0.x's ``compute_advs`` read only
    ``vs``), or zeros without ``vs`` (read only at episode ends, where they are 0)."""
    if "next_vs" in data:
        return data["next_vs"]
    last = data.last
    flagged = data["truncs"][last].astype(bool) if "truncs" in data else False
    if "terms" in data or "truncs" in data:
        # every end not terminated bootstraps: truncated, or cut (a rollout segment that
        # ends with neither flag), as lambda_returns reads _terms
        truncated = ~np.asarray(_terms(data))[last].astype(bool)
    else:  # dones alone (machina 0.x): every end terminal
        truncated = np.zeros(len(last), bool)
    n_trunc = int(truncated.sum())
    if n_trunc:
        n_cut = int((truncated & ~flagged).sum())
        cut = (
            f" ({n_cut} ending with neither terms nor truncs: cut, treated as truncated)"
            if n_cut
            else ""
        )
        raise KeyError(
            f"{fn_name}: {n_trunc} truncated episode(s){cut} need 'next_vs' to bootstrap "
            "from; call ef.compute_vs(data, vf) first"
        )
    if vs is None:
        return np.zeros(data.num_step)
    next_vs = np.zeros(data.num_step, dtype=np.float64)
    next_vs[:-1] = vs[1:]
    next_vs[data.last] = 0.0  # every episode ends terminated here: nothing to bootstrap
    return next_vs


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
def compute_rets(data: Columns, gamma: float, lam: float = 1.0) -> dict[str, np.ndarray]:
    """Add ``rets`` (T,) float32, discounted returns bootstrapped at truncation, or with
    ``lam < 1`` TD(lambda) returns: value targets of less variance than whole-episode sums.

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``rews`` (T,), ``terms`` (T,), ``truncs`` (T,) and, when any episode
        is truncated or ``lam < 1``, ``next_vs`` (T,) from ``compute_vs``.
    gamma : float
        Discount factor in [0, 1].
    lam : float
        TD(lambda)'s lambda in [0, 1]; 1 (the default) gives discounted returns. With the
        ``lam`` of ``compute_advs``, ``rets = advs + vs`` (GAE's value target).
    """
    if lam == 1.0:
        next_vs = _bootstrap_values(data, "compute_rets")
    else:  # every step bootstraps a (1 - lam) share from V(next obs)
        next_vs = data.require("next_vs", "compute_rets (lam < 1)", "ef.compute_vs(data, vf)")
    rews = data.require("rews", "compute_rets")
    rets = lambda_returns(rews, next_vs, _terms(data), data.lengths, gamma, lam)
    return {"rets": rets.astype(np.float32)}


@episode_function
def compute_advs(data: Columns, gamma: float, lam: float) -> dict[str, np.ndarray]:
    """Add ``advs`` (T,) float32, generalised advantage estimates (Schulman et al., 2016).

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``rews``, ``terms``, ``vs`` and ``next_vs`` (T,) from ``compute_vs``.
        Without ``next_vs`` (episodes given ``vs`` by other means, as in machina 0.x),
        V(s[t+1]) is the next step's ``vs`` and 0 after an episode's last step, which then
        must not be truncated (nor cut: with a ``terms`` column, a last step with neither
        ``terms`` nor ``truncs`` set is treated as truncated).
    gamma, lam : float
        Discount and GAE lambda, each in [0, 1].
    """
    vs = data.require("vs", "compute_advs", "ef.compute_vs(data, vf)")
    next_vs = _bootstrap_values(data, "compute_advs", vs)
    rews = data.require("rews", "compute_advs")
    advs = lambda_returns(rews, next_vs, _terms(data), data.lengths, gamma, lam)
    advs -= vs
    return {"advs": advs.astype(np.float32)}


@episode_function
def centerize_advs(data: Columns, eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Normalise ``advs`` to zero mean and unit standard deviation over all episodes
    (``eps`` >= 0 added to the standard deviation)."""
    if not 0.0 <= eps < math.inf:  # a negative one inflated the advantages, NaN made them NaN
        raise ValueError(f"eps: expected a finite float >= 0, got {eps!r}")
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


# ------------------------------------------------------------------ replay memory
@episode_function
def set_all_pris(data: Columns, pri: float | torch.Tensor) -> dict[str, np.ndarray]:
    """Add ``pris`` (T,) float32, every step's priority set to ``pri``.

    New episodes usually get the replay memory's highest priority,
    ``ef.set_all_pris(traj, off_traj.get_max_pri())``, so that each is replayed soon.
    """
    pri = float(pri)
    if not (np.isfinite(pri) and pri > 0.0):
        raise ValueError(f"pri: expected a finite positive priority, got {pri!r}")
    return {"pris": np.full(data.num_step, pri, dtype=np.float32)}


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a float in [0, 1], got {value!r}")


@episode_function
def compute_pris(
    data: Columns,
    qf: torch.nn.Module,
    targ_qf: torch.nn.Module,
    pol: torch.nn.Module | None,
    gamma: float,
    continuous: bool = True,
    deterministic: bool = True,
    rnn: bool = False,
    sampling: int = 1,
    alpha: float = 0.6,
    epsilon: float = 1e-6,
    log_alpha: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Add ``pris`` (T,) float32: ``(|td| + epsilon) ** alpha`` from the current networks.

    ``td = Q(s, a) - y`` with the one-step target ``y`` of the algorithm being trained,
    bootstrapped through truncation (``next_obs``), not through termination:

    - ``continuous`` and ``deterministic`` (DDPG): ``y = r + gamma * Q'(s', pol(s'))``;
    - ``continuous`` and not ``deterministic`` (SAC): the soft target with ``sampling``
      actions from ``pol`` and temperature ``exp(log_alpha)`` (0 when None);
    - not ``continuous`` (double DQN): ``y = r + gamma * Q'(s', argmax_a Q(s', a))``.

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``obs``, ``acs``, ``rews``, ``next_obs`` and ``terms``.
    qf, targ_qf : torch.nn.Module
        Feed-forward Q function and its target.
    pol : torch.nn.Module or None
        The policy whose action at ``next_obs`` the target evaluates (``targ_pol`` for
        DDPG); unused when not ``continuous``.
    gamma : float
        Discount.
    rnn : bool
        Must be False: recurrent learners give new episodes the maximum priority
        (``set_all_pris``) and update it from their sequence batches.
    alpha, epsilon : float
        Priority exponent and the floor that keeps every step drawable.
    """
    if rnn or getattr(qf, "rnn", False):
        raise ValueError(
            "compute_pris: qf: recurrent Q functions are not supported; give new episodes "
            "ef.set_all_pris(traj, off_traj.get_max_pri()) and let training update them"
        )
    _check_unit("gamma", gamma)
    _replay.check_epsilon(epsilon)
    _replay.check_alpha(alpha)
    device = module_device(qf)
    keys = ("obs", "acs", "rews", "next_obs")
    columns = {k: data.require(k, "compute_pris") for k in keys}
    columns["terms"] = _terms(data)

    def pris(rows: slice) -> torch.Tensor:
        batch = {k: torch.as_tensor(v[rows], device=device) for k, v in columns.items()}
        for k in ("obs", "next_obs", "rews"):
            batch[k] = batch[k].to(torch.float32)
        if not continuous:
            targets = lf_q.dqn_targets(qf, targ_qf, batch, gamma)
        elif deterministic:
            targets = lf_q.ddpg_targets(pol, targ_qf, batch, gamma)
        else:
            temp = torch.tensor(-np.inf, device=device) if log_alpha is None else log_alpha
            targets = lf_sac.sac_targets(pol, [targ_qf], temp, batch, gamma, sampling)
        td = qf(batch["obs"], batch["acs"])[0] - targets
        return (td.abs() + epsilon) ** alpha

    return {"pris": chunked_no_grad(data.num_step, pris)}


@episode_function
def compute_seq_pris(data: Columns, seq_length: int, eta: float = 0.9) -> dict[str, np.ndarray]:
    """Add ``seq_pris`` (T,) float32: the priority of the window starting at each step.

    A window is ``seq_length`` steps of one episode (see ``Traj.random_batch_rnn``); its
    priority is ``eta * max + (1 - eta) * mean`` of its steps' ``pris`` (R2D2, Kapturowski
    et al., 2019). Steps where no window starts (the last ``seq_length - 1`` of an episode
    longer than ``seq_length``) get 0, so that ``prioritized_random_batch_rnn`` never draws
    them; an episode shorter than ``seq_length`` has one window, at its first step.

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``pris`` (T,) from ``set_all_pris`` or ``compute_pris``.
    seq_length : int
        Window length L, the one given to ``prioritized_random_batch_rnn``.
    eta : float
        Weight of the maximum, in [0, 1].
    """
    seq_length = _replay.check_count("seq_length", seq_length)
    _check_unit("eta", eta)
    pris = torch.as_tensor(data.require("pris", "compute_seq_pris", "ef.set_all_pris"))
    index = np.concatenate([[0], data.ends])
    starts = window_starts(index, seq_length)
    ends = np.repeat(data.ends, window_counts(data.lengths, seq_length))
    seq_pris = np.zeros(data.num_step, dtype=np.float32)
    seq_pris[starts] = window_pris(
        pris, torch.as_tensor(starts), torch.as_tensor(ends), seq_length, eta
    ).numpy()
    return {"seq_pris": seq_pris}


@episode_function
def compute_nstep(data: Columns, gamma: float, n: int) -> dict[str, np.ndarray]:
    """Add n-step transitions for off-policy targets ``nstep_rews + nstep_discounts * V(s')``.

    With ``k = min(n, steps left in the episode)``:

    - ``nstep_rews`` (T,) float32: ``sum_{j<k} gamma^j r[t+j]``;
    - ``nstep_next_obs`` (T, *ob_shape): ``next_obs[t+k-1]``, the observation after those k
      steps (at an episode's end, the final observation gymnasium returned);
    - ``nstep_discounts`` (T,) float32: ``gamma^k``, or 0 when step ``t+k-1`` terminated.

    The sums stop at episode ends; a truncated episode still bootstraps from its final
    observation. ``n = 1`` gives the one-step transition (``rews``, ``next_obs``).

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``rews``, ``next_obs`` and ``terms``.
    gamma : float
        Discount in [0, 1].
    n : int
        Steps summed, >= 1.
    """
    n = _replay.check_count("n", n)
    _check_unit("gamma", gamma)
    rews = data.require("rews", "compute_nstep").astype(np.float64)
    next_obs = data.require(
        "next_obs", "compute_nstep", "ef.add_next_obs (EpiSampler episodes carry it)"
    )
    terms = _terms(data).astype(bool)
    num = data.num_step
    t = np.arange(num)
    end = np.repeat(data.ends, data.lengths)  # one past each step's episode end
    k = np.minimum(n, end - t)
    # One array pass per summed step, no step loop over the data; never more passes than
    # the longest episode's steps (an n far above them, Monte-Carlo targets, adds only 0s).
    acc = np.zeros(num)
    for j in range(int(k.max()) if num else 0):
        acc += np.where(j < k, gamma**j * rews[np.minimum(t + j, num - 1)], 0.0)
    last = t + k - 1
    terminated = terms[last] & (last == end - 1)
    discounts = np.where(terminated, 0.0, np.float64(gamma) ** k)
    return {
        "nstep_rews": acc.astype(np.float32),
        "nstep_next_obs": next_obs[last],
        "nstep_discounts": discounts.astype(np.float32),
    }
