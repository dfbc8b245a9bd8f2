"""Save a whole run in one call and restore it into the live objects, without pickle.

A run is whatever a training script holds between two ``sample`` calls: networks,
optimisers, temperature tensors, replay ``Traj`` objects, samplers, prepro, step counters and
the global random generators. Because machina's episodes are whole, no environment is
mid-episode at that point, so a run restored from a checkpoint continues bit for bit.

Layout of ``run_dir`` (every file written without pickle)::

    run_dir/ckpt-000012/meta.json     format, version, object kinds, JSON extras, python RNG
    run_dir/ckpt-000012/state.pt      tensors and state dicts (loads with weights_only=True)
    run_dir/ckpt-000012/<name>.npz    one per Traj (``Traj.save``)
    run_dir/latest                    the name of the newest complete checkpoint

A checkpoint is written into a temporary folder, renamed into place, and only then named in
``latest`` (itself replaced atomically), so a run killed while saving keeps its previous
checkpoint.
"""

from __future__ import annotations

import copy
import io
import json
import numbers
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from machina.traj import Traj
from machina.utils import files
from machina.utils.files import write_atomic
from machina.utils.rng import global_rng_state, set_global_rng_state
from machina.utils.tensors import cpu_copy

__all__ = [
    "FORMAT_VERSION",
    "latest_checkpoint",
    "load_run",
    "read_extra",
    "remove_checkpoints",
    "restore_point",
    "save_run",
]

FORMAT = "machina-run"
FORMAT_VERSION = 1
# state.pt's key of the global random generators' state (no object may take it)
_RNG_KEY = "__rng__"
_NP_TAG = "__numpy__"


# ---------------------------------------------------------------- state encoding
def _encode(value: Any) -> Any:
    """State with numpy arrays turned into tagged tensors, so weights-only loading accepts it."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot save a numpy array of dtype {value.dtype} without pickle")
        array = np.ascontiguousarray(value).reshape(value.shape)  # it makes a 0-d one (1,)
        if not array.dtype.isnative:  # torch holds native byte order only; the values kept
            array = array.astype(array.dtype.newbyteorder("="))
        if not array.flags.writeable:  # e.g. Ray's zero-copy arrays: torch warns on those
            array = array.copy()
        return {_NP_TAG: torch.from_numpy(array)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):  # a namedtuple
        return type(value)(*(_encode(v) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(_encode(v) for v in value)
    return value


#: what weights-only loading takes for certain (others are tried, see _check_loadable)
_PLAIN_LEAVES = (
    type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.Size, torch.dtype,
    torch.device,
)  # fmt: skip


def _plain(value: Any) -> bool:
    """Whether ``value`` is built of dicts, lists, tuples and :data:`_PLAIN_LEAVES` only."""
    kind = type(value)
    if kind is dict:
        return all(isinstance(k, str | int) and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN_LEAVES)


def _check_loadable(name: str, state: Any) -> None:
    """A TypeError naming ``objects[name]`` unless ``load_run`` can read ``state`` back:
    ``torch.save`` pickles anything, ``torch.load(weights_only=True)`` refuses other classes
    (a deque, an Enum, a path...), and a checkpoint found unreadable only at the resume would
    already have replaced the older, readable ones."""
    if _plain(state):
        return
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True, map_location="cpu")
    except (pickle.PickleError, AttributeError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TypeError(
            f"objects[{name!r}]: its state_dict() holds a value that load_run cannot read "
            f"back without pickle ({reason}); make its state of tensors, numpy arrays, "
            "numbers, strings, lists, tuples and dicts"
        ) from None


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_NP_TAG}:
            return value[_NP_TAG].numpy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_decode(v) for v in value)
    return value


class _GeneratorState:
    """A ``torch.Generator`` seen as a stateful object (a Traj's batch generator, a sampler's
    own): its state, (S,) uint8, under ``"state"``."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or set(state) != {"state"}:
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"expected a generator's state {{'state': ...}}, given {keys}")
        self.generator.set_state(state["state"])


def _as_stateful(objects: Mapping[str, Any]) -> dict[str, Any]:
    """``objects`` with each ``torch.Generator`` wrapped as a stateful object."""
    return {
        name: _GeneratorState(obj) if isinstance(obj, torch.Generator) else obj
        for name, obj in objects.items()
    }


