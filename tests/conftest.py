"""Shared test helpers: random episodes with terminated and truncated ends mixed, and running
example scripts / code in a fresh interpreter with readable failures."""

import os
import shlex
import subprocess
import sys
import textwrap

import numpy as np
import pytest

EXAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example")
# How much of each stream a failure message shows: enough for a traceback, not a whole log.
TAIL_CHARS = 3000


def make_random_epis(rng: np.random.Generator, n_epi: int, max_len: int = 30, ob_dim: int = 3):
    """Episodes of random length 1..max_len, ends terminated or truncated at random."""
    epis = []
    for _ in range(n_epi):
        length = int(rng.integers(1, max_len + 1))
        obs = rng.normal(size=(length + 1, ob_dim)).astype(np.float32)
        # Ends: terminated, truncated, or both at once (gymnasium allows it; terminated wins).
        end = int(rng.integers(3))
        terms = np.zeros(length, dtype=bool)
        truncs = np.zeros(length, dtype=bool)
        terms[-1] = end in (0, 2)
        truncs[-1] = end in (1, 2)
        epis.append(
            dict(
                obs=obs[:-1],
                next_obs=obs[1:],
                acs=rng.normal(size=(length, 2)).astype(np.float32),
                rews=rng.normal(size=length).astype(np.float32),
                terms=terms,
                truncs=truncs,
                dones=terms | truncs,
                a_is=dict(mean=rng.normal(size=(length, 2)).astype(np.float32)),
                e_is=dict(x_pos=rng.normal(size=length)),
            )
        )
    return epis


def pytest_configure(config: pytest.Config) -> None:
    """Every test runs on one torch thread: the nets are small and the machine has 2 cores, so
    more intra-op threads only oversubscribe (a 64x64 step took 600 ms instead of 39). Set
    once here, for the whole session, so a test behaves the same alone or in the suite."""
    import torch

    torch.set_num_threads(1)


def mean_return(epis: list[dict], key: str = "rews") -> float:
    """Mean over episodes of the sum of ``key`` (the undiscounted return)."""
    return float(np.mean([np.sum(epi[key]) for epi in epis]))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _tail(text: str | bytes | None, name: str) -> str:
    if not text:
        return f"--- {name}: (empty)"
    if isinstance(text, bytes):  # TimeoutExpired carries bytes even when text=True
        text = text.decode(errors="replace")
    if len(text) <= TAIL_CHARS:
        return f"--- {name}:\n{text}"
    return f"--- {name} (last {TAIL_CHARS} of {len(text)} chars):\n[...]{text[-TAIL_CHARS:]}"


def _run(
    cmd: list[str], timeout: float, cwd: str | os.PathLike | None
) -> subprocess.CompletedProcess:
    """Run ``cmd`` with text output captured; fail the test with the command and the tails of
    stdout and stderr (stderr last, where the traceback is) on a non-zero exit or a timeout."""
    where = f"\n(cwd: {cwd})" if cwd is not None else ""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        timed_out = e
    else:
        timed_out = None
    # Failing outside the except block keeps subprocess's own traceback out of the report.
    if timed_out is not None:
        pytest.fail(
            f"timed out after {timeout} s: {shlex.join(cmd)}{where}\n"
            f"{_tail(timed_out.stdout, 'stdout')}\n{_tail(timed_out.stderr, 'stderr')}"
        )
    if result.returncode != 0:
        pytest.fail(
            f"exit code {result.returncode}: {shlex.join(cmd)}{where}\n"
            f"{_tail(result.stdout, 'stdout')}\n{_tail(result.stderr, 'stderr')}"
        )
    return result


def run_example(
    script: str, *args, timeout: float = 300, cwd: str | os.PathLike | None = None
) -> subprocess.CompletedProcess:
    """Run ``example/<script> args...`` in a fresh interpreter (the installed machina).

    Parameters
    ----------
    script : str
        Path relative to ``example/``, e.g. ``"run_ppo.py"``.
    *args
        Command-line arguments; converted with ``str`` (numbers, paths).
    timeout : float
        Seconds before the test fails as hung.
    cwd : str or os.PathLike, optional
        Working directory of the script; the test's by default.

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as str; only returned on exit code 0.
    """
    cmd = [sys.executable, os.path.join(EXAMPLE_DIR, script), *map(str, args)]
    return _run(cmd, timeout, cwd)


def run_python(
    code: str, timeout: float = 300, cwd: str | os.PathLike | None = None
) -> subprocess.CompletedProcess:
    """Run ``code`` (dedented) with ``python -c`` in a fresh interpreter; fails like
    :func:`run_example`."""
    return _run([sys.executable, "-c", textwrap.dedent(code)], timeout, cwd)


# ---------------------------------------------------------------- float32 comparisons
U = 2.0**-24  # the unit roundoff of float32: the tolerances below are counted in it


def assert_within(actual, desired, tol, what):
    """|actual - desired| <= tol entrywise, with the worst entry in the message."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    excess = np.abs(actual - desired) - np.broadcast_to(tol, actual.shape)
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, (
        f"{what}: |{actual[worst]} - {desired[worst]}| exceeds the float32 bound "
        f"{np.broadcast_to(tol, actual.shape)[worst]:.3g} at {worst}"
    )


def categorical_draws_agree(ac, ref_ac, pi_tol, pi_ref, uniforms):
    """Equal draws, except where the uniform draw lies within the probabilities' float32
    bound of a class boundary (a tie that rounding may break either way on another CPU)."""
    cum = np.cumsum(pi_ref.astype(np.float64), axis=1)
    cum_tol = np.cumsum(pi_tol, axis=1) + pi_ref.shape[1] * 4 * U
    near = (np.abs(cum - uniforms[:, None]) <= cum_tol).any(axis=1)
    return bool(np.all((ac == ref_ac) | near))
