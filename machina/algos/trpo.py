"""Trust region policy optimisation (Schulman et al., 2015)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from machina import loss_functional as lf
from machina.algos._common import check_stochastic_pol, check_traj, log, minibatches, whole_batch
from machina.loss_functional import masked_mean
from machina.pds.base import BasePd
from machina.pols.base import BasePol
from machina.traj import Traj
from machina.utils.distributed import average_tensor
from machina.utils.training import non_finite_error, optimizer_step


def conjugate_gradients(
    mvp: Callable[[torch.Tensor], torch.Tensor] | None = None,
    b: torch.Tensor | None = None,
    num_iter: int | None = None,
    tol: float = 1e-10,
    *,
    Avp: Callable[[torch.Tensor], torch.Tensor] | None = None,  # noqa: N803 (0.x name)
    nsteps: int | None = None,
    residual_tol: float | None = None,
) -> torch.Tensor:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` given as ``mvp(v) = A v``.

    Parameters
    ----------
    mvp : callable
        ``v (n,) -> A v (n,)``; also accepted as ``Avp`` (machina 0.x's name).
    b : torch.Tensor
        Right-hand side, (n,).
    num_iter : int
        Iterations at most; also accepted as ``nsteps``.
    tol : float
        Stop when the squared residual norm is below it; also accepted as ``residual_tol``.

    Returns
    -------
    torch.Tensor
        ``x`` (n,).
    """
    mvp = _one_of(mvp, Avp, "mvp", "Avp")
    num_iter = _one_of(num_iter, nsteps, "num_iter", "nsteps")
    tol = tol if residual_tol is None else residual_tol
    if b is None:
        raise TypeError("conjugate_gradients: b: expected a tensor, got None")
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


def _one_of(value, alias, name: str, alias_name: str):
    if alias is not None:
        if value is not None:
            raise TypeError(f"conjugate_gradients: got both {name} and {alias_name}; pass one")
        return alias
    if value is None:
        raise TypeError(f"conjugate_gradients: {name}: required (or {alias_name})")
    return value


def make_kl(pol: BasePol, batch: dict) -> torch.Tensor:
    """Per-step ``KL(pi_detached || pi)`` at the policy's current parameters, (B,) or (T, B).

    Its Hessian at the current parameters is the Fisher information matrix that
    :func:`update_pol` multiplies vectors with; pass another function of ``(pol, batch)`` as
    ``update_pol``'s ``make_kl`` to change the metric.
    """
    params = lf.pd_params(pol, batch)
    return _pd(pol).kl_pq({k: v.detach() for k, v in params.items()}, params)


def _pd(pol: BasePol) -> BasePd:
    if pol.pd is None:
        raise TypeError(
            f"trpo: pol: {type(pol).__name__} has no probability distribution (pd); TRPO "
            "needs a stochastic policy"
        )
    return pol.pd


