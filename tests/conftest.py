"""Shared test helpers: random episodes with terminated and truncated ends mixed, running
example scripts / code in a fresh interpreter with readable failures, and the float32
comparisons and error model of the numpy fast path against torch. Test layout: README.md."""

import concurrent.futures
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import torch
from torch import nn

# Ray starts its worker processes at nice 15 (its worker_niceness), below the raylet: with
# pytest-xdist's other worker busy on the second core, an actor's `import torch` took 7 s
# instead of 1 and the Ray tests 3-5x their time alone. Test-started instances (and the
# example scripts' subprocesses, which inherit this) run their workers at the tests' niceness.
os.environ.setdefault("RAY_worker_niceness", "0")

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
    # pytest-xdist's --dist loadfile queues files by their number of tests, which put the
    # slowest files (a few long learning or Ray tests each) last: one process ran them alone
    # while the other had finished. Keep the order of pytest_collection_modifyitems instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


# Seconds each file took in a whole-suite run (written by ``python tests/_durations.py``):
# pytest_collection_modifyitems runs the slowest files first, so the two processes of
# ``-n 2 --dist loadfile`` end together (longest first), whatever the machine's speed.
DURATIONS_FILE = Path(__file__).with_name("durations.json")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the files by their recorded duration, longest first; each file's tests keep
    their order, and a file with no record (a new one) goes after the recorded ones."""
    import json
    import warnings

    try:
        seconds = json.loads(DURATIONS_FILE.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as error:
        message = f"{DURATIONS_FILE}: unreadable ({error}); files in collection order"
        warnings.warn(pytest.PytestConfigWarning(message), stacklevel=1)
        return
    if not isinstance(seconds, dict) or not all(
        isinstance(v, (int, float)) for v in seconds.values()
    ):
        message = f"{DURATIONS_FILE}: expected {{file: seconds}}; files in collection order"
        warnings.warn(pytest.PytestConfigWarning(message), stacklevel=1)
        return
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], 0.0))


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
    cmd: list[str],
    timeout: float,
    cwd: str | os.PathLike | None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` with text output captured; fail the test with the command and the tails of
    stdout and stderr (stderr last, where the traceback is) on a non-zero exit or a timeout."""
    where = f"\n(cwd: {cwd})" if cwd is not None else ""
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
        )
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


def forget_ray_address(address: str) -> None:
    """Remove the file where ``ray.cluster_utils.Cluster`` leaves ``address`` for a bare
    ``ray.init()`` on this machine: other programs here must not attach to a test's cluster."""
    import ray

    address_file = ray._private.utils.get_ray_address_file(None)
    if os.path.exists(address_file):
        with open(address_file) as f:
            if f.read().strip() != address:
                return
        os.remove(address_file)


def run_example(
    script: str,
    *args,
    timeout: float = 300,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
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
    env : dict, optional
        The script's environment variables; the test's by default.

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as str; only returned on exit code 0.
    """
    return _run(example_cmd(script, *args), timeout, cwd, env)


def example_cmd(script: str, *args) -> list[str]:
    """The command :func:`run_example` runs: ``example/<script> args...`` (``str`` of each)."""
    return [sys.executable, os.path.join(EXAMPLE_DIR, script), *map(str, args)]


#: Environment of commands run two at a time: one torch thread each, so that two processes
#: do not oversubscribe the machine's two cores.
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_examples(
    runs: list[tuple[str, list]], timeout: float = 300, cwd: str | os.PathLike | None = None
) -> list[subprocess.CompletedProcess]:
    """Run several example scripts as :func:`run_example` does, two at a time (start-up and
    small nets: each is one busy thread), on one torch thread each.

    Parameters
    ----------
    runs : list of (str, list)
        ``(script, args)`` pairs, as :func:`run_example`'s arguments.
    timeout, cwd
        As :func:`run_example`'s, for each run.

    Returns
    -------
    list of subprocess.CompletedProcess
        In the order of ``runs``. Every run is waited for (``subprocess.run`` kills one that
        times out); then the first failure, in that order, fails the test.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(_run, example_cmd(script, *args), timeout, cwd, ONE_THREAD_ENV)
            for script, args in runs
        ]
        concurrent.futures.wait(futures)
    return [future.result() for future in futures]


