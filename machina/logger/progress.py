"""Progress bars for training loops, in terminals, log files and notebooks."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress"]


def progress(
    total: int | None = None,
    desc: str | None = None,
    disable: bool | None = None,
    **kwargs: Any,
) -> tqdm:
    """Create a progress bar.

    The bar is a ``tqdm`` object: use it as a context manager, advance it with
    ``.update(n)`` and show live numbers with ``.set_postfix(...)``. In Jupyter it is drawn
    as a notebook widget (``tqdm.auto``); elsewhere as text on stderr.

    Parameters
    ----------
    total : int, optional
        Expected number of units (steps, episodes, iterations); None for an open-ended bar.
    desc : str, optional
        Label shown before the bar.
    disable : bool or None, default None
        True hides the bar, False always shows it; None shows it only when the output is a
        terminal, so redirected logs of long runs are not flooded with bar redraws. A hidden
        bar still accepts every call, so scripts need no branches.
    **kwargs
        Passed on to ``tqdm`` (e.g. ``unit="step"``, ``leave=False``, ``file=sys.stdout``).

    Returns
    -------
    tqdm.tqdm
        The bar.

    Examples
    --------
    >>> with progress(total=3, desc="train", disable=True) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    ...         bar.set_postfix(loss=0.5)
    """
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(total=total, desc=desc, disable=disable, **kwargs)
