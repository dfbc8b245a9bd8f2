"""Console helpers of machina 0.x's logger (from rllab): timed message blocks, loggers that
prefix or copy their lines, command-line tweaks of values and functions, a yes/no prompt.

``tweak`` reads the script's command line (``sys.argv``) as ``--name value`` pairs; it works
in the process that was launched, not in worker processes with another ``argv``.
"""

from __future__ import annotations

import inspect
import pydoc
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

from machina.logger.logger import color2num, colorize

__all__ = [
    "color2num",
    "SimpleMessage",
    "Message",
    "MESSAGE_DEPTH",
    "prefix_log",
    "tee_log",
    "collect_args",
    "type_hint",
    "tweak",
    "tweakval",
    "tweakfun",
    "query_yes_no",
]

#: nesting depth of the :class:`Message` blocks currently open.
MESSAGE_DEPTH = 0


def _print(s: str) -> None:
    print(s, flush=True)


class SimpleMessage:
    """``with SimpleMessage("loading"):`` prints the message, then ``done in X seconds``.

    Parameters
    ----------
    msg : str
        Printed on entry.
    logger : callable
        ``str -> None`` that receives the closing line (default ``print``).
    """

    def __init__(self, msg: str, logger: Callable[[str], Any] = _print) -> None:
        self.msg = msg
        self.logger = logger
        self.tstart = 0.0

    def __enter__(self) -> SimpleMessage:
        print(self.msg, flush=True)
        self.tstart = time.perf_counter()
        return self

    def __exit__(self, etype: Any, *args: Any) -> None:
        failed = "" if etype is None else " (with exception)"
        self.logger(f"done{failed} in {time.perf_counter() - self.tstart:.3f} seconds")


class Message:
    """A timed block printed in magenta and indented by its nesting depth.

    ``with Message("epoch 1"):`` prints ``=: epoch 1`` on entry and ``done in X seconds`` on
    exit; nested blocks are indented by one tab per level (:data:`MESSAGE_DEPTH`).
    """

    def __init__(self, msg: str) -> None:
        self.msg = msg
        self.tstart = 0.0

    def __enter__(self) -> Message:
        global MESSAGE_DEPTH
        print(colorize("\t" * MESSAGE_DEPTH + "=: " + self.msg, "magenta"), flush=True)
        self.tstart = time.perf_counter()
        MESSAGE_DEPTH += 1
        return self

    def __exit__(self, etype: Any, *args: Any) -> None:
        global MESSAGE_DEPTH
        MESSAGE_DEPTH -= 1
        failed = "" if etype is None else " (with exception)"
        seconds = time.perf_counter() - self.tstart
        line = "\t" * MESSAGE_DEPTH + f"done{failed} in {seconds:.3f} seconds"
        print(colorize(line, "magenta"), flush=True)


def prefix_log(prefix: str, logger: Callable[[str], Any] = _print) -> Callable[[str], Any]:
    """A logger that passes ``prefix + s`` to ``logger``."""
    return lambda s: logger(prefix + s)


def tee_log(file_name: str) -> Callable[[str], None]:
    """A logger that prints each line and appends it to ``file_name`` (truncated first).

    The file is opened for each line, so no handle stays open behind the function.
    """
    with open(file_name, "w", encoding="utf-8"):
        pass

    def logger(s: str) -> None:
        print(s, flush=True)
        with open(file_name, "a", encoding="utf-8") as f:
            f.write(s + "\n")

    return logger


def collect_args() -> dict[str, str]:
    """The command line after the script name as ``{name: value}`` from ``--name value``."""
    words = shlex.split(" ".join(sys.argv[1:]))
    return {name[2:]: value for name, value in zip(words[::2], words[1::2])}


def type_hint(arg_name: str, arg_type: Callable[[str], Any]) -> Callable[[Any], Any]:
    """Decorator: :func:`tweakfun` converts ``--<fun>-<arg_name> value`` with ``arg_type``
    (needed when the parameter's default is None or of another type)."""

    def wrap(f: Any) -> Any:
        meta = f.__dict__.setdefault("__tweak_type_hint_meta__", {})
        meta[arg_name] = arg_type
        return f

    return wrap


