"""Every public package imports on its own, first, in a fresh interpreter."""

import pkgutil
import sys

import pytest
from conftest import Prefetch

import machina

PACKAGES = sorted(
    f"machina.{m.name}"
    for m in pkgutil.iter_modules(machina.__path__)
    if not m.name.startswith("_")
)


def test_packages_are_found():
    assert {"machina.algos", "machina.pols", "machina.traj"} <= set(PACKAGES)


@pytest.fixture(scope="module")
def imports():
    """Each package imported first in a fresh interpreter, two at a time."""
    code = "import {0}; print(sorted({0}.__all__))"
    prefetch = Prefetch({p: [sys.executable, "-c", code.format(p)] for p in PACKAGES}, timeout=120)
    yield prefetch
    prefetch.close()


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_first(imports, package):
    # An import cycle between packages only shows when one of them is imported first.
    assert imports.result(package).stdout.startswith("[")
