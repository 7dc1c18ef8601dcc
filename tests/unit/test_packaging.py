"""The wheel carries the SQL files, so `pip install pgq-thin` alone can install the schema."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from pgq_thin import schema


def test_wheel_ships_every_sql_file(tmp_path: Path) -> None:
    repo = schema.sql_dir().parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(repo)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("pgq_thin-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.removeprefix("pgq_thin/"): archive.read(name)
            for name in archive.namelist()
            if name.startswith("pgq_thin/sql/")
        }
    expected = {
        f"sql/{path.relative_to(schema.sql_dir())}": path.read_bytes()
        for path in schema.sql_dir().rglob("*")
        if path.is_file()
    }
    assert shipped == expected
    assert "sql/migrations/0001_initial.sql" in shipped
