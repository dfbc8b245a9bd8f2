"""The output interface of ``Logger``: anything with ``write(row, step)`` and ``close()``.

``TensorBoardOutput`` and ``CsvOutput`` already are outputs; ``WandbOutput`` and
``MLflowOutput`` add Weights & Biases and MLflow in one line each::

    logger.add_output(WandbOutput(project="pendulum", mode="offline"))
    logger.add_output(MLflowOutput(tracking_uri="file:./mlruns"))

Tags are namespaced as these tools group them: a key without a ``/`` (the rows
``record_results`` writes: ``PolLossAverage``, ``RewardAverage``...) is sent as
``train/PolLossAverage``; a key that has one (``eval/RewardAverage``, recorded with
``record_tabular("eval/RewardAverage", ...)``) is sent unchanged.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["DEFAULT_NAMESPACE", "Output", "namespaced", "numeric_items"]

#: namespace of keys that name none.
DEFAULT_NAMESPACE = "train"


@runtime_checkable
class Output(Protocol):
    """What ``Logger.add_output`` accepts."""

    def write(self, row: Mapping[str, Any], step: int) -> None:
        """Record one row of scalars (column name to value) at the global ``step``."""
        ...

    def close(self) -> None:
        """Flush and release the output; closing twice is harmless."""
        ...


def namespaced(key: str, namespace: str | None = DEFAULT_NAMESPACE) -> str:
    """``f"{namespace}/{key}"`` unless ``key`` has a ``/`` already or ``namespace`` is None."""
    if namespace is None or "/" in key:
        return key
    return f"{namespace}/{key}"


def numeric_items(
    row: Mapping[str, Any], namespace: str | None = DEFAULT_NAMESPACE
) -> dict[str, float]:
    """The numeric values of ``row`` as floats under namespaced tags (strings, None dropped:
    metrics are numbers; bools become 0.0 / 1.0)."""
    return {
        namespaced(str(key), namespace): float(value)
        for key, value in row.items()
        if isinstance(value, numbers.Real)
    }