def _kind(name: str, obj: Any) -> str:
    if isinstance(obj, Traj):
        return "traj"
    if isinstance(obj, torch.Tensor):
        return "tensor"
    if callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    ):
        return "stateful"
    raise TypeError(
        f"objects[{name!r}]: expected a Traj, a tensor, a torch.Generator or an object with "
        f"state_dict() and load_state_dict(), given {type(obj).__name__}; put plain numbers "
        "in extra="
    )


def _check_name(name: Any, kind: str) -> None:
    """An object's name to save: a str key of state.pt (meta.json keeps names as text), and a
    Traj's file name in the checkpoint folder."""
    if not isinstance(name, str):
        raise ValueError(f"objects: expected str names, given {name!r}")
    if name == _RNG_KEY:
        raise ValueError(
            f"objects[{name!r}]: the name is reserved (the global random generators' state)"
        )
    if kind == "traj" and any(c in name for c in ("/", "\\", "\0")):
        raise ValueError(
            f"objects[{name!r}]: a Traj's name is its file's in the checkpoint: expected no "
            "'/', '\\' or NUL"
        )


# ---------------------------------------------------------------- global RNGs
def _rng_state() -> tuple[dict[str, Any], Any]:
    """(tensors for state.pt, JSON-able python RNG state)."""
    tensors = global_rng_state()
    python = tensors.pop("python")
    tensors["numpy"] = _encode(tensors["numpy"])
    return tensors, python


def _check_rng_state(tensors: Mapping[str, Any], python_state: Any) -> None:
    """A ValueError unless the saved global RNG states load: tried on fresh generators, so
    that a bad one is found before any object is restored."""
    try:
        torch.Generator().set_state(tensors["torch"])
        np.random.RandomState().set_state(tuple(_decode(tensors["numpy"])))
        version, internal, gauss = python_state
        random.Random().setstate((version, tuple(internal), gauss))
    except Exception as exc:
        raise ValueError(f"the saved random generator states do not load ({exc!r})") from exc


def _set_rng_state(tensors: Mapping[str, Any], python_state: list) -> None:
    set_global_rng_state({**tensors, "numpy": _decode(tensors["numpy"]), "python": python_state})


def restore_point(objects: Mapping[str, Any]) -> Callable[[], None]:
    """Capture the state of ``objects`` (as :func:`save_run` takes them) and of the global
    RNGs now; the returned function puts it back into the live objects.

    Trajs are left out (copying a replay memory costs what saving it does; sampling and
    evaluating do not change one). ``logger.Run`` uses it around an evaluation made only
    because the budget ends, which a run with a larger budget would not make.
    """
    objects = _as_stateful(objects)
    kinds = {name: _kind(name, obj) for name, obj in objects.items()}
    states: dict[str, Any] = {}
    for name, obj in objects.items():
        if kinds[name] == "tensor":
            states[name] = obj.detach().clone()
        elif kinds[name] != "traj":
            states[name] = copy.deepcopy(obj.state_dict())
    rng = _rng_state()

    def restore() -> None:
        for name, state in states.items():
            if kinds[name] == "tensor":
                with torch.no_grad():
                    objects[name].copy_(state)
            else:
                objects[name].load_state_dict(state)
        _set_rng_state(*rng)

    return restore


# ---------------------------------------------------------------- save / load
def _step_of(path: Path) -> int:
    """The step in a checkpoint folder's name ``ckpt-<step>`` or ``ckpt-<step>.replaced``
    (-1 for another name)."""
    number = path.name.partition("-")[2].partition(".")[0]
    return int(number) if number.isdigit() else -1


