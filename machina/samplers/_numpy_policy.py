"""Numpy inference of machina's own MLP policies, for the sampler's policy calls.

A sampler's policy call is small: a 64x64 MLP on a handful of observations. In PyTorch it is
about 25 tiny operators at 1-4 µs of dispatch each, most of the time of a sample with few
environments. The same arithmetic in numpy, on weights taken out of the net once per
``sample`` call (they do not change during it), costs about a third: measured for CartPole
24 against 73 µs per call with 1 observation, 42 against 90 µs with 64.

Only what is known exactly is taken over: a ``GaussianPol`` or ``CategoricalPol`` (the classes
themselves, not subclasses, which may override any step) with a feed-forward ``PolNet`` and its
``PolHead`` on the CPU in float32, no forward hooks. Anything else keeps the torch path.

The random draws are the torch path's own: one ``torch.randn`` (Gaussian noise) or
``torch.rand`` (categorical inverse-CDF) of the same shape, from the engine's torch RNG. So the
sampler's seeding is unchanged, and with the same seed both paths give the same episodes up to
float32 rounding of the matmuls (about 1e-7 per call; chaotic dynamics such as Pendulum's
amplify it over a long episode).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from machina.nets._layers import PolHead
from machina.nets.mlp import PolNet
from machina.pds.categorical_pd import CategoricalPd, sample_categorical
from machina.pds.gaussian_pd import GaussianPd
from machina.pols.categorical_pol import CategoricalPol
from machina.pols.gaussian_pol import GaussianPol

ActResult = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]
_ZERO = np.float32(0.0)


def _has_hooks(module: nn.Module) -> bool:
    """Whether any forward (pre-)hook, of ``module``, a submodule or global, would run."""
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def _weights(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """``(W.T (in, out) contiguous, b (out,))`` as float32 copies: ``x @ W.T + b``."""
    weight = layer.weight.detach().numpy()
    return np.ascontiguousarray(weight.T), layer.bias.detach().numpy().copy()


class NumpyPolicy:
    """A snapshot of a policy's weights that acts in numpy; build it with :meth:`build`.

    ``sample(obs)`` and ``mode(obs)`` take ``obs (B, *ob_shape)`` float32 and return
    ``(ac_real, ac, a_i)`` as the policy's ``forward`` / ``deterministic_ac_real`` do, as
    numpy arrays: ``a_i`` holds ``mean`` and ``log_std`` (B, d) float32, or ``pi`` (B, n)
    float32; ``ac`` is float32 (B, d) or int64 (B,).
    """

    def __init__(self, pol: GaussianPol | CategoricalPol) -> None:
        net = pol.net
        self.pol = pol
        self.box = isinstance(pol, GaussianPol)
        self.layers = [_weights(net.fc1), _weights(net.fc2)]
        head = net.head
        self.out = _weights(head.mean_layer if self.box else head.output_layer)
        if self.box:
            self.log_std = head.log_std_param.detach().numpy().copy()
            self.std = np.exp(self.log_std)  # what torch.exp gives, to float32 rounding
        # A Discrete space starting at 0 (the usual case): ac_real is ac itself, as int64.
        start = pol.__dict__.get("_np_ac_start")
        self.ac_is_real = (
            not self.box
            and start is not None
            and start.dtype == np.int64
            and start.ndim == 0
            and int(start) == 0
        )
        # Hidden activations, reused while the batch size stays the same (they never leave
        # the call, unlike the outputs).
        self._hidden: tuple[int, list[np.ndarray]] = (-1, [])

    @classmethod
    def build(cls, pol: Any, ob_shape: tuple[int, ...]) -> NumpyPolicy | None:
        """The numpy policy for ``pol``, or None when ``pol`` is not one it reproduces exactly.

        Parameters
        ----------
        pol : Any
            The policy of a ``sample`` call.
        ob_shape : tuple of int
            Shape of the run's observations; must be the policy's own (otherwise the torch
            path runs and raises its clear error).
        """
        cls_pd = {GaussianPol: GaussianPd, CategoricalPol: CategoricalPd}.get(type(pol))
        if cls_pd is None or type(pol.pd) is not cls_pd or pol.rnn:
            return None
        net = pol.net
        if type(net) is not PolNet or type(net.head) is not PolHead or net.head.deterministic:
            return None
        if tuple(ob_shape) != tuple(pol.observation_space.shape):
            return None
        if any(not p.is_cpu or p.dtype != torch.float32 for p in pol.parameters()):
            return None
        if any(not b.is_cpu for b in pol.buffers()) or _has_hooks(pol):
            return None
        # the numpy copies of the action bounds / offsets (absent in policies pickled by an
        # older version), and float32 draws as the torch path makes them
        no_bounds = pol.__dict__.get("_np_ac_bounds") is None
        if no_bounds and pol.__dict__.get("_np_ac_start") is None:
            return None
        if torch.get_default_dtype() != torch.float32:
            return None
        return cls(pol)

    def _outputs(self, obs: np.ndarray) -> np.ndarray:
        """The head's linear output ``(B, out)`` for ``obs (B, *ob_shape)``."""
        batch = obs.shape[0]
        h = obs.reshape(batch, -1)
        if self._hidden[0] != batch:
            self._hidden = (
                batch,
                [np.empty((batch, b.shape[0]), np.float32) for _, b in self.layers],
            )
        for (weight, bias), buf in zip(self.layers, self._hidden[1]):
            h = np.matmul(h, weight, out=buf)
            h += bias
            np.maximum(h, _ZERO, out=h)
        weight, bias = self.out
        out = h @ weight
        out += bias
        return out

    def _params(self, obs: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """``a_i`` for ``obs``, and for a categorical policy the cumulative sums ``(B, n)`` of
        ``exp(logits - max)``, the unnormalised ``pi`` (its last column is the sum that
        normalises ``pi``: one reduction for both)."""
        out = self._outputs(obs)
        if self.box:
            np.tanh(out, out=out)
            return {"mean": out, "log_std": np.broadcast_to(self.log_std, out.shape)}, None
        # softmax as torch computes it: exp(x - max) / sum (the ufuncs themselves: cheaper
        # than the methods max / cumsum, which call them)
        out -= np.maximum.reduce(out, axis=-1, keepdims=True)
        np.exp(out, out=out)
        cum = np.add.accumulate(out, axis=-1)
        out /= cum[:, -1:]
        return {"pi": out}, cum

    def _finish(self, ac: np.ndarray, a_i: dict[str, np.ndarray]) -> ActResult:
        if self.ac_is_real:
            return ac, ac, a_i
        return self.pol._ac_real_from_numpy(ac), ac, a_i

    def sample(self, obs: np.ndarray) -> ActResult:
        """Draw actions, as ``pol(obs)`` does (same draws from torch's RNG)."""
        a_i, cum = self._params(obs)
        if self.box:
            mean = a_i["mean"]
            # GaussianPd.sample: mean + exp(log_std) * randn(mean.shape)
            # (sizes as ints, without a dtype: a third cheaper; float32 is the default)
            ac = torch.randn(*mean.shape).numpy()
            ac *= self.std
            ac += mean
            return self._finish(ac, a_i)
        # sample_categorical on the unnormalised pi: the first class whose cumulative value
        # exceeds u * total, so class k with probability exp_k / total = pi_k
        total = cum[:, -1:]
        # NaN or 0 (a NaN minimum compares False): the torch path's error
        if not np.minimum.reduce(total, axis=None) > 0.0:
            sample_categorical(torch.from_numpy(a_i["pi"]), torch.Size())
        u = torch.rand(total.shape[0], 1).numpy()
        u *= total
        ac = np.add.reduce(cum <= u, axis=-1, dtype=np.int64)
        return self._finish(ac, a_i)

    def mode(self, obs: np.ndarray) -> ActResult:
        """The distribution's mode, as ``pol.deterministic_ac_real(obs)`` does."""
        a_i, _ = self._params(obs)
        if self.box:
            return self._finish(a_i["mean"], a_i)
        return self._finish(np.argmax(a_i["pi"], axis=-1).astype(np.int64, copy=False), a_i)
