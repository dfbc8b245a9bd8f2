"""numpy's BLAS on one thread while an engine runs.

The numpy copy of the policy (``_numpy_policy.py``) multiplies small matrices, e.g. 64x65 by
65x256 at 256 environments. OpenBLAS (numpy's BLAS) splits such a product over all cores
with threads that spin while they wait: measured on a 2-core machine shared with other jobs,
3.5 ms of CPU per product on its default 2 threads against 28 µs on one, which made the fast
path 27x slower at 256 environments. Worker processes and Ray actors already run with
``OMP_NUM_THREADS=1`` (which OpenBLAS honours); the user's own process is limited here, per
run, through ``threadpoolctl`` (a dependency of machina; if it is missing the limit is
skipped: set ``OPENBLAS_NUM_THREADS=1`` before numpy is imported instead).
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
            # Built once (it scans the loaded libraries, about 20 ms); each limit then costs
            # about 20 µs.
            _STATE["controller"] = threadpoolctl.ThreadpoolController()
        except Exception:
            _STATE["controller"] = None
    controller = _STATE["controller"]
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
