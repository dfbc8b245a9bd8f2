"""The random generator a Traj draws its minibatches from (orders, uniform and prioritised
draws), apart from torch's global one.

Why a generator of its own: the global generator is also drawn from by whatever runs between
two batches (a policy sampling actions in a loss, dropout, noise). Under
``Traj(ddp=True)`` each rank computes only its share of a minibatch, so the global stream
advances differently on each rank and in one process, and a second epoch's order drawn from
it would differ from the single-process one (issue 10). Drawn from the Traj's own generator,
the orders depend only on the Traj's seed and on the calls made to it.

Seeding, in this order of precedence:

- the state saved with the Traj (``Traj.save`` / ``machina.checkpoint.save_run``, and
  ``traj_functional.sync``), so a resumed run draws exactly what the uninterrupted one would;
- ``Traj(seed=s)``;
- otherwise, at the first draw, one 63-bit seed drawn from torch's global generator: a script
  that calls ``torch.manual_seed(s)`` stays reproducible, and the global stream moves by that
  one number per Traj instead of one draw per minibatch.
"""

from __future__ import annotations

import operator

import torch

# Seeds accepted by torch.Generator.manual_seed.
_SEED_RANGE = (-(2**63), 2**64 - 1)


class BatchRNG:
    """A CPU ``torch.Generator`` seeded on first use (see the module).

    Always on CPU, whatever the Traj's device: the draws are index vectors (one per batch or
    epoch), moved to the device after, and a CPU state saves and loads the same anywhere.
    """

    def __init__(self, seed: int | None = None):
        self._generator: torch.Generator | None = None
        if seed is not None:
            self.manual_seed(seed)

    @property
    def seeded(self) -> bool:
        """Whether the generator exists (seeded, or given a state)."""
        return self._generator is not None

    def manual_seed(self, seed: int) -> None:
        """Seed the generator with ``seed``, an int in ``[-2**63, 2**64)``."""
        try:
            value = operator.index(seed)
        except TypeError:
            raise ValueError(f"seed: expected an int or None, got {seed!r}") from None
        if isinstance(seed, bool) or not _SEED_RANGE[0] <= value <= _SEED_RANGE[1]:
            raise ValueError(f"seed: expected an int in [-2**63, 2**64), got {seed!r}")
        generator = torch.Generator()
        generator.manual_seed(value)
        self._generator = generator

    def generator(self) -> torch.Generator:
        """The generator; seeded now from torch's global generator when it has no seed yet."""
        if self._generator is None:
            # One draw from the global stream (randint's high is exclusive: [0, 2**63 - 1)).
            self.manual_seed(int(torch.randint(0, 2**63 - 1, (1,)).item()))
        assert self._generator is not None
        return self._generator

    def clone(self) -> BatchRNG:
        """An independent copy: the same state (or none yet), drawn from separately."""
        new = BatchRNG()
        state = self.get_state()
        if state is not None:
            new.set_state(state)
        return new

    def get_state(self) -> torch.Tensor | None:
        """The generator's state, (S,) uint8, or None before it is seeded."""
        return None if self._generator is None else self._generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Continue from ``state``, one returned by ``get_state``."""
        if not isinstance(state, torch.Tensor):
            raise ValueError(f"rng_state: expected a uint8 tensor, got {type(state).__name__}")
        if state.dtype != torch.uint8 or state.dim() != 1:
            raise ValueError(
                f"rng_state: expected a 1-d uint8 tensor (a generator's state), got dtype "
                f"{state.dtype} and shape {tuple(state.shape)}"
            )
        generator = torch.Generator()
        try:
            generator.set_state(state.cpu().contiguous())
        except RuntimeError as e:
            raise ValueError(f"rng_state: not a CPU generator's state ({e})") from None
        self._generator = generator
