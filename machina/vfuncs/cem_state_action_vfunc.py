"""Q(s, a) whose maximum over continuous actions is found by the cross-entropy method."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from machina.utils import batch_share
from machina.utils.spaces import check_flat_space
from machina.vfuncs.deterministic_state_action_vfunc import DeterministicSAVfunc


class CEMDeterministicSAVfunc(DeterministicSAVfunc):
    """Deterministic Q(s, a) on Box actions with ``max`` by the cross-entropy method (CEM).

    CEM, as QT-Opt uses it (Kalashnikov et al., 2018): draw ``num_sampling`` actions uniformly
    in the action bounds, keep the ``num_best_sampling`` with the highest Q, fit a Gaussian to
    them and draw again from it, ``num_iter`` times; the best action seen is the argmax. All
    observations of a batch are searched at once, in one net call per iteration.

    Parameters
    ----------
    observation_space, action_space, net, rnn
        As :class:`DeterministicSAVfunc`; ``action_space`` a one-dimensional Box.
    num_sampling : int
        Actions evaluated per observation and iteration.
    num_best_sampling : int
        Elite actions the Gaussian is fitted to.
    num_iter : int
        Refits; ``num_iter + 1`` rounds of evaluations in all.
    multivari : bool
        Fit a full covariance (True) or a diagonal one.
    delta : float
        Added to the covariance's diagonal (variance, when diagonal) to keep it positive.
    save_memory : bool
        Search one observation at a time instead of the whole batch at once.
    normalize_ac : bool
        Search ``[-1, 1]`` (the action space of policies with ``normalize_ac=True``, the
        default) instead of ``[low, high]``.
    """

    action_space_types = (gym.spaces.Box,)
    max_action_space_types = (gym.spaces.Box,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        net: nn.Module,
        rnn: bool = False,
        num_sampling: int = 64,
        num_best_sampling: int = 6,
        num_iter: int = 2,
        multivari: bool = True,
        delta: float = 1e-4,
        save_memory: bool = False,
        normalize_ac: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, net, rnn=rnn)
        owner = type(self).__name__
        check_flat_space("action_space", action_space, owner)
        if not 1 <= num_best_sampling <= num_sampling:
            raise ValueError(
                f"num_best_sampling: {owner} needs 1 <= num_best_sampling <= num_sampling "
                f"({num_sampling}), got {num_best_sampling!r}"
            )
        if num_iter < 0:
            raise ValueError(f"num_iter: {owner} needs an int >= 0, got {num_iter!r}")
        self.normalize_ac = bool(normalize_ac)
        if not self.normalize_ac and not action_space.is_bounded("both"):
            raise ValueError(
                f"action_space: {owner} with normalize_ac=False searches [low, high] and needs "
                f"finite bounds, got {action_space!r}"
            )
        self.num_sampling = int(num_sampling)
        self.num_best_sampling = int(num_best_sampling)
        self.num_iter = int(num_iter)
        self.multivari = bool(multivari)
        self.delta = float(delta)
        self.save_memory = bool(save_memory)
        if self.normalize_ac:
            low, high = -torch.ones(action_space.shape), torch.ones(action_space.shape)
        else:
            low = torch.as_tensor(action_space.low, dtype=torch.float32)
            high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.register_buffer("_search_low", low.to(self.device), persistent=False)
        self.register_buffer("_search_high", high.to(self.device), persistent=False)

    def max(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate maximum of Q over actions, and the maximising action.

        Parameters
        ----------
        obs : array-like
            ``(B, *ob_shape)``.

        Returns
        -------
        max_qs : torch.Tensor
            ``(B,)``, without gradient.
        max_acs : torch.Tensor
            ``(B, d)`` in the searched bounds, without gradient.
        """
        if self.rnn:
            raise NotImplementedError(f"{type(self).__name__}.max: recurrent nets (rnn=True)")
        obs = self._obs_to_tensor(obs)
        if obs.ndim != len(self.observation_space.shape) + 1:
            raise ValueError(
                f"obs: {type(self).__name__}.max expects (B, *ob_shape), got {tuple(obs.shape)}"
            )
        with torch.no_grad():
            if not self.save_memory:
                return self._cem(obs)
            share = batch_share.current()
            if share is None or share.axis != 0 or len(obs) != share.stop - share.start:
                results = [self._cem(ob[None]) for ob in obs]
            else:
                # A rank's share of a minibatch: one process searches every row in turn, so
                # make the other rows' draws too (and drop them) to draw what it draws.
                with batch_share.drawing_for(None):
                    self._skip_rows(share.start, obs.device)
                    results = [self._cem(ob[None]) for ob in obs]
                    self._skip_rows(share.size - share.stop, obs.device)
        return torch.cat([q for q, _ in results]), torch.cat([ac for _, ac in results])

    def _skip_rows(self, rows: int, device: torch.device) -> None:
        """The random draws of ``rows`` one-row searches (``_cem``), without the search."""
        shape = (1, self.num_sampling, self._search_low.shape[0])
        for _ in range(rows):
            torch.rand(shape, device=device)
            for _ in range(self.num_iter):
                torch.randn(shape, device=device)

    def _cem(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch_size, n, k = obs.shape[0], self.num_sampling, self.num_best_sampling
        low, high = self._search_low, self._search_high
        dim = low.shape[0]
        obs_rep = obs.unsqueeze(1).expand(batch_size, n, *obs.shape[1:])
        uniform = batch_share.rand((batch_size, n, dim), device=obs.device)
        samples = low + uniform * (high - low)
        best_qs = torch.full((batch_size,), -torch.inf, device=obs.device)
        best_acs = samples[:, 0]
        rows = torch.arange(batch_size, device=obs.device)
        for i in range(self.num_iter + 1):
            qs, _ = self._call_net(obs_rep, extra=(samples,))
            qs = qs[0].reshape(batch_size, n)
            round_qs, round_idx = qs.max(dim=1)
            better = round_qs > best_qs
            best_qs = torch.where(better, round_qs, best_qs)
            best_acs = torch.where(better[:, None], samples[rows, round_idx], best_acs)
            if i == self.num_iter:
                break
            elite_idx = torch.topk(qs, k, dim=1).indices  # (B, k)
            elite = torch.gather(samples, 1, elite_idx[..., None].expand(batch_size, k, dim))
            samples = self._refit(elite, n).clamp(low, high)
        return best_qs, best_acs

    def _refit(self, elite: torch.Tensor, n: int) -> torch.Tensor:
        """Fit a Gaussian to ``elite (B, k, d)`` and draw ``(B, n, d)`` from it."""
        mean = elite.mean(dim=1, keepdim=True)  # (B, 1, d)
        centred = elite - mean
        count = max(elite.shape[1] - 1, 1)
        # drawn in float32 whatever the net's dtype: the same draws (and _skip_rows') as ever
        noise = batch_share.randn((elite.shape[0], n, elite.shape[2]), device=elite.device)
        noise = noise.to(elite.dtype)
        if not self.multivari:
            std = torch.sqrt(centred.pow(2).sum(dim=1, keepdim=True) / count + self.delta)
            return mean + std * noise
        # in float64: the elite's covariance has rank < k, and float32's rounding (~1e-7 of
        # the variance) outgrew delta on wide action ranges (+-100): Cholesky then failed
        wide = centred.to(torch.float64)
        cov = wide.transpose(1, 2) @ wide / count  # (B, d, d)
        cov = cov + self.delta * torch.eye(cov.shape[-1], device=cov.device, dtype=cov.dtype)
        chol = torch.linalg.cholesky(cov).to(elite.dtype)
        return mean + noise @ chol.transpose(1, 2)
