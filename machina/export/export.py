"""One call that writes a policy's action to TorchScript, torch.export or ONNX."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from machina.export.action_module import ActionModule, noise_shape
from machina.pols import BasePol

__all__ = ["FORMATS", "export_pol", "load_exported"]

#: formats of :func:`export_pol` and the file suffix each writes by convention.
FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "torch.export": ".pt2"}


def _example_inputs(
    pol: BasePol, deterministic: bool, example_obs: Any, batch_size: int
) -> tuple[torch.Tensor, ...]:
    if example_obs is None:
        sample = pol.observation_space.sample()
        ob_shape = tuple(pol.observation_space.shape or ())
        obs = torch.as_tensor(sample, dtype=torch.float32).expand(batch_size, *ob_shape)
        obs = obs.contiguous()
    else:
        obs = torch.as_tensor(example_obs, dtype=torch.float32)
        ob_shape = tuple(pol.observation_space.shape or ())
        if obs.ndim != len(ob_shape) + 1 or tuple(obs.shape[1:]) != ob_shape:
            raise ValueError(
                f"example_obs: expected (B, *ob_shape) with ob_shape={ob_shape}, "
                f"got shape {tuple(obs.shape)}"
            )
        if obs.shape[0] < 2:
            # a batch of 1 would let the tracer specialise the batch dim
            obs = obs.expand(2, *ob_shape).contiguous()
    obs = obs.to(pol.device)
    if deterministic:
        return (obs,)
    return obs, torch.zeros(obs.shape[0], *noise_shape(pol), device=obs.device)


def export_pol(
    pol: BasePol,
    path: str | os.PathLike,
    format: str = "onnx",
    deterministic: bool = True,
    example_obs: Any = None,
) -> str:
    """Write a policy's environment action, scaling to the Box bounds included, to a file.

    Parameters
    ----------
    pol : BasePol
        A feed-forward GaussianPol, GaussianSDEPol, TanhGaussianPol, TanhGaussianSDEPol,
        MixtureGaussianPol, CategoricalPol, MultiCategoricalPol or
        DeterministicActionNoisePol.
    path : str or os.PathLike
        File to write (conventional suffixes: :data:`FORMATS`); written atomically.
    format : {"onnx", "torchscript", "torch.export"}
        ``"onnx"``: an ONNX model (``torch.onnx.export``, needs ``onnx`` and ``onnxscript``);
        ``"torchscript"``: ``torch.jit.trace`` saved with ``torch.jit.save``;
        ``"torch.export"``: ``torch.export.export`` saved with ``torch.export.save``.
    deterministic : bool
        True: one input ``obs (B, *ob_shape)`` float32 and the output of
        ``pol.deterministic_ac_real(obs)[0]``. False: inputs ``obs`` and ``noise
        (B, *noise_shape(pol))`` float32 and the action ``pol(obs)[0]`` takes with that noise.
    example_obs : array-like, optional
        ``(B, *ob_shape)`` observations to trace with; default a sample of
        ``observation_space``. The batch dim stays dynamic in every format.

    Returns
    -------
    str
        ``path``. Inputs are named ``obs`` (and ``noise``), the output ``ac_real``
        ``(B, *ac_shape)`` in ``action_space.dtype``.

    Examples
    --------
    >>> export_pol(pol, "pol.onnx")  # doctest: +SKIP
    >>> import onnxruntime  # doctest: +SKIP
    >>> sess = onnxruntime.InferenceSession("pol.onnx")  # doctest: +SKIP
    >>> ac_real = sess.run(None, {"obs": obs.astype(np.float32)})[0]  # doctest: +SKIP
    """
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {sorted(FORMATS)}, got {format!r}")
    module = ActionModule(pol, deterministic=deterministic)
    inputs = _example_inputs(pol, deterministic, example_obs, batch_size=2)
    names = ["obs"] if deterministic else ["obs", "noise"]
    path = os.fspath(path)
    # same directory (os.replace stays atomic) and same suffix (torch.export.save checks it)
    head, tail = os.path.split(path)
    tmp = os.path.join(head, f".tmp{os.getpid()}-{tail}")
    # traced in eval mode (dropout off, batch-norm statistics fixed), then every module's own
    # mode restored: the policy may be in either, and its nets in mixed ones
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            _write(module, inputs, names, format, tmp)
        os.replace(tmp, path)
    finally:
        for m, training in modes:
            m.training = training
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _write(
    module: ActionModule,
    inputs: tuple[torch.Tensor, ...],
    names: list[str],
    format: str,
    path: str,
) -> None:
    batch = torch.export.Dim("batch", min=1)
    dynamic_shapes = tuple({0: batch} for _ in inputs)
    if format == "torchscript":
        with warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export; it still runs
            warnings.simplefilter("ignore", category=DeprecationWarning)
            traced = torch.jit.trace(module, inputs, check_trace=False)
            torch.jit.save(traced, path)
    elif format == "torch.export":
        program = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes)
        torch.export.save(program, path)
    else:
        try:
            import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
        except ImportError as error:
            raise ImportError(
                'format: "onnx" needs onnx and onnxscript: pip install "machina[export]"'
            ) from error
        torch.onnx.export(
            module,
            inputs,
            path,
            input_names=names,
            output_names=["ac_real"],
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def load_exported(path: str | os.PathLike, format: str = "onnx") -> Any:
    """Load what :func:`export_pol` wrote, as a callable.

    Returns
    -------
    callable
        ``"torchscript"``, ``"torch.export"``: a module called as ``f(obs)`` or
        ``f(obs, noise)`` on tensors. ``"onnx"``: an ``onnxruntime.InferenceSession``
        (``sess.run(None, {"obs": obs})[0]``).
    """
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {sorted(FORMATS)}, got {format!r}")
    path = os.fspath(path)
    if format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            return torch.jit.load(path)
    if format == "torch.export":
        return torch.export.load(path).module()
    import onnxruntime

    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