def _surrogate(
    pol: BasePol, batch: dict, ent_beta: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Surrogate advantage E[ratio * A] + ent_beta * H, mean KL(pi_old || pi)) on ``batch``."""
    log_ratio, params, old = lf.log_ratio(pol, batch)
    surrogate = masked_mean(torch.exp(log_ratio) * batch["advs"], batch)
    if ent_beta:
        surrogate = surrogate + ent_beta * masked_mean(_pd(pol).ent(params), batch)
    kl = masked_mean(_pd(pol).kl_pq(old, params), batch)
    return surrogate, kl


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _set_flat(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        p.data.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def linesearch(
    pol: torch.nn.Module,
    batch: dict,
    f: Callable[..., torch.Tensor],
    x: torch.Tensor,
    fullstep: torch.Tensor,
    expected_improve_rate: float | torch.Tensor,
    max_backtracks: int = 10,
    accept_ratio: float = 0.1,
    ent_beta: float = 0.0,
) -> tuple[bool, torch.Tensor]:
    """Backtracking line search along ``fullstep`` from the parameter vector ``x``.

    Tries ``x + 0.5**k * fullstep`` for ``k = 0, 1, ...`` and accepts the first point whose
    loss ``f(pol, batch, ent_beta=ent_beta)`` decreased by more than ``accept_ratio`` of the
    improvement predicted by the linear model (``expected_improve_rate * 0.5**k``).
    :func:`update_pol` runs its own search (bounded by the KL as well); this one is machina
    0.x's building block for writing a TRPO step by hand.

    Parameters
    ----------
    pol : torch.nn.Module
        Its parameters, flattened in ``pol.parameters()`` order, are the search space.
    batch : dict of str to torch.Tensor
        Passed to ``f``.
    f : callable
        ``(pol, batch, ent_beta=...) -> scalar loss`` to decrease, e.g. ``lf.pg``.
    x : torch.Tensor
        ``(n,)`` starting parameters (``torch.nn.utils.parameters_to_vector``).
    fullstep : torch.Tensor
        ``(n,)`` the largest step.
    expected_improve_rate : float or torch.Tensor
        Predicted decrease of ``f`` for the full step (``-grad @ fullstep``).
    max_backtracks : int
        Number of halvings tried.
    accept_ratio : float
        Fraction of the predicted decrease required.
    ent_beta : float
        Passed to ``f``.

    Returns
    -------
    success : bool
        Whether a point was accepted.
    params : torch.Tensor
        ``(n,)`` the accepted point, or ``x``. ``pol`` holds these parameters on return.
    """
    params = list(pol.parameters())

    def loss() -> float:
        # averaged over the ranks (data-parallel): every rank takes the same branches, so
        # none waits in a collective of a loss the others no longer compute
        value = torch.as_tensor(f(pol, batch, ent_beta=ent_beta), dtype=torch.float64)
        return float(average_tensor(value.detach().clone()))

    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(x, params)
        fval = loss()
        for k in range(max_backtracks):
            frac = 0.5**k
            xnew = x + frac * fullstep
            torch.nn.utils.vector_to_parameters(xnew, params)
            actual = fval - loss()
            expected = float(expected_improve_rate) * frac
            if expected != 0 and actual / expected > accept_ratio and actual > 0:
                return True, xnew
        torch.nn.utils.vector_to_parameters(x, params)
    return False, x


class PolStepResult(float):
    """The policy loss after a TRPO step (a float), carrying the step's mean KL as ``kl``.

    It unpacks as ``loss, kl = trpo.update_pol(...)`` and is used as the loss itself where a
    float is expected (machina 0.x's ``update_pol`` returned the loss alone).
    """

    kl: float

    def __new__(cls, loss: float, kl: float) -> PolStepResult:
        obj = super().__new__(cls, loss)
        obj.kl = float(kl)
        return obj

    def __iter__(self):
        return iter((float(self), self.kl))


def update_pol(
    pol: BasePol,
    batch: dict,
    make_kl: Callable[[BasePol, dict], torch.Tensor] = make_kl,
    max_kl: float = 0.01,
    damping: float = 0.1,
    num_cg: int = 10,
    ent_beta: float = 0.0,
    max_backtracks: int = 10,
) -> PolStepResult:
    """One natural-gradient step with a backtracking line search inside the KL bound.

    Parameters
    ----------
    pol : torch.nn.Module
        The policy; ``batch`` must hold the parameters it recorded while sampling.
    batch : dict of str to torch.Tensor
        ``obs``, ``acs``, ``advs`` (B, ...) or sequences with ``h_masks``/``out_masks``.
    make_kl : callable
        ``(pol, batch) -> per-step KL`` whose Hessian is the metric (default :func:`make_kl`,
        the Fisher matrix).
    max_kl : float
        Trust-region radius in mean KL.
    damping : float
        Added to the metric's diagonal.
    num_cg : int
        Conjugate-gradient iterations.
    ent_beta : float
        Entropy bonus added to the surrogate.
    max_backtracks : int
        Line-search halvings.

    Returns
    -------
    PolStepResult
        The surrogate loss after the step (a float) with the step's mean KL as ``.kl``;
        unpacks as ``(loss, kl)``.

    Notes
    -----
    The positional order is machina 0.x's ``(pol, batch, make_kl, max_kl, damping, num_cg,
    ent_beta)``. A number in ``make_kl``'s place is read as the order
    ``(pol, batch, max_kl, num_cg, damping, max_backtracks)`` of machina 1.0's first release.
    """
    if isinstance(make_kl, numbers.Real):
        # (pol, batch, max_kl, num_cg, damping, max_backtracks): the slots hold, in order,
        # max_kl, num_cg (or max_kl's float default), damping, max_backtracks (or 10).
        given_num_cg = max_kl
        max_kl, max_backtracks = float(make_kl), num_cg
        num_cg = given_num_cg if isinstance(given_num_cg, numbers.Integral) else 10
        make_kl = globals()["make_kl"]
    if not callable(make_kl):
        raise TypeError(
            f"trpo.update_pol: make_kl: expected a function of (pol, batch), got {make_kl!r}"
        )
    if not (isinstance(max_kl, numbers.Real) and math.isfinite(max_kl) and max_kl > 0):
        # sqrt of a negative step size: every step refused, the policy never updated, silently
        raise ValueError(f"trpo.update_pol: max_kl: expected a positive float, got {max_kl!r}")
    params = [p for p in pol.parameters() if p.requires_grad]
    surrogate, _ = _surrogate(pol, batch, ent_beta)
    # Data-parallel (machina.distributed): the gradient, every Fisher-vector product and the
    # line search's values are averaged over ranks (no-ops in one process), so every rank
    # computes the same step.
    old_value = float(average_tensor(surrogate.detach().clone()))
    if not math.isfinite(old_value):
        raise non_finite_error(f"trpo.update_pol: the surrogate is {old_value}", batch)
    grad = average_tensor(_flat(torch.autograd.grad(surrogate, params, retain_graph=True)))
    if not bool(torch.isfinite(grad).all()):
        raise non_finite_error(
            "trpo.update_pol: the gradient of the surrogate is not finite", batch
        )
    metric_kl = masked_mean(make_kl(pol, batch), batch)
    kl_grad = _flat(torch.autograd.grad(metric_kl, params, create_graph=True))

    def fisher_vector(v: torch.Tensor) -> torch.Tensor:
        hv = _flat(torch.autograd.grad(kl_grad @ v, params, retain_graph=True))
        return average_tensor(hv) + damping * v

    step_dir = conjugate_gradients(fisher_vector, grad, num_cg)
    shs = 0.5 * (step_dir @ fisher_vector(step_dir))
    if not torch.isfinite(shs) or shs <= 0:
        return PolStepResult(-old_value, 0.0)
    full_step = step_dir * torch.sqrt(2 * max_kl / (2 * shs))
    expected = grad @ full_step
    old_flat = _flat(p.detach() for p in params)
    with torch.no_grad():
        for frac in 0.5 ** torch.arange(max_backtracks, dtype=torch.float32):
            _set_flat(params, old_flat + frac * full_step)
            new_surrogate, new_kl = average_tensor(torch.stack(_surrogate(pol, batch, ent_beta)))
            improved = float(new_surrogate) - old_value
            if float(new_kl) <= 1.5 * max_kl and improved > 0 and expected > 0:
                return PolStepResult(-float(new_surrogate), float(new_kl))
        _set_flat(params, old_flat)
    return PolStepResult(-old_value, 0.0)


def update_vf(vf: torch.nn.Module, optim_vf: torch.optim.Optimizer, batch: dict) -> float:
    """One regression step of ``vf`` onto the batch's ``rets`` (``lf.monte_carlo``).

    Returns the loss before the step.
    """
    return optimizer_step(optim_vf, lf.monte_carlo(vf, batch), vf.parameters())


def train(
    traj: Traj,
    pol: BasePol,
    vf: torch.nn.Module,
    optim_vf: torch.optim.Optimizer,
    epoch: int = 5,
    batch_size: int = 64,
    num_epi_per_seq: int = 1,
    max_kl: float = 0.01,
    num_cg: int = 10,
    damping: float = 0.1,
    ent_beta: float = 0.0,
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
    ent_beta : float
        Entropy bonus of the policy step's surrogate.
    log_enable : bool
        Log progress through ``machina.logger``.

    Returns
    -------
    dict
        ``PolLoss`` (one float), ``VfLoss`` (per minibatch) and ``KL`` (the step's mean KL).
    """
    check_traj(traj, ["advs", "rets", "acs"], "trpo")
    check_stochastic_pol(pol, reparam=False, fn_name="trpo.train")
    log(log_enable, "Optimizing...")
    pol_loss, kl = update_pol(
        pol,
        whole_batch(traj, [pol]),
        max_kl=max_kl,
        damping=damping,
        num_cg=num_cg,
        ent_beta=ent_beta,
    )
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
