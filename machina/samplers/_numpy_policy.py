"""Numpy inference of feed-forward MLP policies, for the sampler's policy calls.

A sampler's policy call is small: a 64x64 MLP on a handful of observations. In PyTorch it is
about 25 tiny operators, each paying torch's dispatch, which is most of the time of a sample
with few environments. The same arithmetic in numpy, on weights taken out of the net once per
``sample`` call (they do not change during it), costs a fraction of that (the timings are in
example/benchmarks/README.md, "Measurements behind the code"). Inside the sampler, stepping
the environments between calls leaves the caches and branch predictors cold, so every numpy
call counts, whatever its size (see :class:`NumpyPolicy`'s notes).

What is taken over is what the policy vouches for through its hook,
``BasePol.numpy_inference``: a list of ops (linear layers, elementwise activations, the
output's tanh or softmax) for machina's own ``GaussianPol`` and ``CategoricalPol`` on a
feed-forward ``PolNet`` or a user's ``nn.Sequential`` MLP, and ``GaussianSDEPol`` on its
``SDEPolNet``, CPU, float32, no hooks (see ``machina.pols.numpy_spec``). This module imports
no policy, distribution or net class. Anything else keeps the torch path.

The random draws are the torch path's own: one ``torch.randn`` (Gaussian noise) or
``torch.rand`` (categorical inverse-CDF) of the same shape, from the engine's torch RNG, or
for gSDE the policy's own exploration matrix, drawn and scheduled by the policy. So the
sampler's seeding is unchanged, and with the same seed both paths give the same episodes up to
float32 rounding of the matmuls (about 1e-7 per call; chaotic dynamics such as Pendulum's
amplify it over a long episode). The activations run torch's own kernels (tanh: numpy's).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

ActResult = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]


def _torch_in_place(name: str, params: dict[str, Any]) -> Callable[[torch.Tensor], Any] | None:
    """The in-place torch function of the activation ``name`` (besides ReLU and sigmoid, see
    :func:`_activation`): torch's own kernels, so the activations are the torch path's."""
    f = torch.nn.functional
    table: dict[str, Callable[[torch.Tensor], Any]] = {
        "silu": lambda t: f.silu(t, inplace=True),
        "elu": lambda t: f.elu_(t, params.get("alpha", 1.0)),
        "leaky_relu": lambda t: f.leaky_relu_(t, params.get("negative_slope", 0.01)),
        "selu": f.selu_,
        "gelu": lambda t: torch.ops.aten.gelu_(t, approximate=params.get("approximate", "none")),
        "softplus": lambda t: torch._C._nn.softplus(
            t, params.get("beta", 1.0), params.get("threshold", 20.0), out=t
        ),
        "mish": lambda t: f.mish(t, inplace=True),
    }
    return table.get(name)


def _activation(name: str, params: dict[str, Any], arr: np.ndarray) -> Callable[[], Any] | None:
    """A call with no arguments that applies the activation in place to ``arr``, or None
    for an activation this module does not know. tanh is numpy's (as fast as torch's, and
    the Gaussian mean's too)."""
    # bound methods and positional arguments: the cheapest calls (a step makes one per op)
    if name == "tanh":
        return functools.partial(np.tanh, arr, arr)
    if name == "relu":
        return torch.from_numpy(arr).relu_
    if name == "sigmoid":
        return torch.from_numpy(arr).sigmoid_
    fn = _torch_in_place(name, params)
    if fn is None:
        return None
    return functools.partial(fn, torch.from_numpy(arr))


def _known(spec: dict[str, Any]) -> bool:
    """Whether every op of ``spec`` is one :class:`NumpyPolicy` runs, in the expected order:
    a linear layer first; the kind's output last (softmax, or tanh for the mean, or the mean's
    linear layer itself: an unsquashed mean)."""
    ops = spec["ops"]
    known = {"relu", "tanh", "sigmoid", "silu", "elu", "leaky_relu", "selu", "gelu"}
    known |= {"softplus", "mish"}  # _activation's
    if not ops or ops[0][0] != "linear":
        return False
    body, last = ops[:-1], ops[-1]
    if spec["kind"] == "gaussian_sde":
        # the mean's linear layer last, on the features: the last hidden activations
        if last[0] != "linear" or not body or body[-1][0] != "act":
            return False
    elif spec["kind"] == "gaussian":
        if tuple(last[:2]) != ("act", "tanh") and last[0] != "linear":
            return False
    elif last[0] != "softmax":
        return False
    return all(op[0] == "linear" or (op[0] == "act" and op[1] in known) for op in body)


