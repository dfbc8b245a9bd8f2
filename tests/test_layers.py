"""The package layers stated in ``machina``'s docstring hold: read from the source's imports.

Every module under ``machina/`` is parsed with ``ast``; every import counts, at module level,
inside functions and under ``if TYPE_CHECKING`` (a lazy import is still a dependency, and one
that points up a floor is how a cycle hides). Each import is mapped to the package it reaches
(``machina.<package>``, or a top-level module such as ``machina.checkpoint``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import machina

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "machina"
TESTS_DIR = ROOT / "tests"

#: Test modules that import a private machina module on purpose (white-box tests of the
#: module's internals), with the private modules each one may import. Every other test
#: imports public names only. Prefer a public name; add here only for a white-box test.
WHITE_BOX_TESTS = {
    "test_epi_functional.py": {"machina.traj._scan"},  # the scan's loop / vectorised switch
    "test_imitation.py": {"machina.algos._adversarial"},  # the discriminator's batches
    "test_algos.py": {"machina.algos._common"},  # standardize_advs against numpy
    "test_utils_training.py": {"machina.algos._common"},  # when PolVfStep goes together
    "test_replay.py": {"machina.traj._replay"},
    "test_samplers_numpy_policy.py": {"machina.samplers._numpy_policy"},  # fast path vs torch
    "test_fast_path_nets.py": {"machina.samplers._numpy_policy"},  # per layer type
    "test_traj_episode_lists.py": {"machina.traj._episodes"},
    "test_traj_samplers.py": {"machina.traj._samplers"},
    "test_traj_storage.py": {"machina.traj._storage"},
    # the liveness probe's 5-minute limits, shortened for the test
    "test_ray_sampler.py": {"machina.samplers._ray_backend"},
    # the old private paths keep working (re-export modules)
    "test_layers.py": {"machina.pols._recurrent", "machina.pols._spaces", "machina.algos._common"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _package(module: str) -> str:
    """``machina.pols.base`` -> ``pols``; ``machina.checkpoint`` -> ``checkpoint``; the root
    package itself -> ``machina``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "machina"


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _floors() -> dict[str, int]:
    """The table of ``machina``'s docstring: ``<floor>  <package>, <package>`` lines."""
    doc = machina.__doc__ or ""
    section = doc.split("Layers\n------\n", 1)
    assert len(section) == 2, "machina/__init__.py: the docstring has no 'Layers' section"
    floors: dict[str, int] = {}
    for line in section[1].splitlines():
        match = re.fullmatch(r"\s+(\d+)\s{2,}([a-z_]+(?:, [a-z_]+)*)\s*", line)
        if match:
            for package in match.group(2).split(", "):
                assert package not in floors, f"machina's Layers table lists {package} twice"
                floors[package] = int(match.group(1))
    assert floors, "machina/__init__.py: no '<floor>  <packages>' lines under 'Layers'"
    return floors


