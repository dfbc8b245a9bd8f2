"""Losses as pure functions of (modules, batch) returning scalar tensors."""

from machina.loss_functional._common import masked_mean
from machina.loss_functional.diayn import cross_ent_diayn, diayn_rews, skill_accuracy, split_skill
from machina.loss_functional.distill import shannon_cross_entropy
from machina.loss_functional.imitation import (
    airl_energies,
    airl_logits,
    bernoulli_ent,
    cross_ent,
    density_ratio_cross_ent,
    gail_logits,
    log_likelihood,
)
from machina.loss_functional.model import dynamics
from machina.loss_functional.policy import kl_old_new, log_ratio, pd_params, pg, pg_clip, pg_kl
from machina.loss_functional.prioritized import (
    ddpg_nstep_targets,
    nstep_target,
    weighted_q_regression,
)
from machina.loss_functional.q import (
    bellman_target,
    ddpg_pol,
    ddpg_targets,
    dqn,
    dqn_targets,
    q_regression,
    td3_targets,
)
from machina.loss_functional.qtopt import clipped_double_bellman, clipped_double_targets
from machina.loss_functional.r2d2_sac import (
    r2d2_q_loss,
    r2d2_sac_alpha,
    r2d2_sac_pol,
    r2d2_sac_targets,
)
from machina.loss_functional.sac import sac_alpha, sac_pol, sac_targets, sample_acs
from machina.loss_functional.svg import (
    ag,
    bellman,
    delta_regression,
    svg1_pol,
    svg1_vf,
    svg_targets,
)
from machina.loss_functional.value import monte_carlo

# Reachable as lf.get_device() and lf.detach_tensor_dict(), where machina 0.x scripts find
# them; they live in machina.utils.
from machina.utils import detach_tensor_dict, get_device  # noqa: E402, F401

__all__ = [
    "ag",
    "airl_energies",
    "airl_logits",
    "bellman",
    "bellman_target",
    "bernoulli_ent",
    "clipped_double_bellman",
    "clipped_double_targets",
    "cross_ent",
    "cross_ent_diayn",
    "ddpg_nstep_targets",
    "ddpg_pol",
    "ddpg_targets",
    "delta_regression",
    "density_ratio_cross_ent",
    "diayn_rews",
    "dqn",
    "dqn_targets",
    "dynamics",
    "gail_logits",
    "kl_old_new",
    "log_likelihood",
    "log_ratio",
    "masked_mean",
    "monte_carlo",
    "nstep_target",
    "pd_params",
    "pg",
    "pg_clip",
    "pg_kl",
    "q_regression",
    "r2d2_q_loss",
    "r2d2_sac_alpha",
    "r2d2_sac_pol",
    "r2d2_sac_targets",
    "sac_alpha",
    "sac_pol",
    "sac_targets",
    "sample_acs",
    "shannon_cross_entropy",
    "skill_accuracy",
    "split_skill",
    "svg1_pol",
    "svg1_vf",
    "svg_targets",
    "td3_targets",
    "weighted_q_regression",
]