class NumpyPolicy:
    """A snapshot of a policy's weights that acts in numpy; build it with :meth:`build`.

    ``sample(obs)`` and ``mode(obs)`` take ``obs (B, *ob_shape)`` float32 and return
    ``(ac_real, ac, a_i)`` as the policy's ``forward`` / ``deterministic_ac_real`` do, as
    numpy arrays: ``a_i`` holds ``mean`` and ``log_std`` (B, d) float32, or ``pi`` (B, n)
    float32; ``ac`` is float32 (B, d) or int64 (B,).

    Notes
    -----
    At these sizes every numpy call costs about a microsecond whatever its work, so the layout
    saves calls: activations are transposed, ``(features, B)``, so that every matmul writes a
    C-contiguous block and the softmax and the draw reduce over rows of B values instead of B
    rows of n; every linear layer but the first takes its bias as an extra input column of its
    weights, fed by a constant row of ones at the end of each hidden buffer (activations run
    on the rows above it); activations run in place, through torch views of the buffers
    (torch's own kernels: ReLU in less than half of ``np.maximum``'s time). A step is then
    one call per op (two for the first layer), run from a list of calls bound to the buffers.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        """``spec``: what ``pol.numpy_inference()`` returned (see ``BasePol.numpy_inference``);
        its ``ops`` must pass ``_known`` (:meth:`build` checks)."""
        ops = spec["ops"]
        self.sde = spec["kind"] == "gaussian_sde"
        self.box = spec["kind"] in ("gaussian", "gaussian_sde")
        self._ac_real = spec["ac_real"]
        self._invalid_pi = spec["invalid_pi"]
        # The body: ops up to the last linear layer (the head's), which _head calls itself;
        # then the activations between it and the output (tanh of the mean, or softmax).
        last_linear = max(i for i, op in enumerate(ops) if op[0] == "linear")
        self._body = ops[:last_linear]
        self._head_acts = ops[last_linear + 1 : -1]
        # a Gaussian mean through tanh, or linear (the head's layer is the last op)
        self._squash = spec["kind"] == "gaussian" and last_linear < len(ops) - 1
        _, w1, b1 = ops[0]
        # Activations are transposed, (features, B): every matmul writes a C-contiguous
        # block (BLAS straight into the buffer) and the softmax reduces over rows of B values.
        self.w1, self.b1 = w1.copy(), b1[:, None].copy()  # w1 @ obs.T + b1
        _, wh, bh = ops[last_linear]
        # the head's bias as a last column, fed by the ones row of the last hidden buffer
        self.head_w = np.ascontiguousarray(np.hstack([wh, bh[:, None]]))  # (out, h + 1)
        # the hidden linear layers after the first, likewise
        self._hidden_w = [
            np.ascontiguousarray(np.hstack([op[1], op[2][:, None]]))
            for op in self._body[1:]
            if op[0] == "linear"
        ]
        if self.sde:
            # the features' variance weights exp(2 log_std), transposed (d, k); the policy
            # draws its exploration matrix itself
            var_w = torch.exp(2.0 * torch.from_numpy(spec["log_std"])).numpy()
            self._var_w_t = np.ascontiguousarray(var_w.T)
            self._var_eps = np.float32(spec["var_eps"])
            self._exploration_mat = spec["exploration_mat"]
        elif self.box:
            self.log_std = spec["log_std"].copy()
            self.std = np.exp(self.log_std)  # what torch.exp gives, to float32 rounding
        # A Discrete space starting at 0 (the usual case): ac_real is ac itself, as int64.
        self.ac_is_real = not self.box and spec["ac_is_real"]
        self._batch = -1  # the batch size the buffers are for (see _buffers)

    @classmethod
    def build(cls, pol: Any, ob_shape: tuple[int, ...]) -> NumpyPolicy | None:
        """The numpy policy for ``pol``, or None when ``pol`` is not one it reproduces exactly.

        Parameters
        ----------
        pol : Any
            The policy of a ``sample`` call; asked through its ``numpy_inference`` hook.
        ob_shape : tuple of int
            Shape of the run's observations; must be the policy's own (otherwise the torch
            path runs and raises its clear error).
        """
        hook = getattr(pol, "numpy_inference", None)
        spec = hook() if callable(hook) else None
        if spec is None:
            return None
        if tuple(ob_shape) != tuple(pol.observation_space.shape):
            return None
        if "ops" not in spec:  # the first version of the hook: PolNet's two ReLU layers
            (w1, b1), (w2, b2), (wh, bh) = spec["layers"]
            relu = ("act", "relu", {})
            last = [("act", "tanh", {})] if spec["kind"] == "gaussian" else [("softmax",)]
            ops = [("linear", w1, b1), relu, ("linear", w2, b2), relu, ("linear", wh, bh)]
            spec = {**spec, "ops": ops + last}
        if not _known(spec):
            return None
        return cls(spec)

    def _buffers(self, batch: int) -> None:
        """Hidden activations and draw buffers for batches of ``batch``, and the calls of the
        body bound to them: they are reused while the batch size stays the same (they never
        leave the call, unlike the outputs)."""
        self._batch = batch
        steps: list[Callable[[], Any]] = []
        hidden = iter(self._hidden_w)
        # the first layer's output; every hidden buffer ends with a row of ones (the next
        # layer's bias input), which the activations leave out
        buf = np.ones((self.w1.shape[0] + 1, batch), np.float32)
        self._h1, self._last = buf[:-1], buf
        for op in self._body[1:]:
            if op[0] == "linear":
                weight = next(hidden)
                out = np.ones((weight.shape[0] + 1, batch), np.float32)
                steps.append(functools.partial(np.dot, weight, buf, out[:-1]))
                buf = out
            else:
                steps.append(_activation(op[1], op[2], buf[:-1]))
        self._last = buf
        self._steps = steps
        # torch.rand(B) and torch.randn(B, d) are empty(...).uniform_() / .normal_(): the
        # same draws, into a buffer shared with numpy
        width = self.head_w.shape[0] if self.box else 1
        self._noise = torch.empty(batch, width) if self.box else torch.empty(batch)
        self._noise_np = self._noise.numpy()

    def _head(self, obs: np.ndarray) -> np.ndarray:
        """The head's output, transposed: ``(out, B)`` for ``obs (B, *ob_shape)``, with the
        activations between the head's linear layer and the output (tanh or softmax)."""
        if obs.shape[0] != self._batch:
            self._buffers(obs.shape[0])
        obs_t = obs.reshape(len(obs), -1).T
        if self._body:
            h1 = self._h1
            np.dot(self.w1, obs_t, out=h1)
            np.add(h1, self.b1, out=h1)
            for step in self._steps:
                step()
            out = np.dot(self.head_w, self._last)
        else:  # the head is the only linear layer
            out = np.dot(self.w1, obs_t)
            np.add(out, self.b1, out=out)
        for _, name, params in self._head_acts:
            _activation(name, params, out)()
        return out

    def _mean(self, obs: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """The Gaussian head's ``mean (B, d)``, into ``out`` if given."""
        mean_t = self._head(obs)
        if not self._squash:
            if out is None:
                return mean_t.T
            np.copyto(out, mean_t.T)
            return out
        if out is None:
            return np.tanh(mean_t, out=mean_t).T
        np.tanh(mean_t, out=out.T)
        return out

    def _softmax(self, obs: np.ndarray, pi: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``pi (B, n)``, into ``pi`` if given, and the transposed cumulative sums ``(n, B)`` of
        ``exp(logits - max)``, the unnormalised ``pi`` (their last row is the sum that
        normalises ``pi``: one reduction for both), as torch computes softmax."""
        out = self._head(obs)
        np.subtract(out, np.maximum.reduce(out, axis=0), out=out)
        np.exp(out, out=out)
        cum = np.add.accumulate(out, axis=0)
        if pi is None:
            pi = np.empty(out.shape[::-1], np.float32)
        np.divide(out, cum[-1], out=pi.T)
        return pi, cum

    def _finish(self, ac: np.ndarray, a_i: dict[str, np.ndarray]) -> ActResult:
        if self.ac_is_real:  # the env's own array: ac may be a row of the stored actions
            return ac.copy(), ac, a_i
        return self._ac_real(ac), ac, a_i

    def sample(self, obs: np.ndarray, outs: dict[str, np.ndarray] | None = None) -> ActResult:
        """Draw actions, as ``pol(obs)`` does (same draws from torch's RNG).

        ``outs``, optional: arrays of the outputs' shapes and dtypes to write ``ac`` and each
        ``a_i`` entry into (keys ``"ac"`` and the ``a_i`` keys; C-contiguous), e.g. rows of
        the sampler's buffers; the returned arrays are then these."""
        get = (outs or {}).get
        if self.sde:
            return self._sde_act(obs, get, explore=True)
        if self.box:
            mean = self._mean(obs, get("mean"))
            # GaussianPd.sample: mean + exp(log_std) * randn(mean.shape)
            self._noise.normal_()
            ac = np.multiply(self._noise_np, self.std, out=get("ac"))
            np.add(ac, mean, out=ac)
            return self._finish(ac, self._gaussian_a_i(mean, get("log_std")))
        pi, cum = self._softmax(obs, get("pi"))
        # sample_categorical on the unnormalised pi: the first class whose cumulative value
        # exceeds u * total, so class k with probability exp_k / total = pi_k
        total = cum[-1]
        # NaN or 0 (a NaN minimum compares False): the torch path's error (sample_categorical's)
        if not np.minimum.reduce(total, axis=None) > 0.0:
            raise self._invalid_pi(pi)
        self._noise.uniform_()  # the torch path's (B, 1) uniform draws
        u = np.multiply(self._noise_np, total, out=self._noise_np)
        ac = np.add.reduce(np.less_equal(cum, u), axis=0, dtype=np.int64, out=get("ac"))
        return self._finish(ac, {"pi": pi})

    def _sde_act(self, obs: np.ndarray, get: Callable[[str], Any], explore: bool) -> ActResult:
        """gSDE: ``ac = mean + features @ E`` (``E`` the policy's exploration matrix, or each
        row's own) or the mean, and ``a_i``: the mean and the per-state ``log_std = 0.5
        log(features^2 @ exp(2 log_std) + eps)``, as ``GaussianSDEPol`` computes them."""
        mean_t = self._head(obs)  # (d, B)
        features_t = self._last[:-1]  # (k, B): the mean layer's input
        var_t = np.dot(self._var_w_t, np.square(features_t))
        np.add(var_t, self._var_eps, out=var_t)
        np.log(var_t, out=var_t)
        np.multiply(var_t, np.float32(0.5), out=var_t)
        mean, log_std = get("mean"), get("log_std")
        if mean is None:
            mean = mean_t.T
        else:
            np.copyto(mean, mean_t.T)
        if log_std is None:
            log_std = var_t.T
        else:
            np.copyto(log_std, var_t.T)
        ac = get("ac")
        if explore:
            mat = self._exploration_mat(features_t.shape[1])
            if mat.ndim == 2:
                noise = np.dot(mat.T, features_t).T
            else:  # one matrix per row: (B, 1, k) @ (B, k, d)
                noise = np.matmul(features_t.T[:, None, :], mat)[:, 0, :]
            ac = np.add(mean_t.T, noise, out=ac)
        elif ac is None:
            ac = mean
        else:
            np.copyto(ac, mean)
        return self._finish(ac, {"mean": mean, "log_std": log_std})

    def _gaussian_a_i(self, mean: np.ndarray, log_std: np.ndarray | None) -> dict[str, np.ndarray]:
        if log_std is None:
            log_std = np.broadcast_to(self.log_std, mean.shape)
        else:
            np.copyto(log_std, self.log_std)
        return {"mean": mean, "log_std": log_std}

    def mode(self, obs: np.ndarray, outs: dict[str, np.ndarray] | None = None) -> ActResult:
        """The distribution's mode, as ``pol.deterministic_ac_real(obs)`` does (``outs`` as
        in :meth:`sample`)."""
        get = (outs or {}).get
        if self.sde:
            return self._sde_act(obs, get, explore=False)
        if self.box:
            mean = self._mean(obs, get("mean"))
            ac = mean
            if outs is not None:
                ac = outs["ac"]
                np.copyto(ac, mean)
            return self._finish(ac, self._gaussian_a_i(mean, get("log_std")))
        pi, _ = self._softmax(obs, get("pi"))
        ac = np.argmax(pi, axis=-1, out=get("ac"))
        return self._finish(ac.astype(np.int64, copy=False), {"pi": pi})
