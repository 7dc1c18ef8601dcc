"""Test tiers: each folder's tests carry its marker; `pytest -m unit` (or a folder) runs one tier.

- ``unit``: no database, seconds (`make test-fast`);
- ``db``: a real PostgreSQL through the pgq fixtures, no worker processes;
- ``e2e``: real `pgq-thin run` worker processes (and servers of their own where they restart one);
- ``sql``: the pg_regress and isolation suites and the bash+psql worker, no Python in the loop;
- ``conformance``: the same scenarios against the Python, bash+psql and Node workers;
- ``browser``: the web dashboard in a real browser (Playwright driving Debian's chromium);
- ``fleet``: many worker processes against one server of their own, workers added and removed
  (the slowest tier: ``-m "not fleet"`` leaves it out).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "db", "e2e", "sql", "conformance", "browser", "fleet")
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.relative_to(HERE).parts[0]
        if tier in TIERS:
            item.add_marker(tier)
