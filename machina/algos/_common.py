"""Pieces every algorithm shares: checks, batch iteration and logging.

The optimiser step, Polyak averaging and ``frozen`` live in :mod:`machina.utils.training`
(public, used outside the algorithms too); they are importable from here as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import gymnasium as gym
import numpy as np
import torch

from machina import logger
from machina.pds import DeterministicPd, GaussianPd
from machina.traj import Traj
from machina.utils import batch_share
from machina.utils import distributed as dist_utils
from machina.utils.recurrent import check_feed_forward as _check_feed_forward
from machina.utils.training import (
    frozen,
    optimizer_params,
    optimizer_step,
    polyak_update,
    separate_steps,
)

__all__ = [
    "ADDED_BY",
    "Batch",
    "check_feed_forward",
    "check_sampling",
    "check_stochastic_pol",
    "check_traj",
    "frozen",
    "is_recurrent",
    "log",
    "minibatches",
    "optimizer_step",
    "PolVfStep",
    "polyak_update",
    "standardize_advs",
    "whole_batch",
]

Batch = dict[str, torch.Tensor]

# Which estimator adds each key an algorithm may need, for error messages.
ADDED_BY = {
    "advs": "ef.compute_advs(traj, gamma, lam)",
    "rets": "ef.compute_rets(traj, gamma)",
    "vs": "ef.compute_vs(traj, vf)",
    "next_vs": "ef.compute_vs(traj, vf)",
    "h_masks": "ef.compute_h_masks(traj)",
    "next_obs": "ef.add_next_obs(traj)",
    "terms": "EpiSampler (its episodes carry 'terms' and 'truncs'; record them in your own)",
}


def check_traj(traj: Traj, keys: Iterable[str], algo: str, name: str = "traj") -> None:
    """Raise a clear error when ``traj`` is not a registered Traj holding ``keys``.

    ``name`` is the argument's name in ``algo``'s ``train`` (e.g. ``"expert_traj"``), used in
    the messages.
    """
    if not isinstance(traj, Traj):
        raise TypeError(
            f"{algo}.train: {name}: expected a machina.traj.Traj, got {type(traj).__name__}"
        )
    empty = traj.num_step == 0
    # every rank of a process group stops if one holds none (else the others would wait for
    # it in their first batching call)
    if dist_utils.any_rank(empty):
        if not empty:
            raise RuntimeError(
                f"{algo}.train: {name} of another rank holds no registered steps (its error is "
                f"raised there); this rank ({dist_utils.get_rank()}) stops too rather than wait"
            )
        pending = f" (episodes are pending: call {name}.register_epis())"
        hint = pending if traj.current_epis else ""
        raise ValueError(f"{algo}.train: {name} holds no registered steps{hint}")
    for key in keys:
        if key not in traj.data_map:
            adder = ADDED_BY.get(key)
            if adder:
                adder = adder.replace("(traj", f"({name}", 1)  # the caller's argument name
            hint = f"; add it with {adder} before {name}.register_epis()" if adder else ""
            raise KeyError(f"{algo}.train: {name} has no '{key}'{hint}")


def check_class_acs(traj: Traj, pol: torch.nn.Module, fn_name: str, name: str = "traj") -> None:
    """A ValueError naming ``name``'s ``acs`` unless they are class indices of ``pol``'s
    Discrete / MultiDiscrete action space: whole numbers in ``[0, n)`` (policy space, the
    space's ``start`` removed), of the space's shape. A log-likelihood would truncate a
    fraction, fail in torch's gather out of range, or (a MultiDiscrete's class beyond one
    dimension's count) score a padding class silently."""
    space = getattr(pol, "action_space", None)
    if not isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return
    acs = traj.data_map["acs"]
    what = f"{fn_name}: {name}['acs']"
    shape = tuple(space.shape or ())
    if tuple(acs.shape[1:]) != shape:
        raise ValueError(
            f"{what}: expected class indices of shape (T{''.join(f', {d}' for d in shape)}) for "
            f"{space} (not one-hot), got {tuple(acs.shape)}"
        )
    if isinstance(space, gym.spaces.Discrete):
        counts = torch.tensor(int(space.n))
    else:
        counts = torch.as_tensor(np.asarray(space.nvec, dtype=np.int64))
    values = acs.detach().to("cpu", torch.float64)
    bad = (values != values.round()) | (values < 0) | (values >= counts)
    if bool(bad.any()):
        step = int(torch.nonzero(bad.reshape(len(bad), -1).any(dim=1))[0])
        raise ValueError(
            f"{what}: expected class indices 0 .. n - 1 of {space} (policy space: the space's "
            f"start removed, as the samplers store them), got {values[step].tolist()} at step "
            f"{step}"
        )


def is_recurrent(*modules: torch.nn.Module) -> bool:
    return any(getattr(m, "rnn", False) for m in modules)


def minibatches(
    traj: Traj,
    modules: Iterable[torch.nn.Module],
    batch_size: int,
    epoch: int,
    num_epi_per_seq: int = 1,
    norm_advs: bool = False,
) -> Iterator[Batch]:
    """Shuffled step batches, or whole-episode sequences when any module is recurrent.

    For recurrent modules ``batch_size`` counts sequences, otherwise steps. With
    ``norm_advs`` each batch's ``advs`` are standardised within it (``standardize_advs``).
    """
    if is_recurrent(*modules):
        batches = traj.iterate_rnn(batch_size, num_epi_per_seq=num_epi_per_seq, epoch=epoch)
    else:
        batches = traj.iterate(batch_size, epoch=epoch)
    return map(standardize_advs, batches) if norm_advs else batches


def standardize_advs(batch: Batch, eps: float = 1e-8) -> Batch:
    """The batch with its ``advs`` standardised over its real steps: ``(A - mean) / (std +
    eps)``, ``std`` unbiased (stable-baselines3's ``normalize_advantage``, per minibatch).

    Sequence batches (``out_masks`` (T, B)) leave their padding steps out of the statistics
    and set them to 0. A batch of fewer than 2 real steps has no spread and is returned as
    it is (as stable-baselines3 does). The other entries are shared; the given batch is not
    changed.

    Parameters
    ----------
    batch : dict of str to torch.Tensor
        ``advs`` (B,) or (T, B), with ``out_masks`` (T, B) for sequence batches.
    eps : float
        Added to the standard deviation.
    """
    advs = batch["advs"]
    masks = batch.get("out_masks")
    real = None if masks is None else masks > 0
    # the whole minibatch's statistics for a rank's share of it (Traj(ddp=True))
    n, mean, std = batch_share.whole_moments(advs if real is None else advs[real], batch)
    if n < 2:
        return batch
    out = (advs - mean) / (std + eps)
    if real is not None:
        out = torch.where(real, out, torch.zeros_like(advs))
    return batch_share.keep_share({**batch, "advs": out}, batch)


def whole_batch(traj: Traj, modules: Iterable[torch.nn.Module]) -> Batch:
    """Every step of ``traj`` in one batch (all episodes as sequences when recurrent)."""
    if is_recurrent(*modules):
        return next(traj.iterate_rnn(traj.num_epi))
    return dict(traj.data_map)


def check_sampling(sampling: int, fn_name: str) -> None:
    """A ValueError naming ``fn_name`` unless ``sampling`` (actions drawn per state) is an
    int >= 1."""
    if isinstance(sampling, bool) or not isinstance(sampling, int) or sampling < 1:
        raise ValueError(f"{fn_name}: sampling: expected an int >= 1, got {sampling!r}")


def check_stochastic_pol(pol: torch.nn.Module, reparam: bool, fn_name: str = "sac.train") -> None:
    """SAC and the policy-gradient algorithms need actions with log-likelihoods (and, with
    ``reparam``, draws that carry gradients); ``fn_name`` is the function the error names.
    A deterministic policy's loss would fail deep in autograd, or come out infinite."""
    pd = getattr(pol, "pd", None)
    usable = isinstance(pd, GaussianPd) or hasattr(pd, "sample_with_llh")
    if not reparam:
        usable = pd is not None and not isinstance(pd, DeterministicPd)
    if not usable:
        if reparam:
            what = "a reparameterisable policy (TanhGaussianPol or GaussianPol)"
        else:
            what = "a stochastic policy (e.g. GaussianPol, TanhGaussianPol, CategoricalPol)"
        raise ValueError(
            f"{fn_name}: pol: needs {what}, got {type(pol).__name__} with pd {type(pd).__name__}"
        )


def check_feed_forward(algo: str, **modules: torch.nn.Module) -> None:
    """Raise a clear error if any of the named modules is recurrent (not supported here);
    :func:`machina.utils.recurrent.check_feed_forward` for ``f"{algo}.train"``."""
    _check_feed_forward(f"{algo}.train", **modules)


def log(enabled: bool, msg: str) -> None:
    if enabled:
        logger.log(msg)


class PolVfStep:
    """A minibatch's policy step then value step, each an ``optimizer_step`` on its own
    network with its own gradient clip (the on-policy algorithms' inner loop).

    When the two are independent (no parameter shared by ``pol`` and ``vf``, each optimiser
    holding only its network's parameters, no averaging over ranks) both losses go through
    one backward pass (:func:`machina.utils.training.optimizer_steps`): the same gradients
    and steps, since the value loss does not depend on the policy's parameters, with one
    autograd call instead of two; a non-finite loss or gradient then stops both steps.
    Otherwise the value loss is computed after the policy's step, as two ``optimizer_step``
    calls. (Independence is read from the registered parameters: a loss reaching the other
    network's tensors some other way is not seen.)

    Parameters
    ----------
    pol, vf : torch.nn.Module
        The policy and the value function.
    optim_pol, optim_vf : torch.optim.Optimizer
        Their optimisers.
    max_grad_norm : float or None
        Each network's gradient-norm clip.
    algo : str
        The algorithm's name, for error messages (``"ppo_clip"``).
    clip_vf : bool
        Whether ``max_grad_norm`` clips the value function's gradient too (machina 0.x's
        ``ppo_clip`` clipped both networks, its ``ppo_kl`` only the policy).
    """

    def __init__(
        self,
        pol: torch.nn.Module,
        vf: torch.nn.Module,
        optim_pol: torch.optim.Optimizer,
        optim_vf: torch.optim.Optimizer,
        max_grad_norm: float | None,
        algo: str,
        clip_vf: bool = True,
    ) -> None:
        self.optim_pol, self.optim_vf = optim_pol, optim_vf
        self.pol_params, self.vf_params = list(pol.parameters()), list(vf.parameters())
        self.clips = (max_grad_norm, max_grad_norm if clip_vf else None)
        self.names = (f"{algo}.train: pol_loss", f"{algo}.train: vf_loss")
        pol_ids, vf_ids = {id(p) for p in self.pol_params}, {id(p) for p in self.vf_params}
        # what optimizer_steps checks at every call, established once per train call
        self.opt_params = [optimizer_params(optim_pol), optimizer_params(optim_vf)]
        self.together = (
            optim_pol is not optim_vf
            and not pol_ids & vf_ids
            and {id(p) for p in self.opt_params[0]} <= pol_ids
            and {id(p) for p in self.opt_params[1]} <= vf_ids
            and not dist_utils.averages_here([optim_pol, optim_vf])
        )

    def __call__(
        self, batch: Batch, pol_loss: torch.Tensor, vf_loss: Callable[[Batch], torch.Tensor]
    ) -> tuple[float, float]:
        """Step on ``pol_loss`` ``()`` and on ``vf_loss(batch)`` ``()``.

        Returns
        -------
        tuple of float
            Both losses before the steps.
        """
        if self.together:
            pol_value, vf_value = separate_steps(
                [
                    (self.optim_pol, pol_loss, self.pol_params, self.names[0]),
                    (self.optim_vf, vf_loss(batch), self.vf_params, self.names[1]),
                ],
                self.opt_params,
                self.clips,
                batch,
            )
            return pol_value, vf_value
        pol_value = optimizer_step(
            self.optim_pol, pol_loss, self.pol_params, self.clips[0],
            name=self.names[0], batch=batch,
        )  # fmt: skip
        vf_value = optimizer_step(
            self.optim_vf, vf_loss(batch), self.vf_params, self.clips[1],
            name=self.names[1], batch=batch,
        )  # fmt: skip
        return pol_value, vf_value
