"""Base class of policies: action-space checks, action conversion and the act loop."""

import inspect
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.pds.base import BasePd
from machina.pds.categorical_pd import CategoricalPd, invalid_pi_error
from machina.pds.gaussian_pd import GaussianPd
from machina.pols.numpy_spec import gaussian_log_std, net_ops
from machina.utils.aliases import keyword_aliases
from machina.utils.recurrent import HiddenState, RecurrentMixin
from machina.utils.spaces import check_space, is_integer_box
from machina.utils.tensors import to_numpy

ActResult = tuple[np.ndarray, torch.Tensor, dict[str, torch.Tensor]]
_ONE = np.float32(1.0)


def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether a tensor of ``shape`` broadcasts to exactly ``target``.

    numpy's rule, which is torch's: ``torch.broadcast_shapes`` imports torch's symbolic
    shapes module on first use, a third of a second in every process building a policy.
    """
    try:
        return np.broadcast_shapes(tuple(shape), tuple(target)) == tuple(target)
    except ValueError:
        return False
    except RuntimeError:  # more axes than numpy handles (32 in numpy 2.x): torch's rule
        try:
            return tuple(torch.broadcast_shapes(shape, target)) == tuple(target)
        except RuntimeError:
            return False


def _a_i_shape(action_space: gym.Space) -> tuple[int, ...]:
    """machina 0.x's ``a_i_shape``: the action's shape, or the class count ``(n,)`` of a
    Discrete and ``(dims, most classes)`` of a MultiDiscrete."""
    if isinstance(action_space, gym.spaces.Discrete):
        return (int(action_space.n),)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        nvec = np.asarray(action_space.nvec).reshape(-1)
        return (len(nvec), int(nvec.max()))
    return tuple(action_space.shape or ())


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
    # action bounds (Box) or offset (Discrete, MultiDiscrete): buffers that follow .to(device)
    _ac_low: torch.Tensor
    _ac_high: torch.Tensor
    _ac_start: torch.Tensor

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
        # machina 0.x's attributes (its samplers read a_i_shape), unless a subclass defines
        # them itself (a read-only property could not be set)
        for name, value in (
            ("discrete", isinstance(action_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete)),
            ("multi", isinstance(action_space, gym.spaces.MultiDiscrete)),
            ("a_i_shape", _a_i_shape(action_space)),
        ):
            if not hasattr(type(self), name):
                setattr(self, name, value)
        self._init_recurrent(observation_space, net, rnn)
        self.pd: BasePd | None = None
        self._np_ac_bounds: tuple | None = None
        self._np_ac_start: np.ndarray | None = None
        self._register_action_buffers()
        if self.uses_net:
            self._check_net_outputs(self._check_net())

    def _check_action_space(self, action_space: gym.Space) -> None:
        check_space("action_space", action_space, self.action_space_types, type(self).__name__)
        bounded = isinstance(action_space, gym.spaces.Box) and action_space.is_bounded("both")
        if isinstance(action_space, gym.spaces.Box) and self.normalize_ac and not bounded:
            name = type(self).__name__
            # a class that always scales (TanhGaussianPol squashes into the bounds) takes no
            # normalize_ac: name what it can take
            remedy = (
                "pass normalize_ac=False"
                if "normalize_ac" in inspect.signature(type(self).__init__).parameters
                else f"{name} squashes actions into the bounds; give the space finite bounds "
                "or use GaussianPol(..., normalize_ac=False)"
            )
            raise ValueError(
                f"action_space: {name} with normalize_ac=True needs finite Box bounds to scale "
                f"[-1, 1] onto, got {action_space!r}; {remedy}"
            )

    def _register_action_buffers(self) -> None:
        """Bounds and offsets as non-persistent buffers, so they follow ``.to(device)``."""
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
            high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
            self.register_buffer("_ac_low", low, persistent=False)
            self.register_buffer("_ac_high", high, persistent=False)
            # numpy copies for the CPU path of _ac_real_numpy
            low_np, high_np = low.cpu().numpy(), high.cpu().numpy()
            float32_space = space.dtype == np.float32
            self._np_ac_bounds = (low_np, high_np, 0.5 * (high_np - low_np), float32_space)
        elif isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
            start = torch.as_tensor(np.asarray(space.start), dtype=torch.int64, device=self.device)
            self.register_buffer("_ac_start", start, persistent=False)
            # numpy copy for the CPU path of _ac_real_numpy, in the space's dtype
            self._np_ac_start = start.cpu().numpy().astype(space.dtype)

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

    @keyword_aliases(ob="obs")
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
        if deterministic:
            ac = self._mode(params)
        elif self.pd is None:
            raise NotImplementedError(f"{type(self).__name__} has no pd to sample from")
        else:
            ac = self.pd.sample(params)
        return self._ac_real_numpy(ac.detach()), ac, params

    def numpy_inference(self) -> dict[str, Any] | None:
        """What a numpy copy of this policy's act step needs, or None where it has none.

        The sampler's fast path (``EpiSampler(fast_inference=True)``) acts in numpy with
        this, so that ``machina.samplers`` needs no policy, distribution or net class. Only
        given where the arithmetic is known exactly: a ``GaussianPol`` or ``CategoricalPol``
        itself (a subclass may override any step) with its own distribution, on a
        feed-forward net that :func:`machina.pols.numpy_spec.net_ops` reads (machina's
        ``PolNet``, or an ``nn.Sequential`` of ``nn.Linear`` and elementwise activations
        ending in ``nn.Softmax`` or machina's stochastic head), everything on the CPU in
        float32, no forward hooks. (The policy's own class is matched by qualified name:
        this base module cannot import its subclasses.)

        Returns
        -------
        dict or None
            ``kind``: ``"gaussian"`` or ``"categorical"``; ``ops``: the net's forward as a
            list of ops (``("linear", W (out, in), b (out,))``, ``("act", name, params)``,
            ``("softmax",)``; see :mod:`machina.pols.numpy_spec`), float32 views of the
            parameters, ending in ``tanh`` for the Gaussian mean or softmax for the
            categorical ``pi``; ``layers``: ``[(W, b)]`` of the linear ops, in order;
            ``log_std`` (d,) (Gaussian); ``ac_real``: maps a policy-space action array
            (B, ...) to the environment's action; ``ac_is_real``: True when that map is the
            identity (Discrete starting at 0); ``invalid_pi``: maps probabilities
            ``pi (B, n)`` to the ``ValueError`` the torch path raises for them.
            ``GaussianSDEPol`` gives kind ``"gaussian_sde"`` (see its override).
        """

        def qualname(obj: Any) -> str:
            return f"{type(obj).__module__}.{type(obj).__qualname__}"

        kinds = {
            "machina.pols.gaussian_pol.GaussianPol": ("gaussian", GaussianPd),
            "machina.pols.categorical_pol.CategoricalPol": ("categorical", CategoricalPd),
        }
        kind, pd_cls = kinds.get(qualname(self), (None, None))
        net, ob_shape = self.net, self.observation_space.shape
        if kind is None or type(self.pd) is not pd_cls or not self._numpy_ready():
            return None
        if net is None or ob_shape is None:  # _numpy_ready checked; for the type checker
            return None
        ops = net_ops(net, kind, len(ob_shape))
        if ops is None:
            return None
        spec = self._numpy_spec(kind, ops)
        if kind == "gaussian":
            spec["log_std"] = gaussian_log_std(net)
        return spec

    def _numpy_ready(self) -> bool:
        """Whether a numpy copy can stand for this policy's act step at all, whatever its
        net: feed-forward, everything on the CPU in float32, no forward hooks, no own
        ``convert_ac_for_real``, and the numpy copies of the action conversion (absent in
        policies pickled by an older version)."""
        if self.rnn or self.net is None or self.observation_space.shape is None:
            return False
        if self._own_convert_ac_for_real():  # the numpy copy converts with BasePol's arithmetic
            return False
        tensors = list(self.parameters()) + list(self.buffers())
        if any(not t.is_cpu for t in tensors) or torch.get_default_dtype() != torch.float32:
            return False
        if any(p.dtype != torch.float32 for p in self.parameters()):
            return False
        if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
            return False
        # hooks, a forward set on an instance, or autocast (torch's Linear in bfloat16): not
        # the float32 arithmetic of the copy
        if any(
            m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__
            for m in self.modules()
        ):
            return False
        if torch.is_autocast_enabled("cpu"):
            return False
        bounds, start = self.__dict__.get("_np_ac_bounds"), self.__dict__.get("_np_ac_start")
        return bounds is not None or start is not None

    def _numpy_spec(self, kind: str, ops: list[tuple[Any, ...]]) -> dict[str, Any]:
        """The entries of :meth:`numpy_inference`'s spec every kind shares."""
        start = self.__dict__.get("_np_ac_start")
        return {
            "kind": kind,
            "ops": ops,
            "layers": [(op[1], op[2]) for op in ops if op[0] == "linear"],
            "ac_real": self._ac_real_from_numpy,
            "ac_is_real": (
                start is not None
                and start.dtype == np.int64
                and start.ndim == 0
                and int(start) == 0
            ),
            "invalid_pi": lambda pi: invalid_pi_error(torch.from_numpy(pi)),
        }

    @keyword_aliases(x="ac")
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

    def _own_convert_ac_for_real(self) -> bool:
        """Whether :meth:`convert_ac_for_real` is overridden (by a subclass, or set on the
        instance): machina 0.x's ``forward`` and ``deterministic_ac_real`` returned
        ``self.convert_ac_for_real(ac)``, so an override is that policy's conversion."""
        return (
            type(self).convert_ac_for_real is not BasePol.convert_ac_for_real
            or "convert_ac_for_real" in self.__dict__
        )

    def _ac_real_by_override(self, ac: torch.Tensor) -> np.ndarray:
        """The environment's action through an overriding :meth:`convert_ac_for_real`,
        given a numpy copy of ``ac`` as 0.x gave it (a copy: an override that writes into
        its argument must not change the ``ac`` returned beside it)."""
        arr = np.array(to_numpy(ac.detach(), bfloat16_as_float32=True), copy=True)
        return np.asarray(to_numpy(self.convert_ac_for_real(arr), bfloat16_as_float32=True))

    def _ac_real_torch(self, ac: torch.Tensor) -> np.ndarray:
        """``_real_to_numpy(_ac_to_real(ac))`` in torch, or through an overriding
        :meth:`convert_ac_for_real`; for subclasses that act without :meth:`_ac_real_numpy`."""
        if self._own_convert_ac_for_real():
            return self._ac_real_by_override(ac)
        return self._real_to_numpy(self._ac_to_real(ac))

    def _ac_real_numpy(self, ac: torch.Tensor) -> np.ndarray:
        """``_real_to_numpy(_ac_to_real(ac))``: the environment's action for a detached ``ac``.

        On the CPU the same arithmetic runs in numpy on the tensor's memory, with the bounds
        kept as arrays: no per-call device moves or tiny torch kernels (see "Measurements
        behind the code" in example/benchmarks/README.md). Subclasses that override either
        conversion keep their own path; one that overrides :meth:`convert_ac_for_real`
        (machina 0.x's hook) gets its action from it.
        """
        if self._own_convert_ac_for_real():
            return self._ac_real_by_override(ac)
        cls = type(self)
        # (read from __dict__: a policy pickled by an older version has neither)
        bounds, start = self.__dict__.get("_np_ac_bounds"), self.__dict__.get("_np_ac_start")
        if (
            not ac.is_cpu
            or cls._ac_to_real is not BasePol._ac_to_real
            or cls._real_to_numpy is not BasePol._real_to_numpy
            or (bounds is None and start is None)  # a subclass registered its own buffers
        ):
            return self._real_to_numpy(self._ac_to_real(ac))
        # numpy has no bfloat16: its values as float32 (exact), which the bounds are in
        return self._ac_real_from_numpy(to_numpy(ac, bfloat16_as_float32=True))

    def _ac_real_from_numpy(self, arr: np.ndarray) -> np.ndarray:
        """The numpy arithmetic of :meth:`_ac_real_numpy`, for a policy-space action array
        ``arr`` of a policy whose conversions are BasePol's own (the caller checks)."""
        bounds, start = self.__dict__.get("_np_ac_bounds"), self.__dict__.get("_np_ac_start")
        if bounds is None:  # Discrete, MultiDiscrete: start is set
            start = cast(np.ndarray, start)
            return (arr.astype(np.int64, copy=False) + start).astype(start.dtype, copy=False)
        low, high, half_range, float32_space = bounds
        if arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        if self.normalize_ac:
            # torch's low + (ac + 1) * 0.5 * (high - low), rounded identically: a product with
            # 0.5 is exact, so (x * 0.5) * range == x * (0.5 * range)
            x = np.add(arr, _ONE)
            x *= half_range
            x += low
            np.maximum(x, low, out=x)
        else:
            x = np.maximum(arr, low)
        np.minimum(x, high, out=x)
        if float32_space:
            return x  # within the space's own bounds already
        return self._real_to_numpy(torch.from_numpy(x))

    def _real_to_numpy(self, ac_real: torch.Tensor) -> np.ndarray:
        # numpy has no bfloat16: a float32 copy (exact) before the cast to the space's dtype
        arr = to_numpy(ac_real, bfloat16_as_float32=True)
        if is_integer_box(self.action_space):
            arr = np.rint(arr)
        arr = arr.astype(self.action_space.dtype, copy=False)
        if isinstance(self.action_space, gym.spaces.Box):
            # clip again after the dtype cast: float32 bounds may round past float64 ones
            arr = np.clip(arr, self.action_space.low, self.action_space.high)
        return arr
