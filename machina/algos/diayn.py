"""DIAYN's skill discriminator (Eysenbach et al., 2018, "Diversity is All You Need",
arXiv:1802.06070).

DIAYN is three parts a script composes: ``machina.envs.SkillEnv`` (a skill per episode, in
the observation), this discriminator ``q(z | s)``, and any maximum-entropy learner on the
pseudo reward ``log q(z | s) - log p(z)``, e.g. :mod:`machina.algos.diayn_sac`.
"""

from __future__ import annotations

import torch

from machina.algos._adversarial import check_discrim_batch_size
from machina.algos._common import check_traj, log
from machina.loss_functional.diayn import cross_ent_diayn, skill_accuracy
from machina.traj import Traj
from machina.utils import batch_share
from machina.utils.training import optimizer_step

__all__ = ["DiscrimResult", "train"]


class DiscrimResult(list):
    """The discriminator's losses (a list, one float per step) that also reads as a dict.

    ``result["DiscrimLoss"]`` and ``result["DiscrimAcc"]`` (batch accuracy before each step),
    ``keys()``, ``items()`` and ``dict(result)`` work as on the other algorithms' results,
    while ``np.mean(result)`` and ``result[-1]`` see the list of losses that machina 0.x's
    ``diayn.train`` returned.
    """

    def __init__(self, losses: list[float], accs: list[float]) -> None:
        super().__init__(losses)
        self._named = dict(DiscrimLoss=list(losses), DiscrimAcc=list(accs))

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._named[key]
        return super().__getitem__(key)

    def __contains__(self, item) -> bool:
        if isinstance(item, str):
            return item in self._named
        return super().__contains__(item)

    def keys(self):
        return self._named.keys()

    def values(self):
        return self._named.values()

    def items(self):
        return self._named.items()

    def get(self, key: str, default=None):
        return self._named.get(key, default)


def train(
    discrim: torch.nn.Module,
    optim_discrim: torch.optim.Optimizer,
    on_traj: Traj,
    discrim_batch_size: int,
    epc_per_itr: int,
    num_skill: int,
    ob_key: str = "next_obs",
    max_grad_norm: float | None = None,
    log_enable: bool = True,
) -> DiscrimResult:
    """Take ``epc_per_itr`` cross-entropy steps of the discriminator on random batches.

    Parameters
    ----------
    discrim : torch.nn.Module
        ``state (B, ob_dim) -> logits (B, num_skill)``, e.g.
        ``machina.nets.skill_discrim.SkillDiscrimNet``; it never sees the skill one-hot.
    optim_discrim : torch.optim.Optimizer
        Optimiser of ``discrim``.
    on_traj : Traj
        Registered episodes from a ``SkillEnv``, usually the freshly sampled ones, with
        ``ob_key`` of shape (ob_dim + num_skill,).
    discrim_batch_size : int
        Steps per batch, drawn uniformly with replacement; at most the steps ``on_traj``
        holds.
    epc_per_itr : int
        Number of gradient steps.
    num_skill : int
        Number of skills of the ``SkillEnv``.
    ob_key : str
        Observations to classify: ``"next_obs"`` (default; the ones
        ``compute_diayn_rews`` and ``diayn_sac`` reward) or ``"obs"``.
    max_grad_norm : float, optional
        Gradient-norm clip.
    log_enable : bool
        Log progress through ``machina.logger``.

    Returns
    -------
    DiscrimResult
        The list of losses, one float per step, readable as a dict with ``DiscrimLoss`` and
        ``DiscrimAcc`` (batch accuracy before each step; chance is ``1 / num_skill``).
    """
    check_traj(on_traj, (ob_key,), "diayn", "on_traj")
    check_discrim_batch_size(discrim_batch_size, on_traj, "on_traj", "diayn")
    log(log_enable, "Optimizing discriminator...")
    losses, accs, sizes, batch = [], [], [], None
    for batch in on_traj.random_batch(discrim_batch_size, epc_per_itr):
        accs.append(skill_accuracy(discrim, batch[ob_key], num_skill))
        sizes.append(len(batch[ob_key]))
        loss = cross_ent_diayn(discrim, batch, num_skill, ob_key)
        losses.append(
            optimizer_step(
                optim_discrim,
                loss,
                None,
                max_grad_norm,
                name="diayn.train: discrim_loss",
                batch=batch,
            )
        )
    log(log_enable, "Optimization finished!")
    return DiscrimResult(losses, _whole_accuracies(accs, sizes, batch))


def _whole_accuracies(
    accs: list[torch.Tensor], sizes: list[int], batch: dict | None
) -> list[float]:
    """The batches' accuracies; under ``Traj(ddp=True)`` the whole minibatches' from the
    ranks' shares (one all-reduce for all of them, so every rank reports the same)."""
    if not batch_share.splits(batch):
        return [float(a) for a in accs]
    n = torch.tensor(sizes, dtype=torch.float64, device=accs[0].device)
    correct = torch.stack(accs).to(torch.float64) * n
    totals = batch_share.rank_mean(torch.stack([correct, n], dim=1), batch)
    return (totals[:, 0] / totals[:, 1]).tolist()
