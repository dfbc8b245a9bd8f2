"""Gaussian policy with generalized state-dependent exploration (gSDE)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.pds.gaussian_pd import GaussianPd
from machina.pols.base import ActResult, BasePol
from machina.pols.numpy_spec import sde_net_ops
from machina.utils.recurrent import HiddenState
from machina.utils.spaces import check_flat_space, space_shape

#: added to the action variance: keeps log-std finite where the features vanish (SB3's 1e-6).
SDE_VAR_EPS = 1e-6


class GaussianSDEPol(BasePol):
    """Gaussian policy whose exploration noise is a function of the state (gSDE).

    Raffin, Kober and Stulp, "Smooth Exploration for Robotic Reinforcement Learning"
    (CoRL 2021). The action is ``mean(s) + phi(s) @ E`` with features ``phi(s) (k,)`` from the
    net and an exploration matrix ``E (k, d)`` drawn from ``N(0, exp(log_std)^2)`` elementwise
    and kept for ``sample_freq`` acting calls. Within that window the noise is a smooth
    function of the state instead of white noise per step, which is what lets PPO leave the
    standing-still plateau on the PyBullet locomotion tasks.

    Over the draws of ``E`` an action is Gaussian with independent components of variance
    ``phi(s)^2 @ exp(log_std)^2``: that marginal is the policy's distribution (a
    :class:`machina.pds.GaussianPd` with a per-state ``log_std`` in ``a_i``), so every loss
    and estimator that works with :class:`GaussianPol` works unchanged.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Box
        One-dimensional Box, ``(d,)``.
    net : torch.nn.Module
        ``net(obs) -> (mean (B, d), features (B, k))``, e.g.
        :class:`machina.nets.SDEPolNet`.
    log_std_init : float
        Initial value of every entry of the ``(k, d)`` log-std of the exploration matrix.
    sample_freq : int
        Draw a new exploration matrix every ``sample_freq`` acting calls (calls made without
        autograd, as the samplers make them; one call acts for every environment). ``-1``:
        only when :meth:`reset_noise` is called (and at the first acting call).
    learn_features : bool
        Let the log-likelihood's gradient reach the net through the features' part in the
        standard deviation; False (the paper's default) detaches them there.
    normalize_ac : bool
        Scale ``ac`` from ``[-1, 1]`` to ``[low, high]`` for the environment.
    per_env_noise : bool
        One exploration matrix per row of an acting call's batch, i.e. per environment of a
        sampler (stable-baselines3's ``reset_noise(n_envs)``), drawn independently, so that
        the environments explore in different directions. False (default): one matrix for
        the whole batch, every environment's noise a function of its own features through
        the same matrix. Either way each action's marginal is the same Gaussian.

    Notes
    -----
    By default one exploration matrix serves the whole batch of an acting call (every
    environment of a sampler, each with its own features). With ``per_env_noise`` the
    matrices are ``(B, k, d)`` for a batch of ``B`` rows; an acting call with another number
    of rows (a sampler whose environments finished their quotas act in a smaller batch) draws
    a new set and restarts the window. Gradient-enabled calls (training) sample with the
    current matrix (per-row matrices when the batch has as many rows, else matrices drawn for
    that call alone) and never advance the schedule. The matrix and the call count are part of
    the policy's state: pickled with it to sampler workers (which go on drawing from the
    sampler's RNG) and saved in ``state_dict`` (its extra state), so a resumed run continues
    with the same noise.
    """

    action_space_types = (gym.spaces.Box,)
    #: the class default, so that policies pickled before the option existed still load
    per_env_noise = False

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        net: nn.Module,
        log_std_init: float = -2.0,
        sample_freq: int = 4,
        learn_features: bool = False,
        normalize_ac: bool = True,
        per_env_noise: bool = False,
    ) -> None:
        sample_freq = int(sample_freq)
        if sample_freq == 0 or sample_freq < -1:
            raise ValueError(
                f"sample_freq: expected a positive number of acting calls or -1 (only on "
                f"reset_noise), got {sample_freq}"
            )
        self._feature_dim = 0  # set by _check_net_outputs
        super().__init__(observation_space, action_space, net, rnn=False, normalize_ac=normalize_ac)
        self.pd = GaussianPd()
        dim = space_shape("action_space", action_space)[0]
        self.log_std = nn.Parameter(torch.full((self._feature_dim, dim), float(log_std_init)))
        self.sample_freq = sample_freq
        self.learn_features = bool(learn_features)
        self.per_env_noise = bool(per_env_noise)
        self.exploration_mat: torch.Tensor | None = None
        self._acting_calls = 0

    def _check_action_space(self, action_space: gym.Space) -> None:
        super()._check_action_space(action_space)
        check_flat_space("action_space", action_space, type(self).__name__)

    def _check_net_outputs(self, outputs: tuple[torch.Tensor, ...]) -> None:
        dim = space_shape("action_space", self.action_space)[0]
        what = f"(mean (..., {dim}), features (..., k)) with the same leading dims"
        if (
            len(outputs) != 2
            or tuple(outputs[0].shape[-1:]) != (dim,)
            or outputs[1].ndim != outputs[0].ndim
            or outputs[1].shape[:-1] != outputs[0].shape[:-1]
        ):
            raise self._net_output_error(what, outputs)
        self._feature_dim = int(outputs[1].shape[-1])

    def _features(self, features: torch.Tensor) -> torch.Tensor:
        return features if self.learn_features else features.detach()

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        mean, features = outputs
        variance = self._features(features).pow(2) @ torch.exp(2.0 * self.log_std)
        return dict(mean=mean, log_std=0.5 * torch.log(variance + SDE_VAR_EPS), features=features)

    def _mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return params["mean"]

    def reset_noise(self, batch_size: int | None = None) -> torch.Tensor:
        """Draw new exploration matrices (from torch's current RNG) and return them.

        Parameters
        ----------
        batch_size : int, optional
            With ``per_env_noise``: how many matrices (rows of the acting batch); default
            as many as now (1 before the first draw). Ignored without it.

        Returns
        -------
        torch.Tensor
            ``(k, d)``, or ``(batch_size, k, d)`` with ``per_env_noise``.
        """
        if self.per_env_noise and batch_size is None:
            mat = self.exploration_mat
            batch_size = 1 if mat is None or mat.ndim != 3 else int(mat.shape[0])
        self.exploration_mat = self._draw(batch_size)
        self._acting_calls = 0
        return self.exploration_mat

    def _draw(self, batch_size: int | None) -> torch.Tensor:
        """Fresh matrices: ``(k, d)``, or ``(batch_size, k, d)`` with ``per_env_noise``."""
        # a normal tensor even when drawn in the sampler's inference mode, so that training
        # calls (learn_features=True) may save it for backward
        with torch.inference_mode(False), torch.no_grad():
            std = torch.exp(self.log_std)
            if self.per_env_noise:
                if batch_size is None or int(batch_size) < 1:
                    raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
                std = std.expand(int(batch_size), *std.shape)
            return std * torch.randn_like(std)

    def _act(
        self, obs: Any, hs: HiddenState | None, h_masks: Any, deterministic: bool
    ) -> ActResult:
        obs = self._obs_to_tensor(obs)
        outputs, _ = self._call_net(obs, hs, h_masks)
        params = self._pd_params(outputs)
        features, mean = params.pop("features"), params["mean"]
        if deterministic:
            ac = mean
        else:
            ac = mean + self._noise(self._features(features))
        return self._ac_real_numpy(ac.detach()), ac, params

    def pd_params(
        self, obs: Any, hs: HiddenState | None = None, h_masks: Any = None
    ) -> dict[str, torch.Tensor]:
        params = super().pd_params(obs, hs, h_masks)
        params.pop("features")
        return params

    def numpy_inference(self) -> dict[str, Any] | None:
        """The numpy copy's spec (see ``BasePol.numpy_inference``) for a ``GaussianSDEPol``
        itself on machina's ``SDEPolNet``, or None.

        Returns
        -------
        dict or None
            ``kind``: ``"gaussian_sde"``; ``ops``: the net's ops, the mean's linear layer
            last (no tanh; its input, the last hidden activations, are the features ``(k,)``);
            ``log_std`` ``(k, d)``, the exploration matrix's; ``exploration_mat``: a call
            on the batch size that returns the matrix an acting call uses, ``(k, d)``
            float32 (``(B, k, d)`` with ``per_env_noise``), drawing and
            counting as the torch path's acting call does (so both paths draw the same
            matrices at the same steps); ``var_eps``: the variance's ``eps``; and the entries
            every kind shares.
        """
        if type(self) is not GaussianSDEPol or type(self.pd) is not GaussianPd:
            return None
        if not self._numpy_ready() or self.net is None:
            return None
        ops = sde_net_ops(self.net)
        if ops is None:
            return None
        spec = self._numpy_spec("gaussian_sde", ops)
        spec["log_std"] = self.log_std.detach().numpy()
        spec["exploration_mat"] = self._acting_exploration_mat
        spec["var_eps"] = SDE_VAR_EPS
        return spec

    def _acting_exploration_mat(self, batch_size: int) -> Any:
        """What an acting call on ``batch_size`` rows uses, as a numpy view (the numpy path
        calls this every step, without autograd's state to read)."""
        return self._scheduled_mat(True, batch_size).cpu().numpy()

    def get_extra_state(self) -> dict[str, Any]:
        """The exploration matrix (empty before the first draw) and the acting-call count."""
        mat = self.exploration_mat
        return {
            "exploration_mat": torch.empty(0) if mat is None else mat.detach().clone(),
            "acting_calls": int(self._acting_calls),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        mat = state["exploration_mat"]
        # in this policy's dtype and device, as load_state_dict copies parameters into them
        # (a float32 policy's state loaded into a float64 one)
        log_std = self.log_std
        self.exploration_mat = (
            None
            if mat.numel() == 0
            else mat.detach().to(device=log_std.device, dtype=log_std.dtype, copy=True)
        )
        self._acting_calls = int(state["acting_calls"])

    def _noise(self, features: torch.Tensor) -> torch.Tensor:
        """``features @ E`` for ``features (..., k)``: ``(..., d)``, each row through its own
        matrix with ``per_env_noise``."""
        flat = features.reshape(-1, features.shape[-1])
        # acting (autograd off) advances the resampling schedule
        mat = self._scheduled_mat(not torch.is_grad_enabled(), flat.shape[0])
        # (a no-op unless the net's outputs differ from log_std in device or dtype)
        mat = mat.to(device=features.device, dtype=features.dtype)
        if mat.ndim == 2:
            return features @ mat
        noise = torch.bmm(flat.unsqueeze(1), mat).squeeze(1)
        return noise.reshape(*features.shape[:-1], noise.shape[-1])

    def _scheduled_mat(self, acting: bool, batch_size: int) -> torch.Tensor:
        """The current matrices for a batch of ``batch_size`` rows, redrawn when missing, of
        another shape or, for an acting call, stale; an acting call advances the schedule. A
        training call whose batch the per-row matrices do not fit gets matrices of its own."""
        mat, log_std = self.exploration_mat, self.log_std
        if mat is not None and (mat.dtype != log_std.dtype or mat.device != log_std.device):
            # the policy was moved (.double(), .half(), .to(device)) after the draw: the
            # matrix follows it as a buffer would, same draw, so the window goes on (a normal
            # tensor even in inference mode: see _draw)
            with torch.inference_mode(False), torch.no_grad():
                mat = mat.to(device=log_std.device, dtype=log_std.dtype)
            self.exploration_mat = mat
        shape = (batch_size, *log_std.shape) if self.per_env_noise else log_std.shape
        stale = self.sample_freq > 0 and self._acting_calls >= self.sample_freq
        if mat is None or mat.shape != shape or (acting and stale):
            if not acting and mat is not None and self.per_env_noise:
                return self._draw(batch_size)
            mat = self.reset_noise(batch_size)
        if acting:
            self._acting_calls += 1
        return mat
