"""Per-step hidden states of a recurrent module over whole episodes (``ef.compute_hs``)."""

from __future__ import annotations

import numpy as np
import torch

from machina.traj._episodes import Columns, episode_function
from machina.traj._modules import module_device

# Episodes stepped together: one batched call per time step, (T_max, B) padded inputs.
_CHUNK = 256


def _flat_state(hs, columns: np.ndarray) -> np.ndarray:
    """Hidden state ``hs`` (a tensor or a tuple of them, each (layers, B, cell)) of the batch
    columns ``columns`` as (len(columns), k, layers * cell) float32, k parts of the tuple."""
    parts = hs if isinstance(hs, tuple | list) else (hs,)
    flat = [h.detach()[:, columns].transpose(0, 1).reshape(len(columns), -1) for h in parts]
    return torch.stack(flat, dim=1).to(torch.float32).cpu().numpy()


@episode_function
def compute_hs(
    data: Columns, func: torch.nn.Module, hs_name: str = "hs", input_acs: bool = False
) -> dict[str, np.ndarray]:
    """Add ``hs_name``: the hidden state of the recurrent ``func`` entering each step.

    Each episode runs through ``func`` from its initial state (``func.net.init_hs``); step t
    gets the state ``func`` holds *before* seeing step t (step 0 the initial state), so that a
    window starting at step t can start from it (R2D2's stored state, Kapturowski et al.,
    2019). Episodes are stepped together, ``func`` called once per time step; the global RNG
    (a policy samples actions) is left as it was.

    Parameters
    ----------
    data : Traj or list of dict
        Episodes with ``obs`` (T, *ob_shape), and ``acs`` (T, *ac_shape) with ``input_acs``.
    func : torch.nn.Module
        A recurrent policy or value function (``rnn=True``): ``func(obs, [acs,] hs=hs,
        h_masks=...)`` leaves its new state in ``func.hs``, as machina's policies and value
        functions do.
    hs_name : str
        Key of the new column.
    input_acs : bool
        Call ``func(obs, acs, ...)`` (a Q function) instead of ``func(obs, ...)``.

    Returns
    -------
    Traj or list of dict
        With ``hs_name`` (T, k, layers * cell) float32: k = 2 for an LSTM's ``(h, c)``.
    """
    if not getattr(func, "rnn", False) or not callable(getattr(func.net, "init_hs", None)):
        raise ValueError(
            f"func: compute_hs needs a recurrent module (rnn=True, a net with init_hs), got "
            f"{type(func).__name__} with rnn={getattr(func, 'rnn', None)!r}"
        )
    obs = data.require("obs", "compute_hs")
    acs = data.require("acs", "compute_hs") if input_acs else None
    device = module_device(func)
    starts = np.cumsum(data.lengths) - data.lengths
    out = None
    with torch.no_grad(), torch.random.fork_rng(devices=[] if device.type == "cpu" else None):
        for lo in range(0, len(data.lengths), _CHUNK):
            lengths = data.lengths[lo : lo + _CHUNK]
            n = len(lengths)
            t = np.arange(int(lengths.max()))[:, None]
            real = t < lengths[None, :]  # (T_max, n)
            steps = (starts[lo : lo + n][None, :] + t)[real]  # flat indices, padded order
            inputs = [obs] if acs is None else [obs, acs]
            padded = []
            for x in inputs:
                p = np.zeros((len(t), n, *x.shape[1:]), dtype=np.float32)
                p[real] = x[steps]
                padded.append(torch.as_tensor(p, device=device))
            hs = func.net.init_hs(n)
            h_masks = torch.zeros(1, n, 1, device=device)
            for step in range(len(t)):
                cols = np.flatnonzero(real[step])
                state = _flat_state(hs, cols)
                if out is None:
                    out = np.zeros((len(obs), *state.shape[1:]), dtype=np.float32)
                out[starts[lo : lo + n][cols] + step] = state
                func(*(p[step : step + 1] for p in padded), hs=hs, h_masks=h_masks)
                hs = func.hs  # the new state, as every recurrent machina module stores it
    func.reset()
    return {hs_name: out}
