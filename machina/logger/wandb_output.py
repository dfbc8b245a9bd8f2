"""Rows of scalars to a Weights & Biases run (``pip install "machina[wandb]"``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from machina.logger.output import DEFAULT_NAMESPACE, numeric_items

__all__ = ["WandbOutput"]


class WandbOutput:
    """Log every dumped row to a W&B run, at the row's step.

    Parameters
    ----------
    run : wandb Run, optional
        An existing run (from ``wandb.init``); it is left open by :meth:`close` unless
        ``finish`` is True. When None, one is started with ``wandb.init(**init_kwargs)``
        and finished by :meth:`close`.
    namespace : str or None
        Prefix of keys without a ``/`` (see ``machina.logger.output``); None sends keys as
        they are.
    finish : bool, optional
        Whether :meth:`close` finishes the run; default: only a run this output started.
    **init_kwargs
        ``wandb.init`` arguments: ``project``, ``name``, ``config``, ``dir``,
        ``mode="offline"`` (write under ``dir`` only; ``wandb sync`` uploads later) ...

    Notes
    -----
    W&B needs steps that never decrease within a run; ``record_results`` dumps at the total
    number of sampled steps, which only grows.
    """

    def __init__(
        self,
        run: Any = None,
        namespace: str | None = DEFAULT_NAMESPACE,
        finish: bool | None = None,
        **init_kwargs: Any,
    ) -> None:
        if run is None:
            try:
                import wandb
            except ImportError as error:  # an optional extra
                raise ImportError(
                    'WandbOutput needs wandb: pip install "machina[wandb]"'
                ) from error
            run = wandb.init(**init_kwargs)
            finish = True if finish is None else finish
        elif init_kwargs:
            raise ValueError(
                f"init_kwargs: WandbOutput got a run and wandb.init arguments "
                f"{sorted(init_kwargs)}; give one or the other"
            )
        self.run = run
        self.namespace = namespace
        self._finish = bool(finish)
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def write(self, row: Mapping[str, Any], step: int) -> None:
        """Log the numeric values of ``row`` at ``step`` (strings and None are dropped)."""
        if self._closed:
            raise ValueError("WandbOutput is closed; cannot write a row")
        metrics = numeric_items(row, self.namespace)
        if metrics:
            self.run.log(metrics, step=int(step))

    def close(self) -> None:
        """Finish the run when this output owns it. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            if self._finish:
                self.run.finish()

    def __repr__(self) -> str:
        return f"WandbOutput(run={getattr(self.run, 'id', None)!r}, namespace={self.namespace!r})"
