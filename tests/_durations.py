"""Write ``tests/durations.json``, each test file's seconds in a whole-suite run, from that
run's JUnit XML report; ``conftest.py`` runs the slowest files first from it.

    python -m pytest -n 2 --dist loadfile --junitxml=/tmp/suite.xml
    python tests/_durations.py /tmp/suite.xml

Only the order of the files is read from it, so the numbers of any machine do.
"""

import json
import os
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).with_name("durations.json")


def file_seconds(junit_xml: str) -> dict[str, float]:
    """Seconds per test file (``"tests/test_x.py"``), setup and teardown included."""
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        # classname "tests.test_x" or "tests.test_x.TestClass": the file is its first two
        # parts; a module that failed to collect has classname "" and name "tests.test_x"
        parts = (case.get("classname") or case.get("name", "")).split(".")
        if len(parts) < 2:
            continue
        seconds[f"{parts[0]}/{parts[1]}.py"] += float(case.get("time", 0.0))
    return dict(seconds)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} <junit.xml of a whole-suite run>")
    seconds = file_seconds(sys.argv[1])
    ordered = dict(sorted(((k, round(v, 1)) for k, v in seconds.items()), key=lambda kv: -kv[1]))
    tmp = OUT.with_suffix(".tmp")  # an interrupted write leaves the old file whole
    tmp.write_text(json.dumps(ordered, indent=1) + "\n")
    os.replace(tmp, OUT)
    print(f"{OUT}: {len(ordered)} files, {sum(ordered.values()):.0f} s in all")


if __name__ == "__main__":
    main()
