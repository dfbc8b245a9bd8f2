"""Rows of scalars to an MLflow run (``pip install "machina[mlflow]"``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from machina.logger.output import DEFAULT_NAMESPACE, numeric_items

__all__ = ["MLflowOutput"]


class MLflowOutput:
    """Log every dumped row as MLflow metrics of one run, at the row's step.

    Uses an ``MlflowClient`` of its own, so the global ``mlflow.start_run`` state is neither
    needed nor touched.

    Parameters
    ----------
    tracking_uri : str, optional
        E.g. ``"file:./mlruns"`` (local files, no server), ``"sqlite:///mlflow.db"`` or a
        server URL; default MLflow's (``MLFLOW_TRACKING_URI``).
    experiment_name : str
        Created if missing.
    run_name : str, optional
        Name of the new run.
    run_id : str, optional
        Continue this run instead of creating one (e.g. when resuming).
    namespace : str or None
        Prefix of keys without a ``/`` (see ``machina.logger.output``).
    tags, params : mapping, optional
        Run tags and parameters (e.g. the script's arguments), set once.

    Attributes
    ----------
    client : mlflow.MlflowClient
    run_id : str
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str = "machina",
        run_name: str | None = None,
        run_id: str | None = None,
        namespace: str | None = DEFAULT_NAMESPACE,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError as error:  # an optional extra
            raise ImportError('MLflowOutput needs mlflow: pip install "machina[mlflow]"') from error
        self.client = MlflowClient(tracking_uri=tracking_uri)
        if run_id is None:
            experiment = self.client.get_experiment_by_name(experiment_name)
            experiment_id = (
                self.client.create_experiment(experiment_name)
                if experiment is None
                else experiment.experiment_id
            )
            run = self.client.create_run(
                experiment_id,
                run_name=run_name,
                tags={str(k): str(v) for k, v in (tags or {}).items()},
            )
            run_id = run.info.run_id
        self.run_id = run_id
        self.namespace = namespace
        self._closed = False
        if params:
            from mlflow.entities import Param

            self.client.log_batch(run_id, params=[Param(str(k), str(v)) for k, v in params.items()])

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def write(self, row: Mapping[str, Any], step: int) -> None:
        """Log the numeric values of ``row`` at ``step`` in one batch."""
        from mlflow.entities import Metric

        if self._closed:
            raise ValueError(f"MLflowOutput for run {self.run_id!r} is closed; cannot write")
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, value, now, int(step))
            for key, value in numeric_items(row, self.namespace).items()
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        """Mark the run finished. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self.client.set_terminated(self.run_id)

    def __repr__(self) -> str:
        return f"MLflowOutput(run_id={self.run_id!r}, namespace={self.namespace!r})"