def _replaced(final: Path) -> Path:
    """Where a checkpoint saved again at its step waits until the new one is in place."""
    return final.with_name(final.name + ".replaced")


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder of ``run_dir``, or None when it has none."""
    pointer = Path(run_dir) / "latest"
    if not pointer.is_file():
        return None
    path = Path(run_dir) / pointer.read_text().strip()
    if not (path / "meta.json").is_file():
        # a save of the same step killed between its two renames: the previous one
        path = _replaced(path)
    return path if (path / "meta.json").is_file() else None


def remove_checkpoints(run_dir: str | os.PathLike) -> None:
    """Delete every checkpoint of ``run_dir`` (its ``latest`` file first, then the
    ``ckpt-*`` folders and leftovers of killed saves), e.g. before a new run reuses the
    folder: a later resume must not restore the previous run's state."""
    run_dir = Path(run_dir)
    (run_dir / "latest").unlink(missing_ok=True)
    for path in run_dir.glob("ckpt-*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    files.remove_stale_temporaries(run_dir, "ckpt-tmp")


def save_run(
    run_dir: str | os.PathLike,
    objects: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    step: int | None = None,
    keep: int = 2,
    rng: bool = True,
) -> Path:
    """Save every object of a run, and the global RNGs, as one new checkpoint.

    Parameters
    ----------
    run_dir : path
        Folder of the run; created when missing.
    objects : mapping of str to object
        What to save, by a name that ``load_run`` uses again: ``Traj`` objects (columns,
        priorities, ``pri_beta`` and the state of the Traj's batch generator), tensors (e.g.
        SAC's ``log_alpha``), ``torch.Generator`` objects (e.g. ``traj.generator``: the batch
        order of a Traj whose columns need no saving, an expert data set's), and anything
        with ``state_dict()`` / ``load_state_dict()``: networks, optimisers, learning-rate
        schedulers, ``EpiSampler`` (policy and environment RNGs of every worker), prepro.
    extra : mapping, optional
        JSON-able values (step counters, the iteration number, arguments).
    step : int, optional
        Number in the checkpoint's folder name; by default one more than the newest.
    keep : int
        How many checkpoints to keep; older ones are deleted after the new one is in place.
    rng : bool
        Save the global torch, numpy and python random generators.

    Returns
    -------
    path : Path
        The new checkpoint folder.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if keep < 1:
        raise ValueError(f"keep: expected a positive int, given {keep!r}")
    objects = _as_stateful(objects)
    kinds = {name: _kind(name, obj) for name, obj in objects.items()}
    for name, kind in kinds.items():
        _check_name(name, kind)
    try:
        extra_json = json.dumps(dict(extra or {}))
    except TypeError as exc:
        raise TypeError(f"extra: expected JSON-able values ({exc})") from exc
    if step is None:
        previous = latest_checkpoint(run_dir)
        step = _step_of(previous) + 1 if previous else 0
    elif isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step: expected an int >= 0 or None, given {step!r}")
    final = run_dir / f"ckpt-{int(step):06d}"

    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=files.temporary_prefix("ckpt-tmp")))
    tmp.chmod(files.default_mode(0o777))  # mkdtemp's 0700: as mkdir would have made it
    try:
        state: dict[str, Any] = {}
        for name, obj in objects.items():
            if kinds[name] == "traj":
                obj.save(tmp / f"{name}.npz")
            elif kinds[name] == "tensor":
                state[name] = obj.detach().clone()
            else:
                state[name] = _encode(obj.state_dict())
                _check_loadable(name, state[name])
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kinds": kinds,
            "extra": json.loads(extra_json),
        }
        if rng:
            state[_RNG_KEY], meta["python_rng"] = _rng_state()
        # flushed to disk (with the folder) before the rename: else, after a power loss,
        # "latest" could name a checkpoint whose files are empty
        write_atomic(tmp / "state.pt", lambda f: torch.save(state, f))
        write_atomic(tmp / "meta.json", lambda f: f.write(json.dumps(meta).encode()))
        # Saved again at its step: the old folder is renamed aside, not deleted (a deletion
        # takes a while and is not atomic), so that a kill leaves a checkpoint to resume from.
        replaced = _replaced(final)
        if final.exists():
            if replaced.exists():  # of a save killed before (the folder at `final` is newer)
                shutil.rmtree(replaced)
            os.replace(final, replaced)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(run_dir / "latest", lambda f: f.write(final.name.encode()))
    # every folder set aside is stale now that 'latest' names a complete one (this save's,
    # and those of saves killed after their renames, which pruning by step would keep)
    for path in run_dir.glob("ckpt-*.replaced"):
        shutil.rmtree(path, ignore_errors=True)
    files.remove_stale_temporaries(run_dir, "ckpt-tmp")  # of checkpoints killed half way
    # by step, not by name: ckpt-999999 sorts after ckpt-1000000 as text
    old = sorted((p for p in run_dir.glob("ckpt-*") if p.is_dir() and p != final), key=_step_of)
    for path in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def _backup(obj: Any) -> Any:
    """``obj``'s state dict as it is now, for a rollback."""
    if isinstance(obj, torch.nn.Module | torch.optim.Optimizer):
        return cpu_copy(obj.state_dict())  # their load_state_dict puts values back on device
    return copy.deepcopy(obj.state_dict())  # others may keep the tensors they are given


#: optimiser state keys that hold one value per parameter element (Adam(W), NAdam, RAdam,
#: Adamax, SGD momentum, RMSprop, Adagrad, Adadelta, ASGD, Rprop, SparseAdam)
_PER_ELEMENT_STATES = frozenset(
    ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf", "momentum_buffer", "square_avg",
     "grad_avg", "acc_delta", "sum", "ax", "prev", "step_size")
)  # fmt: skip


