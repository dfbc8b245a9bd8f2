"""Greedy (epsilon-greedy) policy with respect to a Q function (DQN, QT-Opt)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.pols.base import ActResult, BasePol
from machina.utils.recurrent import HiddenState


class ArgmaxQfPol(BasePol):
    """``ac = argmax_a Q(obs, a)``, or a uniformly random action with probability ``eps``.

    Parameters
    ----------
    observation_space : gymnasium.Space
        Space of one observation.
    action_space : gymnasium.spaces.Discrete or Box
        Discrete: the argmax enumerates every action (``DeterministicSAVfunc.max``). Box
        (one-dimensional): it is searched by the cross-entropy method
        (``CEMDeterministicSAVfunc.max``).
    qfunc : machina.vfuncs.DeterministicSAVfunc
        Q function with ``max(obs) -> (max_qs (B,), max_acs)``; its parameters are the
        policy's.
    rnn : bool
        Only False: the argmax is searched for each observation on its own.
    normalize_ac : bool
        Box only: actions are in ``[-1, 1]``, scaled to ``[low, high]``; must agree with the
        Q function's ``normalize_ac``.
    eps : float
        Probability of a random action when sampling (epsilon-greedy exploration); change it
        between ``sample`` calls to anneal it. :meth:`deterministic_ac_real` is always greedy.

    The positional order is machina 0.x's; a number in ``rnn``'s place is read as ``eps`` of
    the order ``(observation_space, action_space, qfunc, eps, normalize_ac)``.

    Notes
    -----
    ``a_i`` holds ``max_q`` (B,), the greedy action's Q value. :attr:`pd` is None.
    """

    action_space_types = (gym.spaces.Discrete, gym.spaces.Box)
    uses_net = False

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        qfunc: nn.Module,
        rnn: bool = False,
        normalize_ac: bool = True,
        eps: float = 0.2,
    ) -> None:
        if isinstance(rnn, float) or (isinstance(rnn, int) and not isinstance(rnn, bool)):
            eps, rnn = rnn, False  # (observation_space, action_space, qfunc, eps, normalize_ac)
        if rnn:
            raise ValueError(
                f"rnn: {type(self).__name__} supports only False (qfunc.max searches each "
                f"observation on its own), given {rnn!r}"
            )
        super().__init__(
            observation_space, action_space, None, rnn=False, normalize_ac=normalize_ac
        )
        owner = type(self).__name__
        if not isinstance(qfunc, nn.Module) or not callable(getattr(qfunc, "max", None)):
            raise ValueError(
                f"qfunc: {owner} needs a Q function with max(obs) (DeterministicSAVfunc for "
                f"Discrete, CEMDeterministicSAVfunc for Box), got {type(qfunc).__name__}"
            )
        # what the class defining max declares it searches (a subclass's own max for a Box
        # is its author's business)
        definer = next((c for c in type(qfunc).__mro__ if "max" in vars(c)), None)
        searchable = vars(definer).get("max_action_space_types") if definer else None
        if searchable is not None and not isinstance(action_space, searchable):
            raise ValueError(
                f"qfunc: {type(qfunc).__name__}.max searches "
                f"{' or '.join(t.__name__ for t in searchable)} actions, not {action_space!r} "
                "(DeterministicSAVfunc for Discrete, CEMDeterministicSAVfunc for Box)"
            )
        if getattr(qfunc, "action_space", action_space) != action_space:
            raise ValueError(
                f"qfunc: its action_space {qfunc.action_space!r} differs from {owner}'s "
                f"{action_space!r}"
            )
        if isinstance(action_space, gym.spaces.Box) and (
            bool(getattr(qfunc, "normalize_ac", self.normalize_ac)) != self.normalize_ac
        ):
            raise ValueError(
                f"normalize_ac: {owner} has normalize_ac={self.normalize_ac} but qfunc searches "
                f"with normalize_ac={qfunc.normalize_ac}; they must agree"
            )
        self.qfunc = qfunc
        self.eps = eps

    @property
    def eps(self) -> float:
        return self._eps

    @eps.setter
    def eps(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"eps: expected a probability in [0, 1], got {value!r}")
        self._eps = float(value)

    def _random_acs(self, lead: torch.Size, device: torch.device) -> torch.Tensor:
        if isinstance(self.action_space, gym.spaces.Discrete):
            return torch.randint(int(self.action_space.n), lead, device=device)
        shape = lead + tuple(self.action_space.shape)
        low, high = (-1.0, 1.0) if self.normalize_ac else (self._ac_low, self._ac_high)
        return low + torch.rand(shape, device=device) * (high - low)

    def _act(
        self, obs: Any, hs: HiddenState | None, h_masks: Any, deterministic: bool
    ) -> ActResult:
        obs = self._obs_to_tensor(obs)
        if obs.ndim == len(self.observation_space.shape) + 1:
            max_qs, ac = self.qfunc.max(obs)
        else:  # more leading dims: search them flattened
            lead = obs.shape[: obs.ndim - len(self.observation_space.shape)]
            max_qs, ac = self.qfunc.max(obs.flatten(0, len(lead) - 1))
            max_qs, ac = max_qs.reshape(lead), ac.reshape(lead + ac.shape[1:])
        if not deterministic and self.eps > 0.0:
            lead = max_qs.shape
            explore = torch.rand(lead, device=obs.device) < self.eps
            random_acs = self._random_acs(lead, obs.device).to(ac.dtype)
            mask = explore.reshape(lead + (1,) * (ac.ndim - len(lead)))
            ac = torch.where(mask, random_acs, ac)
        ac = ac.detach()
        return self._ac_real_torch(ac), ac, dict(max_q=max_qs.detach())
