"""Keyword aliases: a parameter keeps answering to the name machina 0.x gave it.

Parameters were renamed to the project's glossary (``obs``, ``value``, ``path``); scripts
written for machina 0.x call some of them by their old names (``logger.record_tabular(key,
val=v)``, ``pd.llh(xs=acs, params=p)``). :func:`keyword_aliases` lets a function take both
without a second parameter in its signature: ``inspect.signature`` and the docs show the
current name, and the old ones are listed in the function's ``__keyword_aliases__``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["keyword_aliases"]

F = TypeVar("F", bound=Callable[..., Any])


def keyword_aliases(**aliases: str) -> Callable[[F], F]:
    """Let a function accept old keyword names for some of its parameters.

    Parameters
    ----------
    **aliases : str
        ``old_name="current_name"`` pairs; ``current_name`` must be a parameter of the
        decorated function.

    Returns
    -------
    callable
        A decorator. The decorated function maps each ``old_name=`` keyword to
        ``current_name=`` and raises ``TypeError`` when both are given.

    Examples
    --------
    >>> @keyword_aliases(val="value")
    ... def record(key, value):
    ...     return key, value
    >>> record("Loss", val=0.5)
    ('Loss', 0.5)
    >>> record.__keyword_aliases__
    {'val': 'value'}
    """

    def decorate(fn: F) -> F:
        params = inspect.signature(fn).parameters
        for old, new in aliases.items():
            if new not in params:
                raise TypeError(
                    f"keyword_aliases: {fn.__qualname__} has no parameter {new!r} "
                    f"(alias {old!r}); its parameters are {list(params)}"
                )
            if old in params:
                raise TypeError(
                    f"keyword_aliases: {old!r} is already a parameter of {fn.__qualname__}"
                )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in aliases.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{fn.__qualname__}: got both {new}= and {old}= (its machina "
                            "0.x name); pass one"
                        )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        wrapper.__keyword_aliases__ = {  # type: ignore[attr-defined]
            **getattr(fn, "__keyword_aliases__", {}),
            **aliases,
        }
        return wrapper  # type: ignore[return-value]

    return decorate
