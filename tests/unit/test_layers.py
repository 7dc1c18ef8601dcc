"""The import graph: no cycles, and every module imports on its own in a fresh interpreter.

`make lint` checks the layers (pyproject's [tool.importlinter]); this finds any cycle, which a
layers contract cannot see between modules it does not name.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import grimp
import pytest

GRAPH = grimp.build_graph("pgq_thin")
MODULES = sorted(m for m in GRAPH.modules if m != "pgq_thin")


def test_no_import_cycle() -> None:
    cycles = []
    for a, b in itertools.combinations(MODULES, 2):
        there = GRAPH.find_shortest_chain(importer=a, imported=b)
        back = GRAPH.find_shortest_chain(importer=b, imported=a)
        if there and back:
            cycles.append(" -> ".join(there) + " -> " + " -> ".join(back[1:]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", [m for m in MODULES if not m.endswith("__main__")])
def test_module_imports_alone(module: str) -> None:
    """A module that only works after another was imported first hides a cycle."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
