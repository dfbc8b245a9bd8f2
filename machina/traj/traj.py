"""Columnar storage of whole episodes: ``Traj``, the facade over its jobs (storage,
batching, prioritised replay, files)."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from machina.traj import _ddp, _files
from machina.traj._batching import Batching
from machina.traj._columns import FlatEpisodes, split_columns
from machina.traj._prioritized import PrioritizedReplay, _CachedSampler
from machina.traj._rng import BatchRNG
from machina.traj._storage import ColumnStorage
from machina.utils.tensors import to_numpy

Epi = dict

# 0.x's stand-in for "no limit" (kept for scripts that read it; max_steps=None means none).
LARGE_NUMBER = 1000000000000
# Identity marks alpha as not given, to read 0.x's positional (init_beta, beta_step).
_ALPHA = 0.6


class Traj(ColumnStorage, Batching, PrioritizedReplay):
    """Whole episodes stored as contiguous columns plus an episode-boundary index.

    Episodes are added in two steps, as in machina 0.x: ``add_epis`` puts them in a
    pending set that the estimators in ``machina.traj.epi_functional`` read and extend, and
    ``register_epis`` appends them to the columns that training batches are drawn from.
    Pending episodes are kept flat too (``pending``: one array per key plus the lengths), so
    that the estimators and ``register_epis`` work on a few large arrays, never on one small
    array per episode.

    Parameters
    ----------
    max_steps : int, optional
        Bound on the number of stored steps. When set, ``add_traj`` and ``register_epis``
        evict the oldest *whole* episodes until ``num_step <= max_steps``.
    traj_device : str or torch.device, optional
        Device of the stored columns (machina 0.x's name, in its place); overrides
        ``device`` when given.
    ddp : bool
        Data-parallel batching under torch.distributed (``torchrun``): when a process group
        of W > 1 ranks is initialised, every rank holding the same steps, each batching
        method yields this rank's share of the minibatch the single-process code would
        yield. Rank 0 draws the minibatch (indices, permutation, priorities' draw) with its
        own generator (see ``seed``) and broadcasts it; rank r keeps the contiguous slice
        ``[r * B // W, (r + 1) * B // W)``, so the shares are disjoint and differ in size by
        at most one (a last minibatch of fewer than W items leaves ranks an empty share,
        whose losses are 0). A share comes as
        a ``machina.utils.batch_share.SharedBatch`` (a dict saying where it lies), and every
        rank's global torch generator is made rank 0's at the first minibatch of each
        batching call, so the losses that draw noise (SAC's actions, TD3's smoothing, a CEM
        search) draw it for the whole minibatch and keep the share: training equals the
        single-process run; ranks holding other episodes (checked by the step count and a
        checksum of the episode boundaries and of a few steps of ``acs``, ``terms``,
        ``truncs``, ``dones``) are refused with an error. Whether or not
        ``ddp`` is set, under an initialised process group the ranks agree on the number of
        minibatches of every call (the minimum; per-rank data may differ), and an error on
        one rank is raised on all of them, so that none waits in a collective (inside
        ``machina.distributed.rank_local()`` a rank batches alone).
    device : str or torch.device
        Device of the stored columns.
    seed : int, optional
        Seed of the Traj's own generator (``generator``), from which every batching method
        draws: permutations, uniform draws and prioritised draws, never from torch's global
        generator. Without it the generator is seeded at the first draw with one number
        drawn from torch's global generator, so ``torch.manual_seed`` keeps a script
        reproducible. Its state is saved and loaded with the Traj (``save``, ``load``,
        ``machina.checkpoint``, ``traj_functional.sync``) and copied by ``copy.copy``
        (the estimators' results included), so a copy draws the batches the Traj would.

    Attributes
    ----------
    data_map : dict of str to torch.Tensor
        One column per key, shape (num_step, ...). ``a_is`` / ``e_is`` sub-keys are columns.
        The columns are views of storage that later ``register_epis`` / ``add_traj`` calls
        may overwrite in place (the FIFO moves rows); ``clone()`` a column to keep it.
    pending : FlatEpisodes or None
        Episodes added but not yet registered, as flat columns plus lengths.
    current_epis : list of dict or None
        The pending episodes as dicts of views (read-only; see the property).
    """

    def __init__(
        self,
        max_steps: int | None = None,
        traj_device: str | torch.device | None = None,
        ddp: bool = False,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ):
        # traj_device is machina 0.x's name for device, in its place; it overrides
        # device when given, so Traj(n, "cpu") and Traj(n, device="cpu") agree.
        if traj_device is not None:
            device = traj_device
        if max_steps is not None and max_steps <= 0:
            raise ValueError(f"max_steps: expected a positive int or None, got {max_steps!r}")
        self.max_steps = max_steps
        self.ddp = bool(ddp)
        self.device = torch.device(device)
        self.data_map: dict[str, torch.Tensor] = {}
        # Column key -> "a_is" / "e_is" for keys that came from those groups.
        self.groups: dict[str, str] = {}
        self._epis_index = np.zeros(1, dtype=np.int64)
        # Column storage written in place (see _write): per key a buffer of capacity >= num_step
        # that only this Traj writes, and the row where the columns start. data_map[k] is the
        # view _bufs[k][_start:_start + num_step]; _views remembers the views handed out, so that
        # a column the user replaced (or one adopted zero-copy) is never written in place.
        self._bufs: dict[str, torch.Tensor] = {}
        self._views: dict[str, torch.Tensor] = {}
        self._start = 0
        self._pending: FlatEpisodes | None = None
        self._current_epis: list[Epi] | None = None
        # Importance-sampling exponent of the prioritised batches, annealed toward 1 by each
        # batch drawn (machina 0.x's attribute); None until the first one.
        self.pri_beta: float | None = None
        # Prioritised replay samplers by (column, seq_length, mode, alpha); see _samplers.
        self._samplers: dict[tuple, _CachedSampler] = {}
        # Steps the FIFO has evicted so far: tells a rank sampler how far its items moved.
        self._evicted = 0
        # The generator of every batch draw (see _rng); copies get a clone of it.
        self._rng = BatchRNG(seed)

    # ------------------------------------------------------------------ sizes
    @property
    def num_step(self) -> int:
        return int(self._epis_index[-1])

    @property
    def num_epi(self) -> int:
        return len(self._epis_index) - 1

    @property
    def epis_index(self) -> np.ndarray:
        """Episode boundaries, shape (num_epi + 1,): episode i spans ``[idx[i], idx[i+1])``."""
        return self._epis_index

    def __len__(self) -> int:
        return self.num_step

    def __repr__(self) -> str:
        keys = ", ".join(self.data_map)
        return f"Traj(num_epi={self.num_epi}, num_step={self.num_step}, keys=[{keys}])"

    # ---------------------------------------------------------------- adding
    def add_epis(self, epis: Sequence[Epi]) -> None:
        """Queue whole episodes for the estimators and ``register_epis``.

        The episodes are concatenated here, once, into flat pending columns (``pending``);
        the given arrays are copied, never modified, and replace any pending episodes.

        Parameters
        ----------
        epis : list of dict
            Episodes as returned by a sampler: dicts of arrays sharing a first axis of length T.
        """
        self._set_pending(FlatEpisodes.from_epis(epis))

    @property
    def pending(self) -> FlatEpisodes | None:
        """The pending episodes as flat columns plus lengths, or None when there are none."""
        return self._pending

    @property
    def current_epis(self) -> list[Epi] | None:
        """The pending episodes as dicts of arrays, or None when there are none.

        Built on first access from the flat pending columns: the arrays are views of them,
        with ``a_is`` / ``e_is`` regrouped. Treat the list as read-only: assigning keys in its
        dicts does not reach ``register_epis``; assign a new list to ``current_epis`` (or call
        ``add_epis``) instead.
        """
        if self._pending is None:
            return None
        if self._current_epis is None:
            self._current_epis = self._pending.to_epis()
        return self._current_epis

    @current_epis.setter
    def current_epis(self, epis: Sequence[Epi] | None) -> None:
        self._set_pending(None if epis is None else FlatEpisodes.from_epis(epis))

    def _set_pending(self, pending: FlatEpisodes | None) -> None:
        self._pending = pending
        self._current_epis = None

    def __getstate__(self) -> dict:
        # Pickled, the columns need not come back as views of the buffers (torch pickles
        # the mapped buffers' storages apart from theirs): the copy would write columns its
        # next append then copies over from stale buffers. It owns none: its first write
        # copies the columns into buffers of its own (writable_column).
        state = self.__dict__.copy()
        state.update(_bufs={}, _views={}, _start=0)
        state.pop("_np_views", None)  # numpy views of the columns (_batch): copies once pickled
        return state

    def __copy__(self) -> Traj:
        """A shallow copy sharing the stored columns; neither Traj then writes them in place.

        The copy's batch generator is a clone: from the copy, the batches this Traj would
        draw next (or, unseeded, seeded at its own first draw), without moving this one's.
        """
        new = object.__new__(Traj)
        new.__dict__.update(self.__dict__)
        new.data_map = dict(self.data_map)
        new.groups = dict(self.groups)
        new.__dict__.pop("_np_views", None)  # its own (_batch)
        # The replay samplers too (a rank order is not a function of the priorities alone:
        # it is rebuilt lazily), shared: a priority write of either Traj first copies its
        # columns (below) and then its samplers (PrioritizedReplay._follow_copied_columns).
        new._samplers = dict(self._samplers)
        new._rng = self._rng.clone()
        # Both see the same rows: the next append of either copies them into a new buffer.
        self._disown()
        new._disown()
        return new

    def copy(self, traj: Traj) -> None:
        """Make this Traj a shallow copy of ``traj`` in place (machina 0.x's form of
        ``copy.copy(traj)``): both share the stored columns, neither writes them in place."""
        if not isinstance(traj, Traj):
            raise TypeError(f"traj: expected a Traj, got {type(traj).__name__}")
        shallow = copy.copy(traj)
        self.__dict__.clear()
        self.__dict__.update(shallow.__dict__)

    @property
    def rank(self) -> int:
        """This process's rank in torch.distributed's default group when ``ddp``, else 0."""
        return _ddp.Group(self.ddp).rank if self.ddp else 0

    @property
    def world_size(self) -> int:
        """The default group's number of ranks when ``ddp``, else 1."""
        return _ddp.Group(self.ddp).world if self.ddp else 1

    @property
    def generator(self) -> torch.Generator:
        """The CPU ``torch.Generator`` the batching methods draw from.

        Seeded by ``Traj(seed=...)``, by a loaded state, or else on first use (this property
        included) with one number drawn from torch's global generator. Under
        ``Traj(ddp=True)`` with W > 1 ranks only rank 0 draws, so rank 0's generator is the
        one that moves (and the one to save). ``traj.generator.manual_seed(s)`` reseeds it.
        """
        return self._rng.generator()

    def with_pending(self, pending: FlatEpisodes) -> Traj:
        """A shallow copy whose pending episodes are ``pending``; stored columns are shared."""
        new = copy.copy(self)
        new._set_pending(pending)
        return new

    def prioritized_random_batch_rnn_once(
        self,
        batch_size: int,
        seq_length: int,
        return_indices: bool = False,
        mode: str = "proportional",
        alpha: float = _ALPHA,
        init_beta: float = 0.4,
        beta_step: float = 0.00025 / 4,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One batch of ``prioritized_random_batch_rnn``.

        0.x's positional order ``(batch_size, seq_length, return_indices, init_beta,
        beta_step)`` is recognised by type: a number where ``mode`` (a str) is expected.
        """
        if isinstance(mode, (int, float)) and not isinstance(mode, bool):
            # 0.x order: mode holds init_beta, a given alpha holds beta_step.
            init_beta, beta_step = float(mode), beta_step if alpha is _ALPHA else alpha
            mode, alpha = "proportional", _ALPHA
        return PrioritizedReplay.prioritized_random_batch_rnn_once(
            self, batch_size, seq_length, return_indices, mode, alpha, init_beta, beta_step
        )

    def register_epis(self) -> None:
        """Append the pending episodes to the columns and clear them.

        On CPU the first registration adopts the pending arrays as the columns without a copy
        (the pending arrays are never modified in place, so sharing them is safe); the Traj
        never writes into adopted arrays, the next append copies them into its own buffer.
        """
        if self._pending is None or self._pending.num_epi == 0:
            raise ValueError("register_epis: no pending episodes; call add_epis(epis) first")
        pending = self._pending
        self._append(pending.columns, pending.groups, pending.lengths, adopt=True)
        self._set_pending(None)

    def add_traj(self, traj: Traj) -> None:
        """Append every stored episode of ``traj``; with ``max_steps``, evict the oldest first.

        The rows are copied: the two Trajs never share storage.

        Parameters
        ----------
        traj : Traj
            A Traj whose episodes have been registered.
        """
        if not isinstance(traj, Traj):
            raise TypeError(f"traj: expected a Traj, got {type(traj).__name__}")
        if traj.pending is not None and traj.pending.num_epi > 0:
            raise ValueError(
                f"traj: has {traj.pending.num_epi} pending episodes that add_traj would not "
                "add; call traj.register_epis() (after the estimators) before add_traj(traj)"
            )
        if self.pending is not None and self.pending.num_epi > 0:
            # 0.x's estimators changed their input in place, so its scripts added the input;
            # here the estimator's result holds the new episodes, pending (run_mpc.py's case).
            warnings.warn(
                f"add_traj: this Traj holds {self.pending.num_epi} pending episodes (from "
                "add_epis or an estimator's result) that are not stored until its "
                "register_epis(); estimators return a new Traj and leave their input as it "
                "was, so add their result after its register_epis()",
                UserWarning,
                stacklevel=2,
            )
        if traj.num_epi == 0:
            return
        lengths = np.diff(traj._epis_index)
        columns = traj.data_map
        if traj is self:  # the FIFO would move the rows it is about to copy: copy them first
            columns = {k: v.clone() for k, v in columns.items()}
        self._append(columns, traj.groups, lengths, adopt=False)

    def _append(
        self, columns: dict, groups: dict[str, str], lengths: np.ndarray, adopt: bool
    ) -> None:
        if self.max_steps is not None and lengths.max() > self.max_steps:
            raise ValueError(
                f"max_steps: a Traj bounded to {self.max_steps} steps cannot hold a whole "
                f"episode of {int(lengths.max())} steps; raise max_steps"
            )
        columns = {k: torch.as_tensor(v).to(self.device) for k, v in columns.items()}
        if self.num_epi > 0 and "pris" in self.data_map and "pris" not in columns:
            # Prioritised replay: new episodes enter with the highest priority stored, so
            # that each is replayed at least once soon (Schaul et al., 2016, algorithm 1).
            n = int(lengths.sum())
            stored = self.data_map["pris"]
            columns["pris"] = torch.full(
                (n,), self.get_max_pri(), dtype=stored.dtype, device=self.device
            )
        if self.num_epi > 0 and set(columns) != set(self.data_map):
            missing = sorted(set(self.data_map) ^ set(columns))
            raise ValueError(
                f"episodes: keys differ from the stored ones ({', '.join(missing)}); "
                "run the same estimators on every batch of episodes added to one Traj"
            )
        index = np.concatenate([self._epis_index, self.num_step + np.cumsum(lengths)])
        # FIFO: the oldest whole episodes leave first, until at most max_steps steps remain.
        drop = 0
        if self.max_steps is not None and index[-1] > self.max_steps:
            keep_from = int(np.searchsorted(index, index[-1] - self.max_steps))
            drop = int(index[keep_from])
            index = index[keep_from:] - drop
        if self.num_epi == 0 and adopt and drop == 0:
            self._disown()
            self.data_map = columns
        else:
            self._write(columns, drop)
        # counted once written: a refused append (a step of another shape) evicts nothing
        self._evicted = getattr(self, "_evicted", 0) + drop
        self.groups.update(groups)
        self._epis_index = index

    # ------------------------------------------------------------ conversion
    def traj_device(self) -> torch.device:
        """The device of the columns (machina 0.x's method; ``device`` is the attribute)."""
        return self.device

    def to(self, device: str | torch.device) -> Traj:
        """Move every column to ``device`` in place; returns self."""
        self.device = torch.device(device)
        self.__dict__.pop("_np_views", None)  # they would keep the CPU columns alive
        moved = {k: v.to(self.device) for k, v in self.data_map.items()}
        if any(moved[k] is not v for k, v in self.data_map.items()):
            self._disown()  # only the live rows moved; the next append allocates a buffer
        self.data_map = moved
        return self

    def epis(self) -> list[Epi]:
        """Stored episodes as dicts of numpy arrays (views of the columns on CPU; a bfloat16
        column, which numpy lacks, as a float32 copy). Views: a later append (a FIFO memory's
        eviction above all) may write over them, as over ``data_map``; copy what you keep."""
        columns = {k: to_numpy(v, bfloat16_as_float32=True) for k, v in self.data_map.items()}
        return split_columns(columns, self.groups, np.diff(self._epis_index))

    def save(self, path: str | os.PathLike) -> None:
        """Write the stored episodes to an ``.npz`` file that loads without pickle.

        Every column keeps its dtype and values exactly, and the prioritised-replay exponent
        ``pri_beta``, the state of ``generator`` (once seeded) and the order of each
        rank-based sampler (rebuilt lazily, so not a function of the priorities alone) are
        kept, so a reloaded memory resumes its annealing and draws the batches the saved one
        would have drawn; pending episodes are not saved.

        The file is replaced atomically: written to a temporary file in the same directory,
        flushed to disk, then renamed over ``path``; a save killed half way leaves the
        previous file intact.
        """
        arrays: dict[str, np.ndarray] = {}
        bfloat16 = []
        for k, v in self.data_map.items():
            v = v.detach().cpu()
            if v.dtype == torch.bfloat16:  # numpy has none: its bits as uint16, the key listed
                arrays[f"col:{k}"] = v.view(torch.int16).numpy().view(np.uint16)
                bfloat16.append(k)
            else:
                arrays[f"col:{k}"] = v.numpy()
        if bfloat16:
            arrays["bfloat16_keys"] = np.array(bfloat16, dtype=np.str_)
        arrays["epis_index"] = self._epis_index
        # the column names, so that a load notices a column missing from the archive
        arrays["column_keys"] = np.array(list(self.data_map), dtype=np.str_)
        arrays["group_keys"] = np.array(list(self.groups), dtype=np.str_)
        arrays["group_names"] = np.array(list(self.groups.values()), dtype=np.str_)
        if self.max_steps is not None:
            arrays["max_steps"] = np.array(self.max_steps, dtype=np.int64)
        if self.pri_beta is not None:
            arrays["pri_beta"] = np.array(self.pri_beta, dtype=np.float64)
        rng_state = self._rng.get_state()
        if rng_state is not None:
            arrays["rng_state"] = rng_state.numpy()
        arrays.update(self._rank_sampler_states())
        _files.write_atomic(path, arrays)

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu", ddp: bool = False
    ) -> Traj:
        """Read a Traj written by ``save``; never unpickles (``allow_pickle=False``).

        The file is validated before anything is built: a ValueError names the path and what
        is wrong (not an ``.npz`` archive, a missing member, episode boundaries that do not
        start at 0, increase and end at the columns' length, columns of other lengths).
        """
        f = _files.read_checked(path)
        traj = cls(max_steps=f.max_steps, ddp=ddp, device=device)
        traj._epis_index = f.epis_index
        traj.data_map = {}
        for k, v in f.columns.items():
            column = torch.from_numpy(v)
            if k in f.bfloat16_keys:
                column = column.view(torch.int16).view(torch.bfloat16)
            traj.data_map[k] = column.to(traj.device)
        traj.groups = f.groups
        traj.pri_beta = f.pri_beta
        if f.rng_state is not None:
            try:
                traj._rng.set_state(torch.from_numpy(f.rng_state))
            except ValueError as e:
                raise ValueError(f"Traj.load: {os.fspath(path)}: {e}") from None
        traj._restore_rank_samplers(f.rank_states)
        return traj
