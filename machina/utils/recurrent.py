"""Calling a feed-forward or recurrent net on observations; shared by policies, value
functions and dynamics models.

Policies, value functions and models hold the same three things: an ``observation_space``, a
``net`` and an ``rnn`` flag. How observations become tensors and how a recurrent hidden state is
kept between calls lives here, once, so that no subclass repeats it.
"""

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from machina.utils.checks import all_finite_tensor

__all__ = [
    "HiddenState",
    "RecurrentMixin",
    "StateActionModule",
    "check_feed_forward",
    "detach_hs",
    "map_hs",
    "unsqueeze_front",
]

HiddenState = Any  # usually ``(h, c)``, each ``(1, B, cell)``; whatever ``net.init_hs`` returns


def check_feed_forward(where: str, **modules: Any) -> None:
    """Raise a ValueError naming ``where`` and the argument if a module is recurrent.

    Parameters
    ----------
    where : str
        The function the modules were given to, e.g. ``"sac.train"``; starts the message.
    **modules : torch.nn.Module, iterable of them, or None
        By argument name; a module is recurrent when its ``rnn`` attribute is true. None
        and objects without ``rnn`` pass.
    """
    for name, module in modules.items():
        plain = module is None or isinstance(module, torch.nn.Module)
        members = [module] if plain or not hasattr(module, "__iter__") else list(module)
        if any(getattr(m, "rnn", False) for m in members):
            raise ValueError(
                f"{where}: {name}: recurrent modules (rnn=True) are not supported; "
                "use feed-forward ones"
            )


def _as_tuple(outputs: Any) -> tuple:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def map_hs(hs: HiddenState, fn: Callable[[torch.Tensor], torch.Tensor]) -> HiddenState:
    """``fn`` applied to every tensor of ``hs``: a tensor, or a tuple / list / NamedTuple of
    them (nested), rebuilt with the same container types.

    Parameters
    ----------
    hs : HiddenState
        A tensor or a (nested) tuple, list or NamedTuple of tensors.
    fn : callable
        Maps one tensor to one tensor.

    Returns
    -------
    HiddenState
        Of the same structure as ``hs``.
    """
    if isinstance(hs, torch.Tensor):
        return fn(hs)
    items = [map_hs(h, fn) for h in hs]
    # a NamedTuple class takes its fields as arguments, not one iterable
    return type(hs)(*items) if hasattr(type(hs), "_fields") else type(hs)(items)


def detach_hs(hs: HiddenState) -> HiddenState:
    """``hs`` detached from the graph: a tensor, or a tuple / list / NamedTuple of them
    (nested), rebuilt with the same container types."""
    return map_hs(hs, torch.Tensor.detach)


def unsqueeze_front(x: Any, n_trailing: int, rnn: bool) -> torch.Tensor:
    """``x`` as a tensor with leading dims added until it has ``(B,)`` (``(T, B)`` when
    ``rnn``) before its ``n_trailing`` trailing dims; e.g. one action ``(d,)`` becomes
    ``(1, d)``."""
    x = torch.as_tensor(x)
    for _ in range(x.ndim, (2 if rnn else 1) + n_trailing):
        x = x.unsqueeze(0)
    return x


class _NetDtype:
    """``RecurrentMixin.dtype``: only ``__get__``, so an instance attribute of that name, as
    a user's subclass may set, takes precedence."""

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else obj._net_dtype()


