"""The three ways an engine runs the policy, one object each, chosen once per run.

Every actor answers ``act(obs, rows, t)``: the observations of the run's row ``t``
(``obs (n, *ob_shape)``, one row per slot), the slots that step (``rows``: Ellipsis for all,
or an index array), and writes the policy's outputs (``ac``, the ``a_i`` arrays) for those
slots into row ``t`` of the run's ``StepOutputs``; it returns the environments' actions of the
stepping slots, in slot order.

- ``TorchActor``: calls ``pol`` (or ``pol.deterministic_ac_real``) on the stepping slots.
- ``NumpyActor``: the numpy copy of the policy (``NumpyPolicy``), which writes straight into
  the output rows when every slot steps.
- ``RecurrentActor``: a recurrent policy keeps one hidden-state row per slot, so it always sees
  every slot (``full_batch``): slots that are not stepping repeat their last observation
  (zeros if they never began), and their outputs are ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from machina.samplers._buffers import StepOutputs
from machina.samplers._numpy_policy import NumpyPolicy
from machina.samplers._task import SampleTask
from machina.utils.tensors import to_numpy


def _to_numpy(x: Any) -> np.ndarray:
    """A policy output as numpy; a bfloat16 policy's as float32 (exact: numpy has no
    bfloat16)."""
    return to_numpy(x, bfloat16_as_float32=True)


def _is_a_i(key: str, value: Any) -> bool:
    """Whether a policy's agent-info entry goes into episodes (arrays, not the hidden state)."""
    return key != "hs" and isinstance(value, (torch.Tensor, np.ndarray))


def _device(pol: Any) -> torch.device:
    param = next(iter(pol.parameters()), None) if hasattr(pol, "parameters") else None
    return param.device if param is not None else torch.device("cpu")


class TorchActor:
    """Calls the policy itself on the stepping slots' observations."""

    full_batch = False

    def __init__(self, pol: Any, deterministic: bool, outputs: StepOutputs) -> None:
        self.act_fn = pol.deterministic_ac_real if deterministic else pol
        self.device = _device(pol)
        self.on_cpu = self.device.type == "cpu"
        self.outputs = outputs
        self.ai_keys: list[str] | None = None  # set at the policy's first call

    def _call(self, batch: np.ndarray, **kwargs: Any) -> tuple:
        batch = torch.from_numpy(batch)
        if not self.on_cpu:
            batch = batch.to(self.device)
        ac_real, ac, a_i = self.act_fn(batch, **kwargs)
        if self.ai_keys is None:
            self.ai_keys = [key for key, v in a_i.items() if _is_a_i(key, v)]
        return ac_real, ac, a_i

    def act(self, obs: np.ndarray, rows: Any, t: int) -> np.ndarray:
        ac_real, ac, a_i = self._call(obs if rows is Ellipsis else obs[rows])
        a_i = {key: _to_numpy(a_i[key]) for key in self.ai_keys}
        self.outputs.write(t, rows, _to_numpy(ac), a_i)
        return _to_numpy(ac_real)


class RecurrentActor(TorchActor):
    """A recurrent policy on every slot, with ``h_masks`` 1 where an episode starts.

    ``starts (n,)`` float32 is shared with the step loop, which sets 1 where a slot begins an
    episode; it is cleared after every call.
    """

    full_batch = True

    def __init__(
        self, pol: Any, deterministic: bool, outputs: StepOutputs, starts: np.ndarray
    ) -> None:
        super().__init__(pol, deterministic, outputs)
        self.starts = starts
        pol.reset()

    def act(self, obs: np.ndarray, rows: Any, t: int) -> np.ndarray:
        masks = torch.from_numpy(self.starts[None])
        if not self.on_cpu:
            masks = masks.to(self.device)
        ac_real, ac, a_i = self._call(obs[None], h_masks=masks)
        self.starts[:] = 0.0
        ac_real, ac = _to_numpy(ac_real)[0], _to_numpy(ac)[0]
        a_i = {key: _to_numpy(a_i[key])[0] for key in self.ai_keys}
        self.outputs.write(t, Ellipsis, ac, a_i)
        return ac_real if rows is Ellipsis else ac_real[rows]


class NumpyActor:
    """The policy's numpy copy (weights fixed for the whole run)."""

    full_batch = False

    def __init__(self, fast: NumpyPolicy, deterministic: bool, outputs: StepOutputs) -> None:
        self.act_fn = fast.mode if deterministic else fast.sample
        self.outputs = outputs

    def act(self, obs: np.ndarray, rows: Any, t: int) -> np.ndarray:
        if rows is Ellipsis:
            views = self.outputs.row_views(t)
            if views is not None:
                # NumpyPolicy writes the actions and a_i straight into this step's rows
                return self.act_fn(obs, views)[0]
            ac_real, ac, a_i = self.act_fn(obs)
        else:
            ac_real, ac, a_i = self.act_fn(obs[rows])
        self.outputs.write(t, rows, ac, a_i)
        return ac_real


def make_actor(
    task: SampleTask, ob_shape: tuple[int, ...], outputs: StepOutputs, starts: np.ndarray
) -> TorchActor | RecurrentActor | NumpyActor:
    """The actor for ``task``'s policy: recurrent, numpy (when the policy offers a numpy copy
    and ``task.fast_inference``), else torch."""
    pol = task.pol
    if getattr(pol, "rnn", False):
        return RecurrentActor(pol, task.deterministic, outputs, starts)
    # The weights are fixed for the whole call: snapshot them once for numpy inference.
    fast = NumpyPolicy.build(pol, ob_shape) if task.fast_inference else None
    if fast is not None:
        return NumpyActor(fast, task.deterministic, outputs)
    return TorchActor(pol, task.deterministic, outputs)