def assert_same_state(a, b, where: str) -> None:
    """``a`` and ``b`` (checkpoint contents: nested dicts / lists of tensors and plain values)
    are equal bit for bit, dtypes included; ``where`` names the first difference."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def final_state(run_dir: str | os.PathLike) -> dict:
    """The newest checkpoint's state.pt of an example's run folder, without the global numpy
    RNG (the scripts seed torch only: numpy's differs between processes, unused)."""
    from machina.checkpoint import latest_checkpoint

    state = torch.load(latest_checkpoint(run_dir) / "state.pt", weights_only=True)
    state["__rng__"].pop("numpy")
    return state


def crashed_copy(run_dir: Path, dest: Path) -> Path:
    """A copy of the run folder ``run_dir`` as if its run had been killed just before writing
    its newest checkpoint: the later rows, TensorBoard scalars and models are there, ``latest``
    names the checkpoint before (which a resume must cut them back to)."""
    shutil.copytree(run_dir, dest)
    ckpts = sorted(path for path in dest.glob("ckpt-*") if path.is_dir())
    assert len(ckpts) >= 2, f"{run_dir}: expected two checkpoints or more, found {ckpts}"
    shutil.rmtree(ckpts[-1])
    (dest / "latest").write_text(ckpts[-2].name)
    return dest


def check_examples_resume_after_crash(
    runs: list[tuple[str, list]], tmp_path: Path
) -> list[tuple[dict, dict]]:
    """Each example run uninterrupted, then resumed from its last-but-one checkpoint (after a
    simulated crash, :func:`crashed_copy`) with the same arguments, ends in the same state.

    Parameters
    ----------
    runs : list of (str, list)
        ``(script, args)``: ``args`` must make the run write two checkpoints or more
        (``--checkpoint_interval`` half the budget, say) and carry no ``--log``.
    tmp_path : Path
        Where the run folders go.

    Returns
    -------
    list of (dict, dict)
        The uninterrupted and the resumed runs' final states (:func:`final_state`), which
        were found equal, and whose progress.csv have the same number of rows.
    """
    wholes = [tmp_path / f"{i}-whole" for i in range(len(runs))]
    run_examples([(script, ["--log", whole, *args]) for (script, args), whole in zip(runs, wholes)])
    crashed = [crashed_copy(whole, tmp_path / f"{i}-crashed") for i, whole in enumerate(wholes)]
    run_examples([(script, ["--resume", d, *args]) for (script, args), d in zip(runs, crashed)])
    return [_same_ends(script, w, r) for (script, _), w, r in zip(runs, wholes, crashed)]


def check_examples_resume_with_a_larger_budget(
    runs: list[tuple[str, list]],
    tmp_path: Path,
    budgets: tuple[int, int],
    flag: str = "--max_steps",
) -> list[tuple[dict, dict]]:
    """Each example run to the larger budget equals the run stopped at the smaller one and
    resumed (``--resume``) with the larger: the checkpoint continues, and the evaluation made
    only because the first budget ended leaves no trace.

    Parameters
    ----------
    runs : list of (str, list)
        ``(script, args)``, ``args`` without ``--log`` and the budget ``flag``.
    tmp_path : Path
        Where the run folders go.
    budgets : (int, int)
        The smaller budget and the larger.
    flag : str
        The scripts' budget flag.

    Returns
    -------
    list of (dict, dict)
        The uninterrupted and the resumed runs' final states (:func:`final_state`), found
        equal, whose progress.csv have the same number of rows.
    """
    half, whole = budgets
    dirs = [(tmp_path / f"{i}-whole", tmp_path / f"{i}-halves") for i in range(len(runs))]
    # the uninterrupted runs and the first halves side by side, then the second halves
    run_examples(
        [(s, ["--log", w, flag, whole, *a]) for (s, a), (w, _) in zip(runs, dirs)]
        + [(s, ["--log", h, flag, half, *a]) for (s, a), (_, h) in zip(runs, dirs)]
    )
    run_examples([(s, ["--resume", h, flag, whole, *a]) for (s, a), (_, h) in zip(runs, dirs)])
    return [_same_ends(script, w, h) for (script, _), (w, h) in zip(runs, dirs)]


def _same_ends(script: str, whole: Path, resumed: Path) -> tuple[dict, dict]:
    """The two run folders' final states, checked equal, with as many progress.csv rows."""
    a, b = final_state(whole), final_state(resumed)
    assert_same_state(a, b, script)
    rows = [(d / "progress.csv").read_text().splitlines() for d in (whole, resumed)]
    assert len(rows[0]) == len(rows[1]) > 2, (script, rows)
    return a, b


class Prefetch:
    """Commands run one step ahead of the tests that check them, two at a time.

    A module's tests that each run one script spend their time waiting on interpreter
    start-up and small nets, one core busy. A module-scoped ``Prefetch`` runs the next test's
    command while the current one's runs: :meth:`result` starts the command of ``key`` (if
    not started yet) and that of the key after it, then waits for its own. Tests that run
    in the order of the keys (pytest's parametrisation order) thus overlap two by two; a
    deselected test costs at most one run.

    Parameters
    ----------
    cmds : dict
        Key -> command (``list[str]``), in the order the tests run; each runs as
        :func:`run_example` runs it (failing the test that awaits it), on one torch thread.
    timeout : float
        Seconds for each command.
    """

    def __init__(self, cmds: dict, timeout: float = 300) -> None:
        self._cmds = cmds
        self._keys = list(cmds)
        self._timeout = timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self._futures: dict = {}

    def _start(self, key) -> None:
        if key not in self._futures:
            cmd = self._cmds[key]
            self._futures[key] = self._pool.submit(_run, cmd, self._timeout, None, ONE_THREAD_ENV)

    def result(self, key) -> subprocess.CompletedProcess:
        """The finished run of ``key``'s command (the test fails if it failed)."""
        self._start(key)
        following = self._keys.index(key) + 1
        if following < len(self._keys):
            self._start(self._keys[following])
        return self._futures[key].result()

    def close(self) -> None:
        """Wait for the runs started (bounded by their timeouts); drop those not started."""
        self._pool.shutdown(wait=True, cancel_futures=True)


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


# the float32 error model of the numpy fast path against torch (one for every test of it)
# ulps of a linear layer's magnitudes (|W| |h| + |b|) per path: both paths sum in different
# orders (BLAS kernels against torch's). Measured on an Intel Xeon over many batches, each
# path was within 0.11 ulp of it; Higham's rigorous bound (k ulps for k terms) is a hundred
# times looser and would test nothing.
ULPS_PER_LAYER = 4
# ulps per path of an elementwise kernel: torch's vectorised and scalar kernels (which one
# an entry meets depends on the layout, (B, h) or (h, B)) and numpy's tanh, each within a
# few ulps of the exact value; of |act(z)| + 1, since ELU / SELU compute exp(z) - 1, whose
# error near 0 is absolute (an ulp of 1), not relative
ACT_ULPS = 4


def _sigmoid(z):
    return scipy.special.expit(z)


def _softplus(z, beta=1.0, threshold=20.0):
    return np.where(beta * z > threshold, z, np.logaddexp(0.0, beta * z) / beta)


def _gelu(z, approximate="none"):
    if approximate == "tanh":
        return 0.5 * z * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (z + 0.044715 * z**3)))
    return 0.5 * z * (1.0 + scipy.special.erf(z / np.sqrt(2.0)))


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
# activation: (module, float64 reference, Lipschitz bound: |f(x) - f(y)| <= L |x - y|)
ACTIVATIONS = {
    "relu": (nn.ReLU(), lambda z: np.maximum(z, 0.0), 1.0),
    "tanh": (nn.Tanh(), np.tanh, 1.0),
    "sigmoid": (nn.Sigmoid(), _sigmoid, 0.25),
    "silu": (nn.SiLU(), lambda z: z * _sigmoid(z), 1.1),  # max slope 1.0998
    "elu": (nn.ELU(alpha=0.7), lambda z: np.where(z > 0, z, 0.7 * np.expm1(z)), 1.0),
    "leaky_relu": (nn.LeakyReLU(0.2), lambda z: np.where(z > 0, z, 0.2 * z), 1.0),
    "selu": (
        nn.SELU(),
        lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(z)),
        SELU_SCALE * SELU_ALPHA,
    ),
    "gelu": (nn.GELU(), _gelu, 1.13),  # max slope 1.129
    "gelu_tanh": (nn.GELU(approximate="tanh"), lambda z: _gelu(z, "tanh"), 1.13),
    "softplus": (nn.Softplus(beta=2.0, threshold=5.0), lambda z: _softplus(z, 2.0, 5.0), 1.0),
    "mish": (nn.Mish(), lambda z: z * np.tanh(_softplus(z)), 1.09),  # max slope 1.088
}


