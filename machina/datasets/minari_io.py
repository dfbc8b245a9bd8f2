"""Episodes to and from Minari datasets (https://minari.farama.org), offline.

Minari stores an episode of ``T`` steps as ``T + 1`` observations (the reset one and one per
step), ``T`` actions for the environment, ``T`` rewards, terminations and truncations, and
infos of ``T + 1`` rows (the reset info, then one per step). machina stores ``obs`` and
``next_obs`` of ``T`` rows each, and ``acs`` in the *policy's* action space: a Gaussian
policy's sample before it is scaled to the Box bounds and clipped. So:

- ``observations = obs + [next_obs[-1]]``; back: ``obs = observations[:-1]``,
  ``next_obs = observations[1:]``.
- ``actions = pol.convert_ac_for_real(acs)``, the actions the environment received; machina's
  own ``acs`` are kept too, in ``infos["acs"]`` (row ``t`` for step ``t``, the last row
  padded), and come back exactly. Without them (a dataset another tool wrote) ``acs`` are
  the actions mapped back through ``pol``'s bounds (see ``env_to_policy_acs``).
- ``e_is[k]`` (the info of step ``t``) is ``infos[k]`` row ``t + 1``, as Minari's
  ``DataCollector`` records it; row 0, the reset info machina does not keep, is padded.
  ``a_is`` go to ``infos["a_is"]``, row ``t`` for the observation of step ``t``.
- Padding is NaN for floats, 0 for integers, False for booleans.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from machina.datasets._episodes import (
    Epi,
    as_epis,
    env_to_policy_acs,
    policy_to_env_acs,
)
from machina.pols import BasePol
from machina.traj import Traj
from machina.utils.tensors import to_numpy

__all__ = ["from_minari", "to_minari"]

#: infos keys machina writes besides the environment's own ``e_is``.
RESERVED_INFOS = ("a_is", "acs")


def _import_minari() -> Any:
    try:
        import minari
    except ImportError as error:  # an optional extra
        raise ImportError(
            'Minari datasets need minari and h5py: pip install "machina[datasets]"'
        ) from error
    return minari


def _pad(rows: np.ndarray, at_start: bool) -> np.ndarray:
    """``rows (T, ...)`` with one padding row added first (``at_start``) or last."""
    rows = np.asarray(rows)
    if rows.dtype == np.bool_:
        fill: Any = False
    elif np.issubdtype(rows.dtype, np.floating):
        fill = np.nan
    else:
        fill = 0
    pad = np.full((1, *rows.shape[1:]), fill, dtype=rows.dtype)
    return np.concatenate([pad, rows] if at_start else [rows, pad])


def _episode_buffer(
    index: int, epi: Epi, pol: BasePol | None, ob_space: gym.Space, ac_space: gym.Space
) -> Any:
    from minari.data_collector import EpisodeBuffer

    obs, next_obs = to_numpy(epi["obs"]), to_numpy(epi.get("next_obs", epi["obs"]))
    rews = to_numpy(epi["rews"])
    length = len(rews)
    if "next_obs" not in epi:
        raise ValueError(f"epis[{index}]: needs 'next_obs' for Minari's T + 1 observations")
    if length == 0 or obs.shape[0] != length or next_obs.shape[0] != length:
        raise ValueError(
            f"epis[{index}]: expected obs, next_obs and rews of one length T >= 1, got "
            f"{obs.shape[0]}, {next_obs.shape[0]} and {length}"
        )
    if not np.array_equal(obs[1:], next_obs[:-1], equal_nan=True):
        raise ValueError(
            f"epis[{index}]: next_obs[t] differs from obs[t + 1]: not one whole episode, which "
            "Minari's T + 1 observations cannot hold"
        )
    dones = to_numpy(epi.get("dones", np.zeros(length, bool))).astype(bool)
    # episodes without terms/truncs (older machina) count every done as a termination
    terms = to_numpy(epi.get("terms", dones)).astype(bool)
    truncs = to_numpy(epi.get("truncs", np.zeros(length, bool))).astype(bool)
    acs = to_numpy(epi["acs"])
    infos: dict[str, Any] = {}
    for key, value in (epi.get("e_is") or {}).items():
        if key in RESERVED_INFOS:
            raise ValueError(f"epis[{index}]['e_is']: key {key!r} is reserved for machina's own")
        infos[key] = _pad(to_numpy(value), at_start=True)
    if epi.get("a_is"):
        infos["a_is"] = {k: _pad(to_numpy(v), at_start=False) for k, v in epi["a_is"].items()}
    if pol is not None:
        infos["acs"] = _pad(acs, at_start=False)
    observations = np.concatenate([obs, next_obs[-1:]]).astype(ob_space.dtype, copy=False)
    actions = policy_to_env_acs(pol, acs).astype(ac_space.dtype, copy=False)
    return EpisodeBuffer(
        id=index,
        observations=observations,
        actions=actions,
        rewards=rews,
        terminations=terms,
        truncations=truncs,
        infos=infos,
    )


def to_minari(
    epis: Sequence[Epi] | Traj,
    dataset_id: str,
    pol: BasePol | None = None,
    env: str | gym.Env | None = None,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    **metadata: Any,
) -> Any:
    """Write whole episodes as a new local Minari dataset.

    Parameters
    ----------
    epis : list of dict or Traj
        Episodes with ``obs``, ``next_obs``, ``acs``, ``rews``, ``terms``, ``truncs`` (``dones``
        alone counts as terminations) and optional ``a_is`` / ``e_is``; a Traj's registered
        episodes (its pending ones when none are registered).
    dataset_id : str
        Minari id, e.g. ``"machina/pendulum-ppo-v0"``; written under
        ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``). Nothing is uploaded.
    pol : BasePol, optional
        The policy that sampled ``acs``: Minari gets ``pol.convert_ac_for_real(acs)``, the
        environment's actions, and ``acs`` are kept in ``infos["acs"]``. None: ``acs`` are
        already the environment's actions (e.g. ``normalize_ac=False``, Discrete from 0).
    env : str or gymnasium.Env, optional
        Recorded as the dataset's environment (its spec); gives the spaces by default.
    observation_space, action_space : gymnasium.Space, optional
        Default: ``env``'s, else ``pol``'s.
    **metadata
        Passed to ``minari.create_dataset_from_buffers`` (``algorithm_name``, ``author``,
        ``description``, ``data_format``...).

    Returns
    -------
    minari.MinariDataset
    """
    minari = _import_minari()
    epis = as_epis(epis)
    if env is not None:
        made = gym.make(env) if isinstance(env, str) else env
        observation_space = observation_space or made.observation_space
        action_space = action_space or made.action_space
        if isinstance(env, str):
            made.close()
    if pol is not None:
        observation_space = observation_space or pol.observation_space
        action_space = action_space or pol.action_space
    if observation_space is None or action_space is None:
        raise ValueError(
            "observation_space, action_space: to_minari needs both, from env, pol or the "
            f"arguments; got {observation_space!r} and {action_space!r}"
        )
    buffers = [
        _episode_buffer(i, epi, pol, observation_space, action_space) for i, epi in enumerate(epis)
    ]
    return minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env=env,
        observation_space=observation_space,
        action_space=action_space,
        **metadata,
    )


def _episode(data: Any, pol: BasePol | None, use_stored_acs: bool) -> Epi:
    observations = np.asarray(data.observations)
    if not isinstance(data.observations, np.ndarray):
        raise ValueError(
            f"dataset: episode {data.id} has {type(data.observations).__name__} observations; "
            "machina episodes need one array (a Box observation space)"
        )
    length = len(data.rewards)
    infos = dict(data.infos or {})
    stored_acs = infos.pop("acs", None)
    a_is_rows = infos.pop("a_is", None) or {}
    if use_stored_acs and stored_acs is not None:
        acs = np.asarray(stored_acs)[:length]
    else:
        acs = env_to_policy_acs(pol, np.asarray(data.actions))
    terms = np.asarray(data.terminations, dtype=bool)
    truncs = np.asarray(data.truncations, dtype=bool)
    e_is = {}
    for key, value in infos.items():
        value = np.asarray(value) if not isinstance(value, dict) else value
        if isinstance(value, np.ndarray) and value.ndim and len(value) in (length, length + 1):
            e_is[key] = value[len(value) - length :]  # step infos follow the reset one
    return dict(
        obs=observations[:-1],
        next_obs=observations[1:],
        acs=acs,
        rews=np.asarray(data.rewards),
        terms=terms,
        truncs=truncs,
        dones=terms | truncs,
        a_is={k: np.asarray(v)[:length] for k, v in a_is_rows.items()},
        e_is=e_is,
    )


def from_minari(
    dataset: Any,
    pol: BasePol | None = None,
    episode_indices: Sequence[int] | None = None,
    use_stored_acs: bool = True,
) -> list[Epi]:
    """Read a Minari dataset as machina episodes, ready for ``Traj.add_epis``.

    Parameters
    ----------
    dataset : minari.MinariDataset or str
        A dataset, or the id of a local one (never downloaded).
    pol : BasePol, optional
        The policy the episodes are for: the environment's actions are mapped into its action
        space (Box bounds to ``[-1, 1]`` when ``normalize_ac``; Discrete minus ``start``).
        None: ``acs`` are the environment's actions (unless ``use_stored_acs`` finds the
        policy-space ones).
    episode_indices : sequence of int, optional
        Episodes to read; default all.
    use_stored_acs : bool
        Take ``acs`` from ``infos["acs"]`` (written by :func:`to_minari` with a ``pol``) when
        present: exact, including samples the policy clipped.

    Returns
    -------
    list of dict
        Episodes with ``obs (T, *ob_shape)``, ``next_obs``, ``acs``, ``rews (T,)``, ``terms``,
        ``truncs``, ``dones``, ``a_is`` and ``e_is`` (the step infos, ``(T, ...)``).
    """
    minari = _import_minari()
    if isinstance(dataset, str):
        dataset = minari.load_dataset(dataset, download=False)
    episodes = dataset.iterate_episodes(episode_indices)
    return [_episode(data, pol, use_stored_acs) for data in episodes]
