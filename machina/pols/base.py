"""Base class of policies: action-space checks, action conversion and the act loop."""

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.pds.base import BasePd
from machina.pols._recurrent import HiddenState, RecurrentMixin
from machina.pols._spaces import check_space

ActResult = tuple[np.ndarray, torch.Tensor, dict[str, torch.Tensor]]


class BasePol(RecurrentMixin, nn.Module):
    """A policy: maps observations to an action for the environment and one for learning.

    Subclasses set :attr:`action_space_types` and implement :meth:`_check_net_outputs`,
    :meth:`_pd_params` and :meth:`_mode`; everything else (observation conversion, hidden
    state, sampling, action conversion) is shared here.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation; ``obs`` must end with its shape.
    action_space : gymnasium.Space
        Space of one action, checked against :attr:`action_space_types`.
    net : torch.nn.Module or None
        Feed-forward ``net(obs)`` or recurrent ``net(obs, hs, h_masks)`` with ``init_hs``.
    rnn : bool
        Whether ``net`` is recurrent.
    normalize_ac : bool
        Box actions only: the policy acts in ``[-1, 1]``, scaled linearly to ``[low, high]``.

    Attributes
    ----------
    pd : BasePd or None
        Distribution of ``ac`` given the parameters in ``a_i``.
    hs : HiddenState or None
        Hidden state stored by the last recurrent call (see :meth:`reset`).
    """

    action_space_types: tuple[type, ...] = (
        gym.spaces.Box,
        gym.spaces.Discrete,
        gym.spaces.MultiDiscrete,
    )
    #: whether the policy calls ``net`` (RandomPol does not).
    uses_net: bool = True

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        net: nn.Module | None = None,
        rnn: bool = False,
        normalize_ac: bool = True,
    ) -> None:
        super().__init__()
        self.normalize_ac = bool(normalize_ac)
        self._check_action_space(action_space)
        self.action_space = action_space
        self._init_recurrent(observation_space, net, rnn)
        self.pd: BasePd | None = None
        self._register_action_buffers()
        if self.uses_net:
            self._check_net_outputs(self._check_net())

    def _check_action_space(self, action_space: gym.Space) -> None:
        check_space("action_space", action_space, self.action_space_types, type(self).__name__)
        bounded = isinstance(action_space, gym.spaces.Box) and action_space.is_bounded("both")
        if isinstance(action_space, gym.spaces.Box) and self.normalize_ac and not bounded:
            raise ValueError(
                f"action_space: {type(self).__name__} with normalize_ac=True needs finite Box "
                f"bounds to scale [-1, 1] onto, got {action_space!r}; pass normalize_ac=False"
            )

    def _register_action_buffers(self) -> None:
        """Bounds and offsets as non-persistent buffers, so they follow ``.to(device)``."""
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
            high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
            self.register_buffer("_ac_low", low, persistent=False)
            self.register_buffer("_ac_high", high, persistent=False)
        elif isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
            start = torch.as_tensor(np.asarray(space.start), dtype=torch.int64, device=self.device)
            self.register_buffer("_ac_start", start, persistent=False)

    def _check_net_outputs(self, outputs: tuple[torch.Tensor, ...]) -> None:
        """Raise ``ValueError`` naming ``net`` if its outputs do not fit ``action_space``."""
        raise NotImplementedError

    def _pd_params(self, outputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """Distribution parameters from the net's outputs."""
        raise NotImplementedError

    def _mode(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Most likely action in policy space."""
        raise NotImplementedError

    def _net_output_error(self, what: str, outputs: tuple[torch.Tensor, ...]) -> ValueError:
        shapes = [tuple(out.shape) for out in outputs]
        lead = "(1, 1)" if self.rnn else "(1,)"
        return ValueError(
            f"net: {type(self).__name__} for action_space {self.action_space!r} needs a net "
            f"returning {what}, got outputs of shapes {shapes} for a batch of leading dims {lead}"
        )

    def forward(self, obs: Any, hs: HiddenState | None = None, h_masks: Any = None) -> ActResult:
        """Sample an action.

        Parameters
        ----------
        obs : array-like
            ``(B, *ob_shape)``, or ``(T, B, *ob_shape)`` when recurrent; numpy or tensor.
        hs : HiddenState, optional
            Recurrent only: initial state, e.g. ``net.init_hs(B)``; default the stored one.
        h_masks : array-like, optional
            Recurrent only: ``(T, B)`` or ``(T, B, 1)``, 1 where an episode starts.

        Returns
        -------
        ac_real : numpy.ndarray
            Action for the environment, ``(*lead, *ac_shape)`` in ``action_space.dtype``.
        ac : torch.Tensor
            Sampled action in policy space, ``(*lead, *ac_shape)``; differentiable for Gaussian.
        a_i : dict of torch.Tensor
            Distribution parameters with leading ``(*lead,)``.
        """
        return self._act(obs, hs, h_masks, deterministic=False)

    def deterministic_ac_real(
        self, obs: Any, hs: HiddenState | None = None, h_masks: Any = None
    ) -> ActResult:
        """Like :meth:`forward` but ``ac`` is the distribution's mode (mean or argmax)."""
        return self._act(obs, hs, h_masks, deterministic=True)

    def pd_params(
        self, obs: Any, hs: HiddenState | None = None, h_masks: Any = None
    ) -> dict[str, torch.Tensor]:
        """Distribution parameters for ``obs``, differentiable, without drawing an action.

        What losses that sample actions themselves (SAC) or use the mode (DDPG) call: it
        skips :meth:`forward`'s sampling and conversion to numpy. Arguments as
        :meth:`forward`; returns the ``a_i`` that :meth:`forward` would.
        """
        obs = self._obs_to_tensor(obs)
        outputs, _ = self._call_net(obs, hs, h_masks)
        return self._pd_params(outputs)

    def _act(
        self, obs: Any, hs: HiddenState | None, h_masks: Any, deterministic: bool
    ) -> ActResult:
        obs = self._obs_to_tensor(obs)
        outputs, _ = self._call_net(obs, hs, h_masks)
        params = self._pd_params(outputs)
        ac = self._mode(params) if deterministic else self.pd.sample(params)
        return self._real_to_numpy(self._ac_to_real(ac.detach())), ac, params

    def convert_ac_for_real(self, ac: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map a policy-space action to the environment's action.

        Box: scaled linearly from ``[-1, 1]`` to ``[low, high]`` when ``normalize_ac``, then
        clipped to the bounds. Discrete / MultiDiscrete: shifted by the space's ``start``.

        Parameters
        ----------
        ac : numpy.ndarray or torch.Tensor
            ``(*lead, *ac_shape)`` in policy space.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Same type and shape as ``ac``; numpy results have ``action_space.dtype``.
        """
        if isinstance(ac, torch.Tensor):
            return self._ac_to_real(ac)
        return self._real_to_numpy(self._ac_to_real(torch.as_tensor(np.asarray(ac))))

    def _ac_to_real(self, ac: torch.Tensor) -> torch.Tensor:
        if isinstance(self.action_space, gym.spaces.Box):
            low = self._ac_low.to(ac.device)
            high = self._ac_high.to(ac.device)
            ac = ac.to(low.dtype)
            if self.normalize_ac:
                ac = low + (ac + 1.0) * 0.5 * (high - low)
            return torch.clamp(ac, low, high)
        return ac.long() + self._ac_start.to(ac.device)

    def _real_to_numpy(self, ac_real: torch.Tensor) -> np.ndarray:
        ac_real = ac_real.cpu().numpy().astype(self.action_space.dtype, copy=False)
        if isinstance(self.action_space, gym.spaces.Box):
            # clip again after the dtype cast: float32 bounds may round past float64 ones
            ac_real = np.clip(ac_real, self.action_space.low, self.action_space.high)
        return ac_real
