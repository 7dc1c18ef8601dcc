"""docs/sql-api.md documents every public function of schema pgq with its signature.

A function whose name does not start with `_` must appear in a heading of the page as
`pgq.name(arg type, ...)` with every argument's name and type, in order, as the installed
function has them (defaults are documented but not compared: PostgreSQL prints them cast).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sql-api.md"
# format_type() spellings to the ones the page uses.
SHORT = {"timestamp with time zone": "timestamptz"}

ARGUMENTS = """
SELECT p.proname,
       coalesce(array_agg(a.name ORDER BY a.n) FILTER (WHERE a.mode IN ('i', 'b', 'v')), '{}'),
       coalesce(array_agg(format_type(a.type, NULL) ORDER BY a.n)
                FILTER (WHERE a.mode IN ('i', 'b', 'v')), '{}')
FROM pg_proc AS p
LEFT JOIN LATERAL unnest(p.proargnames, coalesce(p.proallargtypes, p.proargtypes::oid[]),
                         coalesce(p.proargmodes, array_fill('i'::"char", ARRAY[p.pronargs])))
    WITH ORDINALITY AS a(name, type, mode, n) ON true
WHERE p.pronamespace = 'pgq'::regnamespace AND p.proname !~ '^_'
GROUP BY p.oid, p.proname
ORDER BY p.proname
"""


def _type(name: str) -> str:
    base = name.removesuffix("[]")
    return SHORT.get(base, base) + ("[]" if name.endswith("[]") else "")


def documented(text: str) -> dict[str, list[str]]:
    """Each `pgq.name(...)` of a heading, with its argument list (one entry per argument)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            continue
        for m in re.finditer(r"pgq\.(\w+)\(([^)]*)\)", line):
            args = [a.strip() for a in re.split(r",\s*(?=\w+ )", m.group(2)) if a.strip()]
            found[m.group(1)] = args
    return found


def test_every_public_function_is_documented_with_its_signature(
    pgq_conn: psycopg.Connection[Any],
) -> None:
    docs = documented(DOCS.read_text())
    problems = []
    for name, arg_names, arg_types in pgq_conn.execute(ARGUMENTS).fetchall():
        expected = [f"{n} {_type(t)}" for n, t in zip(arg_names, arg_types, strict=True)]
        if name not in docs:
            problems.append(f"pgq.{name}({', '.join(expected)}) has no heading in {DOCS.name}")
            continue
        given = [" ".join(a.split(" DEFAULT ")[0].split()) for a in docs[name]]
        if given != expected:
            problems.append(f"pgq.{name}: documented {given}, installed {expected}")
    assert not problems, "\n".join(problems)


def test_headings_are_read_argument_by_argument() -> None:
    """Defaults with commas or casts do not split an argument; prose lines are not headings."""
    text = (
        "### `pgq.f(a bigint[], b interval DEFAULT '30 seconds', c text[] DEFAULT '{x,y}')"
        " → void`, `pgq.g() → text`\n"
        "pgq.h(x integer) is mentioned in prose only\n"
    )
    args = documented(text)
    assert args == {
        "f": ["a bigint[]", "b interval DEFAULT '30 seconds'", "c text[] DEFAULT '{x,y}'"],
        "g": [],
    }
