"""Mixture of diagonal Gaussians."""

import torch

from machina.pds.base import NO_SAMPLE_SHAPE, BasePd, Params, check_sample, safe_log
from machina.pds.categorical_pd import sample_categorical
from machina.pds.gaussian_pd import GaussianPd
from machina.utils import batch_share

_GAUSSIAN = GaussianPd()


class MixtureGaussianPd(BasePd):
    """Mixture of ``K`` diagonal Gaussians over ``d`` action dims.

    Parameters come as ``dict(pi=(*lead, K), mean=(*lead, K, d), log_std=...)``: ``pi`` holds
    the mixture weights (probabilities summing to 1 over ``K``), ``mean`` and ``log_std`` the
    components' parameters, ``log_std`` broadcastable to ``mean`` (e.g. a state-independent
    ``(K, d)``).

    ``sample`` and ``llh`` are exact. A mixture's KL divergence and entropy have no closed
    form; :meth:`kl_pq` (an upper bound; for mixtures of different sizes an approximation)
    and :meth:`ent` (a pairwise-KL estimate) are deterministic and differentiable (usable in
    losses, unlike Monte-Carlo estimates), and exact for one component.
    """

    param_keys = ("pi", "mean", "log_std")

    def __init__(
        self, observation_space: object | None = None, action_space: object | None = None
    ) -> None:
        # machina 0.x's constructor took the spaces; the distribution does not need them.
        del observation_space, action_space
        self.gaussian_pd = GaussianPd()  # 0.x's attribute: one component's distribution

    def _components(self, params: Params, name: str = "params") -> tuple[torch.Tensor, ...]:
        pi, mean, log_std = self._get(params, name)
        if pi.ndim + 1 != mean.ndim or pi.shape[-1] != mean.shape[-2]:
            raise ValueError(
                f"{name}: MixtureGaussianPd needs pi (*lead, K) and mean (*lead, K, d), got pi "
                f"{tuple(pi.shape)} and mean {tuple(mean.shape)}"
            )
        return pi, mean, log_std.expand_as(mean)

    def sample(self, params: Params, sample_shape: torch.Size = NO_SAMPLE_SHAPE) -> torch.Tensor:
        """Draw a component from ``pi``, then a Gaussian sample of it.

        The component draw is discrete (no gradient flows to ``pi``); the Gaussian draw is
        reparameterised (gradients flow to the chosen component's ``mean`` and ``log_std``).

        Parameters
        ----------
        params : dict
            ``pi (*lead, K)``, ``mean (*lead, K, d)``, ``log_std`` broadcastable to ``mean``.
        sample_shape : torch.Size
            Extra leading sample dims.

        Returns
        -------
        torch.Tensor
            ``(*sample_shape, *lead, d)``.
        """
        pi, mean, log_std = self._components(params)
        sample_shape = torch.Size(sample_shape)
        ks = sample_categorical(pi, sample_shape)  # (*sample_shape, *lead)
        index = ks[..., None, None].expand(*ks.shape, 1, mean.shape[-1])
        full = sample_shape + mean.shape
        chosen_mean = torch.gather(mean.expand(full), -2, index).squeeze(-2)
        chosen_log_std = torch.gather(log_std.expand(full), -2, index).squeeze(-2)
        noise = batch_share.randn_like(chosen_mean, lead=len(sample_shape))
        return chosen_mean + torch.exp(chosen_log_std) * noise

    def _component_llhs(
        self, x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
    ) -> torch.Tensor:
        """``log N(x; mean_k, std_k)`` per component: ``(*lead, K)``."""
        return _GAUSSIAN.llh(x.unsqueeze(-2), dict(mean=mean, log_std=log_std))

    def llh(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """``log sum_k pi_k N(x; mean_k, std_k)`` of ``x (*lead, d)``: ``(*lead,)``."""
        pi, mean, log_std = self._components(params)
        check_sample(x, mean, "MixtureGaussianPd", event_dims=2)
        return torch.logsumexp(safe_log(pi) + self._component_llhs(x, mean, log_std), dim=-1)

    def _pairwise_kl(
        self,
        p_mean: torch.Tensor,
        p_log_std: torch.Tensor,
        q_mean: torch.Tensor,
        q_log_std: torch.Tensor,
    ) -> torch.Tensor:
        """``KL(p_a || q_b)`` between every pair of components: ``(*lead, K_p, K_q)``."""
        p = dict(mean=p_mean.unsqueeze(-2), log_std=p_log_std.unsqueeze(-2))
        q = dict(mean=q_mean.unsqueeze(-3), log_std=q_log_std.unsqueeze(-3))
        return _GAUSSIAN.kl_pq(p, q)

    def kl_pq(self, p_params: Params, q_params: Params) -> torch.Tensor:
        """Upper bound of KL(p || q) over components matched by index: ``(*lead,)``.

        ::

            KL(pi || w) + sum_a pi_a KL(p_a || q_a)

        with weights ``pi`` of ``p`` and ``w`` of ``q``: the KL of the joint distributions of
        component and action, which bounds that of the actions (chain rule). Never negative
        and zero only where ``p`` equals ``q``, so its gradient vanishes there and its
        Hessian (TRPO's Fisher matrix) is positive semi-definite; the Gaussian KL for one
        component, and the exact KL in the limit of well-separated components. It fits what
        the losses compare: two outputs of one policy head, whose component ``a`` is the same
        unit in both. (machina 0.x used Hershey & Olsen's variational approximation, which
        goes negative for overlapping components of unequal weights and has its minimum away
        from ``q = p``: minimised, it moved a policy away from its target; it remains for
        mixtures of different sizes, whose components cannot be matched.)
        """
        p_pi, p_mean, p_log_std = self._components(p_params, "p_params")
        q_pi, q_mean, q_log_std = self._components(q_params, "q_params")
        if p_pi.shape[-1] != q_pi.shape[-1]:  # nothing to match: 0.x's approximation
            return self._variational_kl(p_pi, p_mean, p_log_std, q_pi, q_mean, q_log_std)
        weights = p_pi * (safe_log(p_pi) - safe_log(q_pi))
        components = _GAUSSIAN.kl_pq(
            dict(mean=p_mean, log_std=p_log_std), dict(mean=q_mean, log_std=q_log_std)
        )  # (*lead, K)
        return torch.sum(weights + p_pi * components, dim=-1)

    def _variational_kl(
        self,
        p_pi: torch.Tensor,
        p_mean: torch.Tensor,
        p_log_std: torch.Tensor,
        q_pi: torch.Tensor,
        q_mean: torch.Tensor,
        q_log_std: torch.Tensor,
    ) -> torch.Tensor:
        """Hershey & Olsen's variational approximation of KL(p || q) (ICASSP 2007, eq. 20),
        for mixtures of different sizes: ``(*lead,)``. Zero for equal mixtures, but it can
        go negative for overlapping components of unequal weights."""
        kl_pp = self._pairwise_kl(p_mean, p_log_std, p_mean, p_log_std)
        kl_pq = self._pairwise_kl(p_mean, p_log_std, q_mean, q_log_std)
        log_self = torch.logsumexp(safe_log(p_pi).unsqueeze(-2) - kl_pp, dim=-1)
        log_other = torch.logsumexp(safe_log(q_pi).unsqueeze(-2) - kl_pq, dim=-1)
        return torch.sum(p_pi * (log_self - log_other), dim=-1)

    def ent(self, params: Params) -> torch.Tensor:
        """Pairwise-KL estimate of the entropy, an upper bound: ``(*lead,)``.

        Kolchinsky & Tracey, 2017, "Estimating mixture entropy with pairwise distances",
        eq. (10)::

            sum_a pi_a H(p_a) - sum_a pi_a log sum_b pi_b exp(-KL(p_a || p_b))

        It lies between the components' mean entropy and that plus the entropy of ``pi``,
        and equals the entropy for one component and for well-separated components.
        """
        pi, mean, log_std = self._components(params)
        comp_ent = _GAUSSIAN.ent(dict(mean=mean, log_std=log_std))  # (*lead, K)
        kl = self._pairwise_kl(mean, log_std, mean, log_std)
        overlap = torch.logsumexp(safe_log(pi).unsqueeze(-2) - kl, dim=-1)
        return torch.sum(pi * (comp_ent - overlap), dim=-1)