def tweak(fun_or_val: Any, identifier: str | None = None) -> Any:
    """:func:`tweakfun` for a callable, :func:`tweakval` for a value."""
    if callable(fun_or_val):
        return tweakfun(fun_or_val, identifier)
    if identifier is None:
        raise ValueError("tweak: identifier: required to tweak a value")
    return tweakval(fun_or_val, identifier)


def tweakval(val: Any, identifier: str) -> Any:
    """``val``, or the command line's ``--<identifier> value`` converted to ``type(val)``
    (dashes in the name match underscores)."""
    if not identifier:
        raise ValueError("tweakval: identifier: required (the command-line name)")
    for name, value in collect_args().items():
        if name.replace("-", "_") == identifier:
            print(f"replacing {identifier} in {val} with {value}", flush=True)
            return type(val)(value)
    return val


def tweakfun(fun: Callable[..., Any], alt: str | None = None) -> Callable[..., Any]:
    """``fun`` with parameters overridable from the command line.

    ``--<name>-<param> value`` (``name`` is ``alt`` or ``fun.__name__``, lower-cased)
    replaces the parameter ``param``, converted to the type of its default (or with
    :func:`type_hint`'s converter); ``--<name> module.path.to.other`` replaces ``fun`` itself.

    Returns
    -------
    callable
        Calls ``fun`` with the given arguments and the command line's replacements.
    """
    name = (alt or fun.__name__).lower()
    args = collect_args()
    if name in args:
        located = pydoc.locate(args[name])
        if located is None:
            raise ValueError(f"--{name}: {args[name]!r} is not an importable name")
        fun = located  # type: ignore[assignment]
    target = fun.__init__ if isinstance(fun, type) else fun  # type: ignore[misc]
    params = inspect.signature(target).parameters
    meta = getattr(target, "__tweak_type_hint_meta__", {})
    replaced: dict[str, Any] = {}
    for key, value in args.items():
        if not key.startswith(name + "-"):
            continue
        param = key[len(name) + 1 :].replace("-", "_")
        if param in meta:
            replaced[param] = meta[param](value)
        elif param not in params:
            raise ValueError(f"{param} is not an explicit parameter of {fun}")
        elif params[param].default is inspect.Parameter.empty:
            raise ValueError(f"{param} does not have a default value in {fun}")
        elif params[param].default is None:
            raise ValueError(
                f"cannot infer the type of {param} in {fun} from its default None; "
                "declare it with type_hint"
            )
        else:
            replaced[param] = type(params[param].default)(value)
        print(f"replacing {param} in {fun} with {value}", flush=True)

    def tweaked(*call_args: Any, **kwargs: Any) -> Any:
        return fun(*call_args, **{**kwargs, **replaced})

    return tweaked


def query_yes_no(question: str, default: str | None = "yes") -> bool:
    """Ask ``question`` on the terminal until the answer is yes or no.

    Parameters
    ----------
    question : str
        Printed before ``[Y/n]``, ``[y/N]`` or ``[y/n]``.
    default : {"yes", "no", None}
        The answer of an empty line; None requires an answer.

    Returns
    -------
    bool
        True for yes.
    """
    answers = {"yes": True, "y": True, "ye": True, "no": False, "n": False}
    prompts = {None: " [y/n] ", "yes": " [Y/n] ", "no": " [y/N] "}
    if default not in prompts:
        raise ValueError(f"default: expected 'yes', 'no' or None, got {default!r}")
    while True:
        sys.stdout.write(question + prompts[default])
        sys.stdout.flush()
        choice = input().strip().lower()
        if default is not None and choice == "":
            return answers[default]
        if choice in answers:
            return answers[choice]
        sys.stdout.write("Please respond with 'yes' or 'no' (or 'y' or 'n').\n")
