"""Numpy inference of machina's own MLP policies, for the sampler's policy calls.

A sampler's policy call is small: a 64x64 MLP on a handful of observations. In PyTorch it is
about 25 tiny operators at 1-4 µs of dispatch each, most of the time of a sample with few
environments. The same arithmetic in numpy, on weights taken out of the net once per
``sample`` call (they do not change during it), costs a quarter to a fifth: measured for
CartPole 18 against 85 µs per call with 1 observation, 25 against 111 µs with 64, in a tight
loop. Inside the sampler each call costs more (about 45 µs with 64 observations): stepping the
environments in between leaves the caches and branch predictors cold, so every numpy call
counts, whatever its size (see :class:`NumpyPolicy`'s notes).

What is taken over is what the policy vouches for through its hook,
``BasePol.numpy_inference`` (machina's own ``GaussianPol`` and ``CategoricalPol`` on a
feed-forward ``PolNet``, CPU, float32, no hooks): this module imports no policy, distribution or
net class. Anything else keeps the torch path.

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

ActResult = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]


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
    rows of n; fc2's and the head's biases are an extra input column of their weights, fed by
    a constant row of ones at the end of each hidden buffer (ReLU keeps it 1); ReLU runs in
    place through a torch view of the buffer (less than half of ``np.maximum``'s time).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        """``spec``: what ``pol.numpy_inference()`` returned (see ``BasePol.numpy_inference``)."""
        (w1, b1), (w2, b2), (wh, bh) = spec["layers"]
        self.box = spec["kind"] == "gaussian"
        self._ac_real = spec["ac_real"]
        self._invalid_pi = spec["invalid_pi"]
        # Activations are transposed, (features, B): every matmul writes a C-contiguous
        # block (BLAS straight into the buffer) and the softmax reduces over rows of B values.
        self.w1, self.b1 = w1.copy(), b1[:, None].copy()  # w1 @ obs.T + b1
        self.w2 = np.ascontiguousarray(np.hstack([w2, b2[:, None]]))  # (h2, h1 + 1)
        self.head_w = np.ascontiguousarray(np.hstack([wh, bh[:, None]]))  # (out, h2 + 1)
        if self.box:
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
        return cls(spec)

    def _buffers(self, batch: int) -> None:
        """Hidden activations and draw buffers for batches of ``batch``, with their views made
        once: they are reused while the batch size stays the same (they never leave the
        call, unlike the outputs)."""
        self._batch = batch
        h1 = np.ones((self.w1.shape[0] + 1, batch), np.float32)
        h2 = np.ones((self.w2.shape[0] + 1, batch), np.float32)
        self._h1, self._h2 = h1, h2
        self._h1_out, self._h2_out = h1[:-1], h2[:-1]  # the row of ones stays out
        self._relu1, self._relu2 = torch.from_numpy(h1), torch.from_numpy(h2)
        # torch.rand(B) and torch.randn(B, d) are empty(...).uniform_() / .normal_(): the
        # same draws, into a buffer shared with numpy
        width = self.head_w.shape[0] if self.box else 1
        self._noise = torch.empty(batch, width) if self.box else torch.empty(batch)
        self._noise_np = self._noise.numpy()

    def _head(self, obs: np.ndarray) -> np.ndarray:
        """The head's linear output, transposed: ``(out, B)`` for ``obs (B, *ob_shape)``."""
        if obs.shape[0] != self._batch:
            self._buffers(obs.shape[0])
        h1 = self._h1_out
        np.dot(self.w1, obs.reshape(len(obs), -1).T, out=h1)
        np.add(h1, self.b1, out=h1)
        self._relu1.relu_()
        np.dot(self.w2, self._h1, out=self._h2_out)
        self._relu2.relu_()
        return np.dot(self.head_w, self._h2)

    def _mean(self, obs: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """The Gaussian head's ``mean (B, d)``, into ``out`` if given."""
        mean_t = self._head(obs)
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
        if self.ac_is_real:
            return ac, ac, a_i
        return self._ac_real(ac), ac, a_i

    def sample(self, obs: np.ndarray, outs: dict[str, np.ndarray] | None = None) -> ActResult:
        """Draw actions, as ``pol(obs)`` does (same draws from torch's RNG).

        ``outs``, optional: arrays of the outputs' shapes and dtypes to write ``ac`` and each
        ``a_i`` entry into (keys ``"ac"`` and the ``a_i`` keys; C-contiguous), e.g. rows of
        the sampler's buffers; the returned arrays are then these."""
        get = (outs or {}).get
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
