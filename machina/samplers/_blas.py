"""numpy's BLAS on one thread while an engine runs.

The numpy copy of the policy (``_numpy_policy.py``) multiplies small matrices, e.g. 64x65 by
65x256 at 256 environments. OpenBLAS (numpy's BLAS) splits such a product over all cores
with threads that spin while they wait: far more CPU than the product takes on one thread,
which makes the fast path many times slower on a machine shared with other jobs (the
timings are in example/benchmarks/README.md, "Measurements behind the code"). Worker
processes and Ray actors already run with ``OMP_NUM_THREADS=1`` (which OpenBLAS honours);
the user's own process is limited here, per run, through ``threadpoolctl`` (a dependency of
machina; if it is missing the limit is skipped: set ``OPENBLAS_NUM_THREADS=1`` before numpy
is imported instead).
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

_STATE: dict[str, Any] = {"tried": False, "controller": None}


def single_thread_blas() -> contextlib.AbstractContextManager:
    """A context in which numpy's BLAS runs on one thread (a no-op without threadpoolctl)."""
    if not _STATE["tried"]:
        _STATE["tried"] = True
        try:
            # an optional module (no stubs): imported by name
            threadpoolctl = importlib.import_module("threadpoolctl")
            # Built once: it scans the loaded libraries, which costs far more than each
            # limit set afterwards.
            _STATE["controller"] = threadpoolctl.ThreadpoolController()
        except Exception:
            _STATE["controller"] = None
    controller = _STATE["controller"]
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
