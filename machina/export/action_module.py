"""A policy's action as a plain ``torch.nn.Module``: what TorchScript, torch.export and ONNX trace.

``BasePol.forward`` returns numpy and checks its observations for NaN with a data-dependent
branch (``_obs_to_tensor``), so it cannot be traced. :class:`ActionModule` calls the pieces the
policy acts with (``net``, ``_pd_params``, ``_mode``, ``convert_ac_for_real``) on a float32
tensor, and takes the randomness of a stochastic action as an explicit ``noise`` input, so that
the exported graph is a pure function of its inputs.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.pds.tanh_gaussian_pd import TanhGaussianPd
from machina.pols import (
    BasePol,
    CategoricalPol,
    DeterministicActionNoisePol,
    GaussianPol,
    GaussianSDEPol,
    MixtureGaussianPol,
    MultiCategoricalPol,
    TanhGaussianPol,
)
from machina.utils.spaces import is_integer_box

__all__ = ["ActionModule", "noise_shape"]

#: policies whose actions export, most specific first (TanhGaussianPol is a GaussianPol).
SUPPORTED_POLS: tuple[type, ...] = (
    TanhGaussianPol,
    GaussianPol,
    GaussianSDEPol,
    MixtureGaussianPol,
    CategoricalPol,
    MultiCategoricalPol,
    DeterministicActionNoisePol,
)


def _check_pol(pol: Any) -> BasePol:
    if not isinstance(pol, SUPPORTED_POLS):
        names = ", ".join(cls.__name__ for cls in SUPPORTED_POLS)
        raise ValueError(f"pol: export supports {names}; got {type(pol).__name__}")
    checked = cast(BasePol, pol)
    if checked.rnn:
        raise ValueError(
            f"pol: export supports feed-forward policies (rnn=False); got a recurrent "
            f"{type(pol).__name__}: export its net with torch.export directly"
        )
    return checked


def noise_shape(pol: BasePol) -> tuple[int, ...]:
    """Trailing shape of the ``noise`` input of a stochastic :class:`ActionModule`.

    One row of noise per observation, ``(B, *noise_shape(pol))``:

    - GaussianPol, TanhGaussianPol: ``(d,)`` standard normal draws.
    - GaussianSDEPol, TanhGaussianSDEPol: ``(d,)`` standard normal draws of its per-state
      marginal Gaussian (before the squash for the latter; the exploration matrix and its
      schedule belong to a sampling loop, not to one action).
    - DeterministicActionNoisePol: ``(d,)`` exploration noise in policy space (e.g. one draw
      of the policy's ``noise`` process), added to the mean, then clipped like ``forward``.
    - CategoricalPol: ``(1,)`` uniform draws in ``[0, 1)``.
    - MultiCategoricalPol: ``(k,)`` uniform draws in ``[0, 1)``, one per sub-action.
    - MixtureGaussianPol: ``(1 + d,)``: a uniform draw in ``[0, 1)`` that picks the component,
      then ``d`` standard normal draws.
    """
    pol = _check_pol(pol)
    # the supported Box and MultiDiscrete spaces are one-dimensional: shape (d,) or (k,)
    (dim,) = tuple(pol.action_space.shape or (1,))
    if isinstance(pol, CategoricalPol):
        return (1,)
    if isinstance(pol, MixtureGaussianPol):
        return (1 + dim,)
    return (dim,)


def _inverse_cdf(pi: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Class indices ``(*lead,)`` drawn from ``pi (*lead, n)`` with ``uniform (*lead,)``.

    The rule of ``machina.pds.categorical_pd.sample_categorical``: the number of classes whose
    cumulative probability is at most ``u * total``. Counting instead of ``searchsorted``
    exports to ONNX; the two agree because the cumulative sum never decreases.
    """
    cdf = torch.cumsum(pi, dim=-1)
    threshold = uniform.unsqueeze(-1) * cdf[..., -1:]
    return (cdf <= threshold).sum(dim=-1)


class ActionModule(nn.Module):
    """The environment action of a policy as a traceable module.

    Parameters
    ----------
    pol : BasePol
        A feed-forward GaussianPol, GaussianSDEPol (or TanhGaussianSDEPol), TanhGaussianPol,
        MixtureGaussianPol, CategoricalPol, MultiCategoricalPol or DeterministicActionNoisePol.
        Its modules are shared, not copied.
    deterministic : bool
        True: ``forward(obs)`` returns ``pol.deterministic_ac_real(obs)[0]``. False:
        ``forward(obs, noise)`` returns the action ``pol(obs)[0]`` would take with that noise
        (see :func:`noise_shape`).

    Notes
    -----
    The output is ``ac_real (B, *ac_shape)`` in ``action_space.dtype`` (int64 for Discrete,
    MultiDiscrete), scaled to the Box bounds and clipped exactly as the policy does.
    Observation normalisation (``machina.prepro``) is not part of a policy, so not exported.
    """

    real_low: torch.Tensor
    real_high: torch.Tensor

    def __init__(self, pol: BasePol, deterministic: bool = True) -> None:
        super().__init__()
        self.pol = _check_pol(pol)
        self.deterministic = bool(deterministic)
        space = pol.action_space
        if isinstance(space, gym.spaces.Box):
            dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
            # the policy clips again after casting to the space's dtype (_real_to_numpy)
            self.register_buffer("real_low", torch.as_tensor(space.low, dtype=dtype))
            self.register_buffer("real_high", torch.as_tensor(space.high, dtype=dtype))
        self.out_dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
        self.round_ac = is_integer_box(space)  # as the policy rounds them
        # the inputs stay float32; a float64 net (.double()) computes on float64 copies
        self.net_dtype = pol.dtype

    def _policy_space_ac(self, obs: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        pol = self.pol
        net = cast(nn.Module, pol.net)  # _check_pol: the supported policies all have one
        obs = obs.to(self.net_dtype)
        if noise is not None:
            noise = noise.to(self.net_dtype)
        outputs = net(obs)
        params = pol._pd_params(outputs if isinstance(outputs, tuple) else (outputs,))
        if noise is None:
            return pol._mode(params)
        if isinstance(pol, DeterministicActionNoisePol):
            return pol.clip_ac(params["mean"] + noise.to(params["mean"].dtype))
        if isinstance(pol.pd, TanhGaussianPd):  # TanhGaussianPol, TanhGaussianSDEPol
            loc, log_std = pol.pd._loc(params)
            return torch.tanh(loc + torch.exp(log_std) * noise)
        if isinstance(pol, (GaussianPol, GaussianSDEPol)):
            return params["mean"] + torch.exp(params["log_std"]) * noise
        if isinstance(pol, CategoricalPol):
            return _inverse_cdf(params["pi"], noise[..., 0])
        if isinstance(pol, MultiCategoricalPol):
            return _inverse_cdf(params["pi"], noise)
        # MixtureGaussianPol: the component, then a Gaussian draw of it (MixtureGaussianPd.sample)
        pi, mean, log_std = params["pi"], params["mean"], params["log_std"]
        ks = _inverse_cdf(pi, noise[..., 0])
        index = ks[..., None, None].expand(*ks.shape, 1, mean.shape[-1])
        chosen_mean = torch.gather(mean, -2, index).squeeze(-2)
        chosen_log_std = torch.gather(log_std, -2, index).squeeze(-2)
        return chosen_mean + torch.exp(chosen_log_std) * noise[..., 1:]

    def forward(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Environment action for ``obs (B, *ob_shape)`` float32.

        Parameters
        ----------
        obs : torch.Tensor
            ``(B, *ob_shape)``, float32.
        noise : torch.Tensor, optional
            ``(B, *noise_shape(pol))``; required when not ``deterministic``, ignored otherwise.

        Returns
        -------
        torch.Tensor
            ``(B, *ac_shape)`` in ``action_space.dtype``.
        """
        if self.deterministic:
            noise = None
        elif noise is None:
            raise ValueError(
                "noise: a stochastic ActionModule needs noise of shape (B, *noise_shape(pol))"
            )
        ac_real = cast(
            torch.Tensor, self.pol.convert_ac_for_real(self._policy_space_ac(obs, noise))
        )
        if isinstance(self.pol.action_space, gym.spaces.Box):
            if self.round_ac:
                ac_real = torch.round(ac_real)  # half to even, as the policy's np.rint
            ac_real = torch.clamp(ac_real.to(self.out_dtype), self.real_low, self.real_high)
        return ac_real.to(self.out_dtype)