def reference_activation(name, params):
    """The float64 function and Lipschitz bound of an activation op of the spec, with the
    op's own parameters (a net's ELU may have another alpha than ACTIVATIONS' module)."""
    if name == "elu":
        alpha = params.get("alpha", 1.0)
        return (lambda z: np.where(z > 0, z, alpha * np.expm1(z))), max(1.0, abs(alpha))
    if name == "leaky_relu":
        slope = params.get("negative_slope", 0.01)
        return (lambda z: np.where(z > 0, z, slope * z)), max(1.0, abs(slope))
    if name == "softplus":
        beta, threshold = params.get("beta", 1.0), params.get("threshold", 20.0)
        return (lambda z: _softplus(z, beta, threshold)), 1.0
    key = "gelu_tanh" if params.get("approximate") == "tanh" else name
    _, fn, lipschitz = ACTIVATIONS[key]
    return fn, lipschitz


def float32_tolerances(spec, obs):
    """Per-entry bounds on |fast - torch| for the outputs of a feed-forward policy on
    ``obs (B, ...)``, from float32 arithmetic (so the same bounds hold on any CPU).

    ``spec`` is the policy's ``numpy_inference()`` or the policy itself. The bound is carried
    through the ops in float64 beside the exact values ``z``: a linear layer adds
    ``ULPS_PER_LAYER`` ulps of its magnitudes per path to the incoming bound mapped by
    ``|W|``; an activation maps the bound by its Lipschitz constant and adds ``ACT_ULPS``
    ulps of ``|act(z)| + 1`` per path. Heads: tanh's slope for the Gaussian mean (tanh is
    1-Lipschitz), and for ``pi`` the bound of exp, the sum of ``n`` terms and the division
    of softmax.

    Returns
    -------
    dict with ``mean`` and ``ac`` (a sampled action before scaling) for a Gaussian, or ``pi``
    for a categorical policy, each (B, out).
    """
    if hasattr(spec, "numpy_inference"):
        spec = spec.numpy_inference()
    z = obs.reshape(len(obs), -1).astype(np.float64)
    err = np.zeros_like(z)
    # a linear Gaussian mean (PolHead(squash_mean=False)): the head's layer is the last op
    linear_mean = spec["kind"] == "gaussian" and spec["ops"][-1][0] == "linear"
    for op in spec["ops"] if linear_mean else spec["ops"][:-1]:
        if op[0] == "linear":
            weight, bias = op[1].astype(np.float64), op[2].astype(np.float64)
            magnitude = np.abs(z) @ np.abs(weight).T + np.abs(bias)
            err = err @ np.abs(weight).T + 2 * ULPS_PER_LAYER * U * magnitude
            z = z @ weight.T + bias
        else:
            fn, lipschitz = reference_activation(op[1], op[2])
            z = fn(z)
            err = lipschitz * err + 2 * ACT_ULPS * U * (np.abs(z) + 1.0)
    if spec["kind"] == "gaussian_sde":
        return _sde_tolerances(spec, z, err)
    tol = {}
    if spec["kind"] == "gaussian":
        std = np.exp(spec["log_std"].astype(np.float64))
        if linear_mean:
            tol["mean"] = err
            # ac = mean + exp(log_std) * noise, |noise| < 8: the sum's rounding scales with
            # |mean| here (unbounded); exp a few ulps per path
            tol["ac"] = err + 8 * U * (np.abs(z) + 1.0 + 8.0 * std)
            return tol
        # tanh: its slope at most 1 - tanh^2 over [|z| - err, |z|]; a few ulps per path
        slope = 1.0 - np.tanh(np.maximum(np.abs(z) - err, 0.0)) ** 2
        tol["mean"] = slope * err + 8 * U
        # ac = mean + exp(log_std) * noise, |noise| < 8; exp a few ulps per path
        tol["ac"] = tol["mean"] + 8 * U * (1.0 + 8.0 * std)
    else:
        # pi_i = 1 / sum_j exp(z_j - z_i): log pi_i moves by at most 2 max|dz|; exp, the sum
        # of n terms and the division add (n + 4) ulps per path
        n = z.shape[1]
        dz = err.max(axis=1, keepdims=True)
        pi = np.exp(z - z.max(axis=1, keepdims=True))
        pi /= pi.sum(axis=1, keepdims=True)
        tol["pi"] = pi * (np.expm1(2 * dz) + 2 * (n + 4) * U)
    return tol


