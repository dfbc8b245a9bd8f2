"""Trust region policy optimisation (Schulman et al., 2015)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from machina import loss_functional as lf
from machina.algos._common import check_traj, log, minibatches, optimizer_step, whole_batch
from machina.loss_functional._common import masked_mean
from machina.traj import Traj


def conjugate_gradients(
    mvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, num_iter: int, tol: float = 1e-10
) -> torch.Tensor:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` given as ``mvp(v) = A v``."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(num_iter):
        ap = mvp(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        new_rr = r @ r
        if new_rr < tol:
            break
        p = r + (new_rr / rr) * p
        rr = new_rr
    return x


def _surrogate(pol: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(Surrogate advantage E[ratio * A], mean KL(pi_old || pi)) on ``batch``."""
    log_ratio, params, old = lf.log_ratio(pol, batch)
    surrogate = masked_mean(torch.exp(log_ratio) * batch["advs"], batch)
    kl = masked_mean(pol.pd.kl_pq(old, params), batch)
    return surrogate, kl


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _set_flat(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        p.data.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def update_pol(
    pol: torch.nn.Module,
    batch: dict,
    max_kl: float = 0.01,
    num_cg: int = 10,
    damping: float = 0.1,
    max_backtracks: int = 10,
) -> tuple[float, float]:
    """One natural-gradient step with a backtracking line search inside the KL bound.

    Returns the surrogate loss after the step and the step's mean KL.
    """
    params = [p for p in pol.parameters() if p.requires_grad]
    surrogate, kl = _surrogate(pol, batch)
    grad = _flat(torch.autograd.grad(surrogate, params, retain_graph=True))
    kl_grad = _flat(torch.autograd.grad(kl, params, create_graph=True))

    def fisher_vector(v: torch.Tensor) -> torch.Tensor:
        hv = _flat(torch.autograd.grad(kl_grad @ v, params, retain_graph=True))
        return hv + damping * v

    step_dir = conjugate_gradients(fisher_vector, grad, num_cg)
    shs = 0.5 * (step_dir @ fisher_vector(step_dir))
    if not torch.isfinite(shs) or shs <= 0:
        return -float(surrogate.detach()), 0.0
    full_step = step_dir * torch.sqrt(2 * max_kl / (2 * shs))
    expected = grad @ full_step
    old_flat = _flat(p.detach() for p in params)
    old_value = float(surrogate.detach())
    with torch.no_grad():
        for frac in 0.5 ** torch.arange(max_backtracks, dtype=torch.float32):
            _set_flat(params, old_flat + frac * full_step)
            new_surrogate, new_kl = _surrogate(pol, batch)
            improved = float(new_surrogate) - old_value
            if float(new_kl) <= 1.5 * max_kl and improved > 0 and expected > 0:
                return -float(new_surrogate), float(new_kl)
        _set_flat(params, old_flat)
    return -old_value, 0.0


def train(
    traj: Traj,
    pol: torch.nn.Module,
    vf: torch.nn.Module,
    optim_vf: torch.optim.Optimizer,
    epoch: int = 5,
    batch_size: int = 64,
    num_epi_per_seq: int = 1,
    max_kl: float = 0.01,
    num_cg: int = 10,
    damping: float = 0.1,
    log_enable: bool = True,
) -> dict[str, list[float]]:
    """One TRPO policy step on all of ``traj``, then ``epoch`` passes of value regression.

    Parameters
    ----------
    traj : Traj
        Registered episodes with ``advs``, ``rets`` and the sampling policy's parameters.
    pol, vf : torch.nn.Module
        Policy and state-value function.
    optim_vf : torch.optim.Optimizer
        Optimiser of ``vf`` (the policy step needs none).
    epoch, batch_size, num_epi_per_seq
        Value-function minibatching, as in ``ppo_clip.train``.
    max_kl : float
        Trust-region radius in mean KL.
    num_cg : int
        Conjugate-gradient iterations.
    damping : float
        Added to the Fisher matrix's diagonal.

    Returns
    -------
    dict
        ``PolLoss`` (one float), ``VfLoss`` (per minibatch) and ``KL`` (the step's mean KL).
    """
    check_traj(traj, ["advs", "rets", "acs"], "trpo")
    log(log_enable, "Optimizing...")
    pol_loss, kl = update_pol(pol, whole_batch(traj, [pol]), max_kl, num_cg, damping)
    vf_losses = []
    for batch in minibatches(traj, [vf], batch_size, epoch, num_epi_per_seq):
        vf_losses.append(
            optimizer_step(
                optim_vf,
                lf.monte_carlo(vf, batch),
                vf.parameters(),
                name="trpo.train: vf_loss",
                batch=batch,
            )
        )
    log(log_enable, "Optimization finished!")
    return dict(PolLoss=[pol_loss], VfLoss=vf_losses, KL=[kl])
