"""On-policy teacher distillation: a student learns a trained teacher's action distribution.

Rusu et al., 2016, "Policy Distillation" (arXiv:1511.06295), with the states sampled by the
student itself (Czarnecki et al., 2019, "Distilling Policy Distillation", arXiv:1902.02186):
the student is corrected on the states it actually visits, not only on the teacher's.
"""

from __future__ import annotations

import torch

from machina.algos._common import check_traj, log, minibatches
from machina.loss_functional.distill import shannon_cross_entropy
from machina.traj import Traj
from machina.utils.training import optimizer_step


def update_pol(
    student_pol: torch.nn.Module,
    teacher_pol: torch.nn.Module,
    optim_pol: torch.optim.Optimizer,
    batch: dict,
) -> float:
    """One step of ``student_pol`` toward ``teacher_pol`` on ``batch``'s states; returns the
    loss (mean KL(teacher || student)) before the step."""
    return optimizer_step(optim_pol, shannon_cross_entropy(student_pol, teacher_pol, batch))


def train(
    traj: Traj,
    student_pol: torch.nn.Module,
    teacher_pol: torch.nn.Module,
    student_optim: torch.optim.Optimizer,
    epoch: int,
    batchsize: int,
    num_epi_per_seq: int = 1,
    log_enable: bool = True,
    max_grad_norm: float | None = None,
) -> dict:
    """Minimise ``KL(teacher || student)`` on the states of ``traj``.

    Parameters
    ----------
    traj : Traj
        Registered episodes with ``obs``, typically sampled by ``student_pol``. Recurrent
        policies train on whole-episode sequences whose ``h_masks`` the batching builds.
    student_pol : torch.nn.Module
        The policy trained, e.g. a smaller net than the teacher's.
    teacher_pol : torch.nn.Module
        The trained policy, left unchanged; its ``pd`` is of the student's kind.
    student_optim : torch.optim.Optimizer
        Optimiser of ``student_pol``'s parameters.
    epoch : int
        Passes over ``traj``.
    batchsize : int
        Steps per minibatch, or episode sequences when either policy is recurrent.
    num_epi_per_seq : int
        Recurrent only: episodes joined into one sequence.
    log_enable : bool
        Log progress through ``machina.logger``.
    max_grad_norm : float, optional
        Gradient-norm clip of the student.

    Returns
    -------
    dict
        ``S_Pol_loss``: one float per minibatch (the mean KL).
    """
    pols = (student_pol, teacher_pol)
    # No h_masks needed: Traj.iterate_rnn builds them from the episode boundaries.
    check_traj(traj, ("obs",), "on_pol_teacher_distill")
    log(log_enable, "Optimizing...")
    losses = [
        optimizer_step(
            student_optim,
            shannon_cross_entropy(student_pol, teacher_pol, batch),
            None,
            max_grad_norm,
            name="on_pol_teacher_distill.train: student_loss",
            batch=batch,
        )
        for batch in minibatches(traj, pols, batchsize, epoch, num_epi_per_seq)
    ]
    log(log_enable, "Optimization finished!")
    return dict(S_Pol_loss=losses)
