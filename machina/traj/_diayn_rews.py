"""DIAYN pseudo rewards as an estimator on episodes (exported as ``ef.compute_diayn_rews``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from machina.loss_functional.diayn import diayn_rews
from machina.traj._episodes import Columns, episode_function
from machina.traj._modules import chunked_no_grad, module_device


@episode_function
def compute_diayn_rews(
    data: Columns,
    rew_giver: Callable,
    num_skill: int | None = None,
    ob_key: str = "next_obs",
) -> dict[str, np.ndarray]:
    """Replace ``rews`` with DIAYN's pseudo reward ``log q(z | s) - log p(z)``, (T,) float32.

    ``s`` is the observation of ``ob_key`` without its skill one-hot and ``z`` the skill of
    that one-hot (observations from ``machina.envs.SkillEnv``); ``p(z) = 1 / num_skill``.
    Scoring ``next_obs``, the state each action led to, rewards the action for it (pass
    ``ob_key="obs"`` to score the observation the action was taken in).

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``ob_key`` (T, ob_dim + num_skill).
    rew_giver : torch.nn.Module or callable
        With ``num_skill``: the discriminator, ``state (B, ob_dim) -> logits (B, num_skill)``
        (or a tuple whose first item they are). Without: a reward function (machina 0.x's form),
        ``obs (B, ob_dim + num_skill) -> (rews (B,), info)``, e.g.
        ``lambda obs: diayn_sac.calc_rewards(obs, num_skill, discrim)``.
    num_skill : int, optional
        Number of skills; required to use ``rew_giver`` as a discriminator.
    ob_key : str
        ``"next_obs"`` or ``"obs"``.
    """
    obs = data.require(ob_key, "compute_diayn_rews", "ef.add_next_obs(data)")
    device = module_device(rew_giver)

    def pseudo_rews(rows: slice) -> torch.Tensor:
        chunk = torch.as_tensor(obs[rows], dtype=torch.float32).to(device)
        if num_skill is None:
            rews = rew_giver(chunk)[0]
        else:
            rews = diayn_rews(rew_giver, chunk, num_skill)
        return torch.as_tensor(rews).reshape(-1)

    rews = chunked_no_grad(len(obs), pseudo_rews)
    if len(rews) != len(obs):
        raise ValueError(
            f"compute_diayn_rews: rew_giver: expected one reward per step ({len(obs)}), "
            f"got {len(rews)}"
        )
    return {"rews": rews}