class RecurrentMixin:
    """Observation conversion and the recurrent hidden-state protocol for a ``torch.nn.Module``.

    Feed-forward (``rnn=False``): observations are ``(B, *ob_shape)`` (any number of leading
    dims works) and the net is called as ``net(obs)``.

    Recurrent (``rnn=True``): observations are ``(T, B, *ob_shape)`` and the net is called as
    ``net(obs, hs, h_masks)`` returning ``(*outputs, new_hs)``. ``h_masks (T, B, 1)`` is 1 where an
    episode starts; the net zeroes the hidden state there before processing that step. When
    ``hs`` is not given, the state stored by the previous call is used, or ``net.init_hs(B)`` when
    there is none or the batch size changed. The new state is stored, detached, in ``self.hs``:
    the next call continues the episode but does not backpropagate into the previous call's graph
    (whose buffers may already be freed).

    In both cases observations with fewer leading dims are unsqueezed at the front, so a single
    observation ``(*ob_shape,)`` gives outputs with leading ``(1,)``, or ``(1, 1)`` when recurrent.
    """

    observation_space: gym.Space
    net: nn.Module | None
    rnn: bool
    hs: HiddenState | None

    def _init_recurrent(
        self, observation_space: gym.Space, net: nn.Module | None, rnn: bool
    ) -> None:
        """Set ``observation_space``, ``net``, ``rnn`` and an empty hidden state."""
        if getattr(observation_space, "shape", None) is None:
            raise ValueError(
                f"observation_space: {type(self).__name__} needs a space with a shape "
                f"(e.g. gymnasium.spaces.Box), got {observation_space!r}"
            )
        self.observation_space = observation_space
        self.net = net
        self.rnn = bool(rnn)
        self.hs = None
        self._hs_batch_size: int | None = None

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer; CPU if there are none."""
        return self._device_and_dtype()[0]

    def _net_dtype(self) -> torch.dtype:
        return self._device_and_dtype()[1]

    def _device_and_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Where and in which floating dtype the net computes: its first parameter's or
        buffer's (CPU, and float32 unless that tensor is floating, when it has none)."""
        tensor = self._first_tensor()
        if tensor is None:
            return torch.device("cpu"), torch.float32
        return tensor.device, tensor.dtype if tensor.is_floating_point() else torch.float32

    #: Floating dtype the net computes in: its first parameter's or buffer's when that is
    #: floating (float64 after ``.double()``), else float32. Read-only, yet a subclass may
    #: assign its own ``self.dtype`` (a non-data descriptor: the attribute shadows it).
    dtype = _NetDtype()

    def _first_tensor(self) -> torch.Tensor | None:
        """The first parameter or buffer (the order of ``chain(parameters(), buffers())``)."""
        # Every call converts observations to this device: walking the modules each time cost
        # about as much as a linear layer. Where the first tensor lives (its module, and its
        # name there) is kept instead, and the tensor looked up anew: that follows ``.to()``
        # and ``load_state_dict(assign=True)``, which may replace tensors. The place itself is
        # forgotten when modules may have changed: ``_apply`` or an assigned module / tensor.
        place = self.__dict__.get("_device_place")
        if place is not None:
            tensor = getattr(place[0], place[1]).get(place[2])
            if tensor is not None:
                return tensor
        for kind in ("_parameters", "_buffers"):
            for module in self.modules():
                for name, tensor in getattr(module, kind).items():
                    if tensor is not None:
                        self.__dict__["_device_place"] = (module, kind, name)
                        return tensor
        return None

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.__dict__["_device_place"] = None
        return super()._apply(fn, *args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, nn.Module | torch.Tensor):
            self.__dict__["_device_place"] = None
        super().__setattr__(name, value)

    def reset(self) -> None:
        """Forget the stored hidden state; the next recurrent call starts from ``init_hs``."""
        self.hs = None
        self._hs_batch_size = None

    def _check_net(self, extra_shapes: tuple = (), extra_dtype=torch.float32) -> tuple:
        """Check ``net`` fits ``rnn`` and return its outputs on one zero observation.

        ``extra_shapes`` adds zero inputs after the observation (a Q net's action), of trailing
        shapes ``extra_shapes`` and dtype ``extra_dtype``. The outputs (hidden state removed)
        have leading ``(1,)``, or ``(1, 1)`` when recurrent; subclasses check their trailing
        shapes.
        """
        owner = type(self).__name__
        if not isinstance(self.net, nn.Module):
            raise ValueError(f"net: {owner} needs a torch.nn.Module, got {type(self.net)!r}")
        if self.rnn and not callable(getattr(self.net, "init_hs", None)):
            raise ValueError(
                f"net: {owner} with rnn=True needs a net with init_hs(batch_size), "
                f"got {type(self.net).__name__} without it"
            )
        lead = (1, 1) if self.rnn else (1,)
        obs = torch.zeros(lead + tuple(self.observation_space.shape), device=self.device)
        extra = tuple(
            torch.zeros(lead + tuple(shape), dtype=extra_dtype, device=self.device)
            for shape in extra_shapes
        )
        was_training = self.net.training
        # eval mode so that the probe does not update e.g. batch-norm statistics
        self.net.eval()
        try:
            with torch.no_grad():
                if self.rnn:
                    hs, h_masks = self.net.init_hs(1), obs.new_zeros(1, 1, 1)
                    outputs = _as_tuple(self.net(obs, *extra, hs, h_masks))[:-1]
                else:
                    outputs = _as_tuple(self.net(obs, *extra))
        except Exception as error:
            extra_msg = "".join(f" and an input {tuple(x.shape)}" for x in extra)
            raise ValueError(
                f"net: {owner} could not call {type(self.net).__name__} on a zero observation "
                f"of shape {tuple(obs.shape)}{extra_msg} for observation_space "
                f"{self.observation_space!r} (rnn={self.rnn}): {error}"
            ) from error
        finally:
            self.net.train(was_training)
        return outputs

    def _obs_to_tensor(self, obs: Any) -> torch.Tensor:
        """Convert ``obs`` (numpy, list or tensor) to a tensor of :attr:`dtype` on :attr:`device`.

        Parameters
        ----------
        obs : array-like
            ``(B, *ob_shape)``, or ``(T, B, *ob_shape)`` when recurrent; fewer leading dims are
            unsqueezed at the front.

        Returns
        -------
        torch.Tensor
            :attr:`dtype` (float32 unless the net is float64), ``(B, *ob_shape)`` or
            ``(T, B, *ob_shape)``.

        Raises
        ------
        ValueError
            If the trailing dims differ from ``observation_space.shape``, or if ``obs`` holds
            NaN or inf.
        """
        obs = torch.as_tensor(np.asarray(obs) if isinstance(obs, list | tuple) else obs)
        device, dtype = self._device_and_dtype()  # float64 after .double()
        if obs.dtype is not dtype or obs.device != device:
            obs = obs.to(device=device, dtype=dtype)
        ob_shape = tuple(self.observation_space.shape)
        n_lead = obs.ndim - len(ob_shape)
        if n_lead < 0 or obs.shape[n_lead:] != ob_shape or (self.rnn and n_lead > 2):
            expected = "(T, B, *ob_shape)" if self.rnn else "(B, *ob_shape)"
            raise ValueError(
                f"obs: {type(self).__name__} expects {expected} with ob_shape={ob_shape} "
                f"from observation_space, got shape {tuple(obs.shape)}"
            )
        for _ in range(n_lead, 2 if self.rnn else 1):
            obs = obs.unsqueeze(0)
        if not all_finite_tensor(obs):
            finite = torch.isfinite(obs)
            first = tuple(int(i) for i in torch.nonzero(~finite)[0])
            raise ValueError(
                f"obs: expected finite values, got {int((~finite).sum())} NaN/inf entries of "
                f"{obs.numel()} (first at index {first}, value {obs[first].item()})"
            )
        return obs

    def _h_masks_to_tensor(self, h_masks: Any, obs: torch.Tensor) -> torch.Tensor:
        """``h_masks`` as float32 ``(T, B, 1)``; zeros (no reset) when None."""
        time_steps, batch_size = obs.shape[:2]
        if h_masks is None:
            return obs.new_zeros(time_steps, batch_size, 1)
        h_masks = torch.as_tensor(h_masks).to(device=obs.device, dtype=torch.float32)
        if tuple(h_masks.shape) == (time_steps, batch_size):
            h_masks = h_masks.unsqueeze(-1)
        if tuple(h_masks.shape) != (time_steps, batch_size, 1):
            raise ValueError(
                f"h_masks: expected shape ({time_steps}, {batch_size}) or "
                f"({time_steps}, {batch_size}, 1) to match obs {tuple(obs.shape)}, "
                f"got {tuple(h_masks.shape)}"
            )
        return h_masks

    def _call_net(
        self,
        obs: torch.Tensor,
        hs: HiddenState | None = None,
        h_masks: Any = None,
        extra: tuple[torch.Tensor, ...] = (),
    ) -> tuple[tuple[torch.Tensor, ...], HiddenState | None]:
        """Run ``net`` on converted ``obs``.

        ``extra`` inputs follow ``obs``: ``net(obs, *extra)``, or
        ``net(obs, *extra, hs, h_masks)`` when recurrent (a Q net's actions).

        Returns
        -------
        outputs : tuple of torch.Tensor
            The net's outputs without the hidden state, leading ``(B,)`` or ``(T, B)``.
        hs : HiddenState or None
            The new hidden state (not detached) when recurrent, else None.
        """
        if not self.rnn:
            return _as_tuple(self.net(obs, *extra)), None
        batch_size = obs.shape[1]
        if hs is None:
            if self.hs is None or self._hs_batch_size != batch_size:
                self.hs = self.net.init_hs(batch_size)
            hs = self.hs
        h_masks = self._h_masks_to_tensor(h_masks, obs)
        *outputs, new_hs = _as_tuple(self.net(obs, *extra, hs, h_masks))
        self.hs = detach_hs(new_hs)
        self._hs_batch_size = batch_size
        return tuple(outputs), new_hs


class StateActionModule(RecurrentMixin, nn.Module):
    """Base of modules of ``(obs, acs)`` (Q functions, dynamics models): both spaces, a net,
    the recurrence protocol and the shape helpers their ``forward`` calls."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        net: nn.Module,
        rnn: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        self.action_space = action_space
        self._init_recurrent(observation_space, net, rnn)

    def _check_obs_shape(self, obs: Any) -> torch.Tensor:
        """``obs`` with leading dims added up to ``(B, *ob_shape)`` (``(T, B, ...)`` if rnn)."""
        return unsqueeze_front(obs, len(self.observation_space.shape), self.rnn)

    def _check_acs_shape(self, acs: Any) -> torch.Tensor:
        """``acs`` with leading dims added up to ``(B, *ac_shape)`` (``(T, B, ...)`` if rnn)."""
        return unsqueeze_front(acs, len(self.action_space.shape), self.rnn)
