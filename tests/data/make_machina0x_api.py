"""Write machina 0.x's public API as JSON for tests/test_compat_api_snapshot.py.

Usage: ``python tests/data/make_machina0x_api.py <machina-0.x checkout> <output.json>``

Every module of the checkout's ``machina`` package is parsed with ``ast`` (0.x needs ``gym``
and cannot be imported): public functions, classes with their public methods (``__init__``
and ``__call__`` too) and class attributes, public module attributes and the names package
``__init__`` files re-export, each function as ``[name, default source or null, kind]``.
"""

import ast
import json
import os
import sys

ORIG = sys.argv[1]


def params(fn):
    a = fn.args
    pos = [x.arg for x in a.posonlyargs + a.args]
    defs = [ast.unparse(d) for d in a.defaults]
    out = []
    for i, n in enumerate(pos):
        j = i - (len(pos) - len(defs))
        out.append([n, defs[j] if j >= 0 else None, "pos"])
    if a.vararg:
        out.append([a.vararg.arg, None, "var"])
    for k, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append([k.arg, ast.unparse(d) if d is not None else None, "kw"])
    if a.kwarg:
        out.append([a.kwarg.arg, None, "varkw"])
    return out


api = {}
for root, _, files in sorted(os.walk(os.path.join(ORIG, "machina"))):
    for f in sorted(files):
        if not f.endswith(".py"):
            continue
        p = os.path.join(root, f)
        mod = os.path.relpath(p, ORIG)[:-3].replace("/", ".")
        if mod.endswith(".__init__"):
            mod = mod[: -len(".__init__")]
        with open(p, encoding="utf-8") as src:
            tree = ast.parse(src.read())
        entry = {"functions": {}, "classes": {}, "attributes": [], "reexports": []}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                entry["functions"][node.name] = params(node)
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                methods = {}
                attrs = []
                for m in node.body:
                    if isinstance(m, ast.FunctionDef) and (
                        not m.name.startswith("_") or m.name in ("__init__", "__call__")
                    ):
                        deco = [ast.unparse(d) for d in m.decorator_list]
                        methods[m.name] = None if "property" in deco else params(m)
                    elif isinstance(m, ast.Assign):
                        attrs += [
                            t.id
                            for t in m.targets
                            if isinstance(t, ast.Name) and not t.id.startswith("_")
                        ]
                entry["classes"][node.name] = {
                    "bases": [
                        ast.unparse(b).split(".")[-1]
                        for b in node.bases
                        if ast.unparse(b) != "object"
                    ],
                    "methods": methods,
                    "attributes": attrs,
                }
            elif isinstance(node, ast.Assign):
                entry["attributes"] += [
                    t.id
                    for t in node.targets
                    if isinstance(t, ast.Name) and not t.id.startswith("_")
                ]
            elif (
                isinstance(node, ast.ImportFrom)
                and f == "__init__.py"
                and (node.module or "").startswith("machina")
            ):
                entry["reexports"] += [a.asname or a.name for a in node.names]
        api[mod] = entry

# one module per line, so that a change shows as a one-line diff
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write(
        "{\n"
        + ",\n".join(f"{json.dumps(m)}: {json.dumps(api[m], sort_keys=True)}" for m in sorted(api))
        + "\n}\n"
    )
