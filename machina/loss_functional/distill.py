"""Policy-distillation losses as pure functions of (student, teacher, batch)."""

from __future__ import annotations

import torch

from machina.loss_functional._common import Batch, masked_mean, new_params, run


def shannon_cross_entropy(
    student_pol: torch.nn.Module, teacher_pol: torch.nn.Module, batch: Batch
) -> torch.Tensor:
    """``E_s[KL(teacher(.|s) || student(.|s))]`` over the batch's states.

    The cross-entropy ``H(teacher, student)`` minus the teacher's entropy, which does not
    depend on the student: the gradient of the cross-entropy, and a loss of 0 when the
    student matches the teacher. Taken on the states of the
    batch, typically the student's own episodes (on-policy distillation; Czarnecki et al.,
    2019, "Distilling Policy Distillation", arXiv:1902.02186). No gradient reaches the
    teacher.

    Parameters
    ----------
    student_pol, teacher_pol : torch.nn.Module
        machina policies with distributions of the same kind (``pd`` of the same class),
        e.g. two ``CategoricalPol`` or two ``GaussianPol`` on the same action space.
    batch : dict of str to torch.Tensor
        ``obs`` (B, ...) or, when either policy is recurrent, sequences (T, B, ...) with
        ``h_masks`` and ``out_masks``.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if type(student_pol.pd) is not type(teacher_pol.pd):
        raise ValueError(
            f"teacher_pol: needs the student's kind of distribution "
            f"{type(student_pol.pd).__name__}, got {type(teacher_pol.pd).__name__}"
        )
    with torch.no_grad():
        _, _, teacher_a_i = run(teacher_pol, batch)
    _, _, student_a_i = run(student_pol, batch)
    kl = student_pol.pd.kl_pq(new_params(teacher_a_i), new_params(student_a_i))
    return masked_mean(kl, batch)
