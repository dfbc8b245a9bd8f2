"""The package ships its type hints (PEP 561): a ``py.typed`` marker installed with it."""

import ast
import os

import machina

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_py_typed_marker_is_shipped():
    assert os.path.isfile(os.path.join(os.path.dirname(machina.__file__), "py.typed"))
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    package_data = [
        ast.literal_eval(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "package_data"
    ]
    assert package_data == [{"machina": ["py.typed"]}]