@dataclass(frozen=True)
class Import:
    """One imported name: ``file:line``, the statement, the module reached and, for
    ``from m import name`` where ``name`` is not a module, the name."""

    path: Path
    line: int
    source: str
    module: str
    name: str | None

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _imports(path: Path, importer: str) -> list[Import]:
    """Every machina import in the file at ``path`` (module ``importer``), at any depth."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pairs = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = importer.split(".")[: len(importer.split(".")) - (not is_package)]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            pairs = []
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                pairs.append((submodule, None) if submodule in MODULES else (base, alias.name))
        else:
            continue
        source = " ".join(lines[node.lineno - 1 : node.end_lineno])
        for module, name in pairs:
            if module == "machina" or module.startswith("machina."):
                found.append(Import(path, node.lineno, " ".join(source.split()), module, name))
    return found


ALL_IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(path, module)]


def _importer(imp: Import) -> str:
    return _module_name(imp.path)


def test_the_layers_table_lists_every_package_once():
    floors = _floors()
    packages = {_package(m) for m in MODULES} - {"machina"}
    assert not packages - floors.keys(), (
        f"packages missing from machina's Layers table: {sorted(packages - floors.keys())}; "
        "give each a floor in machina/__init__.py's docstring"
    )
    assert not floors.keys() - packages, (
        f"machina's Layers table lists packages that do not exist: "
        f"{sorted(floors.keys() - packages)}"
    )


def test_imports_go_down_the_floors():
    floors = _floors()
    floors["machina"] = max(floors.values()) + 1  # the root package is above everything
    bad = []
    for imp in ALL_IMPORTS:
        src, dst = _package(_importer(imp)), _package(imp.module)
        if src == dst or src == "machina":
            continue
        if floors[dst] >= floors[src]:
            how = "on the same floor" if floors[dst] == floors[src] else "a higher floor"
            bad.append(
                f"{imp.where()}: {src} (floor {floors[src]}) imports {dst} (floor "
                f"{floors[dst]}, {how}): {imp.source}"
            )
    assert not bad, "imports against machina's Layers table:\n" + "\n".join(bad)


def _package_graph() -> dict[tuple[str, str], Import]:
    """One example import per package edge."""
    edges: dict[tuple[str, str], Import] = {}
    for imp in ALL_IMPORTS:
        src, dst = _package(_importer(imp)), _package(imp.module)
        if src != dst:
            edges.setdefault((src, dst), imp)
    return edges


def _find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """A cycle ``[a, b, ..., a]`` in the directed graph, or None."""
    succ: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        succ.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in succ.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(succ):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert _find_cycle({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == ["a", "b", "c", "a"]
    assert _find_cycle({("a", "b"), ("b", "c"), ("a", "c")}) is None


def test_no_cycle_between_packages():
    edges = _package_graph()
    cycle = _find_cycle(set(edges))
    if cycle:
        hops = [edges[(a, b)] for a, b in zip(cycle, cycle[1:])]
        lines = [f"  {h.where()}: {h.source}" for h in hops]
        pytest.fail(
            "packages import each other in a cycle " + " -> ".join(cycle) + ":\n" + "\n".join(lines)
        )


def test_no_private_name_crosses_a_package():
    """``from machina.x._m import a`` or ``from machina.x.m import _a`` from outside ``x``."""
    bad = []
    for imp in ALL_IMPORTS:
        src, dst = _package(_importer(imp)), _package(imp.module)
        if src == dst:
            continue
        parts = imp.module.split(".")[1:] + ([imp.name] if imp.name else [])
        if any(_is_private(part) for part in parts):
            bad.append(f"{imp.where()}: {src} imports a private name of {dst}: {imp.source}")
    assert not bad, (
        "private names imported from another package (make the name public on the lowest "
        "floor that uses it):\n" + "\n".join(bad)
    )


def test_private_names_of_a_public_module_stay_in_it():
    """Inside a package, helpers shared by its modules live in a private module
    (``_common.py``); ``from machina.x.public_module import _name`` reaches into another
    module's internals."""
    bad = []
    for imp in ALL_IMPORTS:
        if imp.name is None or not _is_private(imp.name) or imp.module == _importer(imp):
            continue
        if _package(_importer(imp)) != _package(imp.module):
            continue  # the test above reports it
        if not any(_is_private(part) for part in imp.module.split(".")):
            bad.append(f"{imp.where()}: {imp.source}")
    assert not bad, (
        "private names imported from another (public) module of the package (move the "
        "helper to the package's private _common module):\n" + "\n".join(bad)
    )


def test_tests_import_public_names_only():
    bad = []
    for path in sorted(TESTS_DIR.rglob("*.py")):
        allowed = WHITE_BOX_TESTS.get(path.name, set())
        for imp in _imports(path, f"tests.{path.stem}"):
            parts = imp.module.split(".")
            private = [i for i, part in enumerate(parts) if _is_private(part)]
            if private:
                reached = ".".join(parts[: private[0] + 1])
            elif imp.name and _is_private(imp.name):
                reached = f"{imp.module}.{imp.name}"
            else:
                continue
            if reached not in allowed:
                bad.append(f"{imp.where()}: {imp.source}")
    assert not bad, (
        "tests importing private machina names (import a public name, or, for a white-box "
        "test of that module, list it in WHITE_BOX_TESTS in tests/test_layers.py):\n"
        + "\n".join(bad)
    )


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_bottom_floor_loads_nothing_else_of_machina():
    # The ast tests above cannot see imports made by importlib; the interpreter can.
    out = _run(
        """
        import sys
        import machina.utils
        print(sorted(m for m in sys.modules if m.startswith("machina.")
                     and not m.startswith("machina.utils")))
        """
    )
    assert out.strip() == "[]"


def test_measure_prints_until_the_logger_installs_itself():
    out = _run(
        """
        from machina.utils import measure
        with measure("before"):
            pass
        import machina.logger
        with measure("after"):
            pass
        """
    )
    before, after = out.strip().splitlines()
    assert re.fullmatch(r"before: \d+\.\d{4}sec", before)
    # the logger's format: a timestamp, then the message
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ .* \| after: \d+\.\d{4}sec", after)


def test_measure_writes_to_the_sink_it_is_given():
    from machina.utils import measure, timing

    got: list[str] = []
    previous = timing.set_sink(got.append)
    try:
        with measure("block"):
            pass
        with measure("quiet", log_enable=False):
            pass
    finally:
        timing.set_sink(previous)
    assert len(got) == 1 and re.fullmatch(r"block: \d+\.\d{4}sec", got[0])


def test_the_old_private_paths_still_work():
    import machina.algos._common as algos_common
    import machina.pols._recurrent as pols_recurrent
    import machina.pols._spaces as pols_spaces
    from machina import utils
    from machina.utils import recurrent, spaces, training

    assert pols_recurrent.RecurrentMixin is recurrent.RecurrentMixin is utils.RecurrentMixin
    assert pols_recurrent._detach is recurrent.detach_hs
    assert pols_recurrent._all_finite is utils.all_finite_tensor
    assert pols_spaces.check_space is spaces.check_space
    assert pols_spaces.check_flat_space is spaces.check_flat_space
    for name in ("optimizer_step", "polyak_update", "frozen"):
        assert getattr(algos_common, name) is getattr(training, name) is getattr(utils, name)