def _sde_tolerances(spec, features, err):
    """:func:`float32_tolerances` of a gSDE policy (kind ``gaussian_sde``) from its features'
    exact values ``(B, k)`` and their bound: ``mean`` (the last linear layer), ``log_std`` =
    ``0.5 log(features^2 @ exp(2 log_std) + 1e-6)``, and ``ac`` = ``mean + features @ E``,
    ``|E| < 8 exp(log_std)`` entrywise."""
    weight, bias = (a.astype(np.float64) for a in spec["ops"][-1][1:])
    magnitude = np.abs(features) @ np.abs(weight).T + np.abs(bias)
    tol = {"mean": err @ np.abs(weight).T + 2 * ULPS_PER_LAYER * U * magnitude}
    param = spec["log_std"].astype(np.float64)  # (k, d)
    var_w = np.exp(2.0 * param)  # exp: a few ulps per path, counted below
    square_err = 2.0 * np.abs(features) * err + err**2 + 2 * ACT_ULPS * U * features**2
    var = features**2 @ var_w
    var_err = square_err @ var_w + 2 * (ULPS_PER_LAYER + ACT_ULPS) * U * var
    total = var + 1e-6
    # log moves by at most var_err / (total - var_err); the log and the halving a few ulps
    log_err = var_err / np.maximum(total - var_err, 1e-300)
    tol["log_std"] = 0.5 * log_err + 2 * ACT_ULPS * U * (np.abs(0.5 * np.log(total)) + 1.0)
    bound = 8.0 * np.exp(param)
    noise = err @ bound + 2 * ULPS_PER_LAYER * U * (np.abs(features) @ bound)
    tol["ac"] = tol["mean"] + noise + 4 * U * (np.abs(features) @ bound + magnitude)
    return tol
