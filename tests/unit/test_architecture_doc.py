"""docs/architecture.md shows the import layers that `make lint` enforces, not a stale copy."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_layers_are_the_enforced_ones() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- layers: .*? -->\n```\n(.*?)```", doc, flags=re.S)
    assert block, "docs/architecture.md lost its layers block"
    assert block.group(1).splitlines() == contract["layers"]
