"""Write a run's parameters as JSON: ``log_parameters_lite(path, args)`` for parsed
command-line arguments, ``log_variant(path, variant)`` for a dict of settings.

These are the calls of machina 0.x's logger (from rllab). Classes, functions and enums in
the values are written by name (``{"$class": "module.Name"}``, ``{"$enum": ...}``), so any
``argparse.Namespace`` or settings dict can be written.
"""

from __future__ import annotations

import enum
import inspect
import json
import os
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["MyEncoder", "stub_to_json", "log_parameters", "log_parameters_lite", "log_variant"]


def _qualname(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


class MyEncoder(json.JSONEncoder):
    """JSON encoder that writes classes as ``{"$class": name}`` and enum members as
    ``{"$enum": name}``; other objects that JSON cannot hold are written with ``repr``."""

    def default(self, o: Any) -> Any:
        if isinstance(o, type):
            return {"$class": _qualname(o)}
        if isinstance(o, enum.Enum):
            return {"$enum": f"{_qualname(type(o))}.{o.name}"}
        if isinstance(o, types.FunctionType | types.BuiltinFunctionType):
            return _qualname(o)
        return repr(o)


def stub_to_json(stub_sth: Any) -> Any:
    """A JSON-ready copy of ``stub_sth``: dicts, lists and tuples converted item by item,
    classes and functions replaced by their qualified names, everything else as it is."""
    if isinstance(stub_sth, Mapping):
        return {stub_to_json(k): stub_to_json(v) for k, v in stub_sth.items()}
    if isinstance(stub_sth, list | tuple):
        return [stub_to_json(v) for v in stub_sth]
    if isinstance(stub_sth, type) or isinstance(stub_sth, types.FunctionType):
        return _qualname(stub_sth)
    return stub_sth


def _write_json(log_file: str | os.PathLike, data: Any) -> None:
    parent = os.path.dirname(os.path.abspath(os.fspath(log_file)))
    os.makedirs(parent, exist_ok=True)
    with open(log_file, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, cls=MyEncoder)


def log_parameters_lite(log_file: str | os.PathLike, args: Any) -> None:
    """Write the attributes of ``args`` (e.g. an ``argparse.Namespace``) to a JSON file.

    Parameters
    ----------
    log_file : str or os.PathLike
        The JSON file; parent directories are created, an existing file is replaced.
    args : object
        Its ``vars(args)`` are written, sorted by name.
    """
    _write_json(log_file, dict(vars(args)))


def log_parameters(log_file: str | os.PathLike, args: Any, classes: Mapping[str, Any]) -> None:
    """Write ``args`` and the settings of the classes or objects a run is built from.

    Parameters
    ----------
    log_file : str or os.PathLike
        The JSON file; parent directories are created.
    args : object
        Parsed arguments; attributes whose name starts with a key of ``classes`` are
        written under that key instead of at the top level.
    classes : mapping of str to class or object
        For a class: the values in ``args`` of its constructor's parameters and
        ``"_name"`` = ``getattr(args, key)``. For an object: its ``__kwargs`` attribute
        (empty if absent) and ``"_name"`` = its qualified class name.
    """
    out: dict[str, Any] = {
        k: v for k, v in vars(args).items() if not any(k.startswith(c) for c in classes)
    }
    for key, cls in classes.items():
        if isinstance(cls, type):
            params = inspect.signature(cls).parameters  # the constructor's, without self
            entry = {p: getattr(args, p) for p in params if hasattr(args, p)}
            entry["_name"] = getattr(args, key, _qualname(cls))
        else:
            entry = dict(getattr(cls, "__kwargs", {}))
            entry["_name"] = _qualname(type(cls))
        out[key] = entry
    _write_json(log_file, out)


def log_variant(log_file: str | os.PathLike, variant_data: Any) -> None:
    """Write a settings dict (or an object with a ``dump()`` method returning one) as JSON."""
    if hasattr(variant_data, "dump"):
        variant_data = variant_data.dump()
    _write_json(log_file, stub_to_json(variant_data))