def _check_optimizer_state(optim: torch.optim.Optimizer, saved: Mapping[str, Any]) -> None:
    """A ValueError unless each saved per-parameter state tensor (Adam's moments...) has its
    parameter's shape: torch checks only the number of parameters, so a model resized since
    the checkpoint (saved apart, e.g. by ``save_models``) got moments of the old shape and
    failed at the next ``step``."""
    params = [p for group in optim.param_groups for p in group["params"]]
    for index, values in saved.get("state", {}).items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            continue  # torch's own check names a mismatch in the number of parameters
        for key, value in values.items():
            # only the per-element states of torch's optimisers (and machina's): LBFGS keeps
            # flat vectors under parameter 0, Adafactor factored row and column variances
            if key in _PER_ELEMENT_STATES and isinstance(value, torch.Tensor) and value.dim():
                if tuple(value.shape) != tuple(params[index].shape):
                    raise ValueError(
                        f"state of parameter {index}: {key!r} saved with shape "
                        f"{tuple(value.shape)}, the parameter has shape "
                        f"{tuple(params[index].shape)} (was the model resized?)"
                    )


def _load_stateful(objects: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """``load_state_dict`` of each object from ``state``; when one refuses its state, the
    ones restored before it are put back as they were and the error names the object."""
    restored: list[tuple[Any, Any]] = []
    for name, obj in objects.items():
        backup = _backup(obj)
        try:
            saved = _decode(state[name])
            if isinstance(obj, torch.optim.Optimizer):
                _check_optimizer_state(obj, saved)
            obj.load_state_dict(saved)
        except Exception as exc:
            for done, previous in reversed(restored):
                done.load_state_dict(previous)
            try:  # torch copies the keys that fit before it raises: this object too
                obj.load_state_dict(backup)
            except Exception:  # it refuses its own state: the error below says which
                pass
            given = "torch.Generator" if isinstance(obj, _GeneratorState) else type(obj).__name__
            raise ValueError(
                f"objects[{name!r}]: its saved state does not load into the given {given} "
                f"({exc}); nothing was restored"
            ) from exc
        restored.append((obj, backup))


def read_extra(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``extra`` values of the newest checkpoint of ``run_dir`` (or of one checkpoint
    folder), read without restoring anything.

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` holds no complete checkpoint.
    ValueError
        When the checkpoint is not a machina run of a known version.
    """
    return _read_meta(Path(run_dir))[1]["extra"]


def _read_meta(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint folder of ``run_dir`` (or ``run_dir`` itself when it is one)
    and its meta.json, checked to be of this format and version."""
    path = run_dir if (run_dir / "meta.json").is_file() else latest_checkpoint(run_dir)
    if path is None:
        pointer = run_dir / "latest"
        why = (
            f"its 'latest' file names {pointer.read_text().strip()!r}, which holds no meta.json"
            if pointer.is_file()
            else "no 'latest' file"
        )
        raise FileNotFoundError(f"run_dir: no checkpoint in {str(run_dir)!r} ({why})")
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path / 'meta.json'}: corrupted or partial checkpoint ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(
            f"{path / 'meta.json'}: corrupted checkpoint (expected a JSON object, given "
            f"{type(meta).__name__})"
        )
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: expected a {FORMAT} checkpoint of version {FORMAT_VERSION}, given "
            f"format {meta.get('format')!r} version {meta.get('version')!r}"
        )
    for key in ("kinds", "extra"):
        if not isinstance(meta.get(key), dict):
            raise ValueError(
                f"{path / 'meta.json'}: corrupted checkpoint (expected {key!r} to be a JSON "
                f"object, given {meta.get(key)!r})"
            )
    return path, meta


def load_run(
    run_dir: str | os.PathLike,
    objects: Mapping[str, Any],
    rng: bool = True,
    strict: bool = True,
) -> dict[str, Any]:
    """Restore the newest checkpoint of ``run_dir`` into the live ``objects``.

    Parameters
    ----------
    run_dir : path
        A folder written by ``save_run`` (or one checkpoint folder inside it).
    objects : mapping of str to object
        The live objects, under the names they were saved with; each is restored in place
        (``load_state_dict``, an in-place tensor copy, a Traj's columns).
    rng : bool
        Restore the global torch, numpy and python random generators.
    strict : bool
        Raise when ``objects`` and the checkpoint do not name the same objects.

    Returns
    -------
    extra : dict
        The ``extra`` values given to ``save_run``.

    Raises
    ------
    FileNotFoundError
        When ``run_dir`` holds no complete checkpoint.
    ValueError
        When the checkpoint is not a machina run of a known version, its files are corrupted
        or cut short, names differ, a tensor's shape differs or an object refuses its saved
        state (named; then no object is changed).
    """
    path, meta = _read_meta(Path(run_dir))
    objects = _as_stateful(objects)
    kinds = meta["kinds"]
    if strict and set(kinds) != set(objects):
        raise ValueError(
            f"objects: expected the names saved in {path}: {sorted(kinds)}, given {sorted(objects)}"
        )
    try:
        state = torch.load(path / "state.pt", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path / 'state.pt'}: corrupted or partial checkpoint ({exc})") from exc
    # Everything that can fail before anything is written: a refused checkpoint leaves the
    # live objects as they were.
    live = {name: obj for name, obj in objects.items() if name in kinds}
    for name, obj in live.items():
        kind = _kind(name, obj)
        if kind != kinds[name]:
            raise ValueError(f"objects[{name!r}]: saved as a {kinds[name]}, given a {kind}")
        if kind != "traj" and name not in state:
            raise ValueError(
                f"{path / 'state.pt'}: holds no state for objects[{name!r}], which meta.json "
                "lists: corrupted, or copied from another checkpoint"
            )
        if kind == "tensor" and tuple(state[name].shape) != tuple(obj.shape):
            raise ValueError(
                f"objects[{name!r}]: saved with shape {tuple(state[name].shape)}, given a "
                f"tensor of shape {tuple(obj.shape)}"
            )
    trajs = {}
    for name, obj in live.items():
        if kinds[name] == "traj":
            file = path / f"{name}.npz"
            if not file.is_file():
                raise ValueError(
                    f"{file}: missing (objects[{name!r}]'s replay memory): corrupted or partial "
                    "checkpoint; nothing was restored"
                )
            trajs[name] = Traj.load(file, device=obj.device, ddp=obj.ddp)
    restore_rng = rng and _RNG_KEY in state
    if restore_rng:
        try:
            _check_rng_state(state[_RNG_KEY], meta.get("python_rng"))
        except ValueError as exc:
            raise ValueError(f"{path}: corrupted checkpoint: {exc}; nothing was restored") from exc
    _load_stateful({n: o for n, o in live.items() if kinds[n] == "stateful"}, state)
    for name, obj in live.items():
        if kinds[name] == "tensor":
            with torch.no_grad():
                obj.copy_(state[name])
        elif kinds[name] == "traj":
            # in place: callers hold references to the live Traj; its file carries the batch
            # generator's state (Traj.save), so its draws resume too
            obj.__dict__.clear()
            obj.__dict__.update(trajs[name].__dict__)
    if restore_rng:
        _set_rng_state(state[_RNG_KEY], meta["python_rng"])
    return meta["extra"]
