"""Every public package imports on its own, first, in a fresh interpreter."""

import pkgutil
import subprocess
import sys

import pytest

import machina

PACKAGES = sorted(
    f"machina.{m.name}"
    for m in pkgutil.iter_modules(machina.__path__)
    if not m.name.startswith("_")
)


def test_packages_are_found():
    assert {"machina.algos", "machina.pols", "machina.traj"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_first(package):
    # An import cycle between packages only shows when one of them is imported first.
    done = subprocess.run(
        [sys.executable, "-c", f"import {package}; print(sorted({package}.__all__))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
