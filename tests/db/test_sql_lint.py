"""Static checks on every file in sql/: it parses, names are schema-qualified, functions are
SECURITY DEFINER with a pinned search_path and not executable by PUBLIC, the hot path has no
dynamic SQL, and plpgsql_check finds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pglast
import psycopg
import pytest
from pglast import ast

from pgq_thin import schema

SQL_FILES = sorted(schema.sql_dir().glob("*/*.sql"))
HOT_PATH = {
    "enqueue",
    "enqueue_many",
    "dequeue",
    "promote_due",
    "complete",
    "complete_many",
    "fail",
    "fail_many",
    "_settle_failures",
    "_lock_held",
    "heartbeat",
    "reap",
    "release",
}


def statements(path: Path) -> list[tuple[str, ast.Node]]:
    text = path.read_text()
    return [
        (text[s], pglast.parse_sql(text[s])[0].stmt) for s in pglast.split(text, only_slices=True)
    ]


def functions() -> list[tuple[str, ast.CreateFunctionStmt]]:
    return [
        (text, node)
        for path in SQL_FILES
        for text, node in statements(path)
        if isinstance(node, ast.CreateFunctionStmt)
    ]


def option(node: ast.CreateFunctionStmt, name: str) -> ast.Node | None:
    return next((o.arg for o in node.options or () if o.defname == name), None)


def test_sql_dir_has_migrations_and_api() -> None:
    kinds = {p.parent.name for p in SQL_FILES}
    assert kinds == {"migrations", "api"}


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_statement_parses_and_names_schema_pgq(path: Path) -> None:
    for text, node in statements(path):
        relation = getattr(node, "relation", None) or getattr(node, "view", None)
        if isinstance(relation, ast.RangeVar):
            assert relation.schemaname == "pgq", f"unqualified relation in: {text[:80]}"
        if isinstance(node, ast.CreateFunctionStmt):
            names = [n.sval for n in node.funcname]
            assert names[0] == "pgq" and len(names) == 2, f"unqualified function {names}"


def test_every_function_is_security_definer_pins_search_path_and_has_a_comment() -> None:
    found = functions()
    assert len(found) >= len(HOT_PATH)
    comments = {
        node.object.objname[-1].sval
        for path in SQL_FILES
        for _, node in statements(path)
        if isinstance(node, ast.CommentStmt) and isinstance(node.object, ast.ObjectWithArgs)
    }
    for _, node in found:
        name = node.funcname[-1].sval
        security = option(node, "security")
        assert isinstance(security, ast.Boolean) and security.boolval, (
            f"pgq.{name}: SECURITY DEFINER"
        )
        pinned = option(node, "set")
        assert isinstance(pinned, ast.VariableSetStmt) and pinned.name == "search_path", name
        # pg_temp last: otherwise it is searched first for types and tables, and a caller's
        # temporary `text` domain would run the caller's code as the functions' owner.
        assert [a.val.sval for a in pinned.args] == ["pg_catalog", "pgq", "pg_temp"], name
        assert name in comments, f"pgq.{name} has no COMMENT ON FUNCTION"


def test_hot_path_is_static_sql() -> None:
    seen = set()
    for text, node in functions():
        name = node.funcname[-1].sval
        language = option(node, "language")
        assert isinstance(language, ast.String)
        if language.sval != "plpgsql":
            assert "execute" not in text.lower().split("$$")[1], name
            seen.add(name)
            continue
        # pglast's PL/pgSQL parser only knows public/pg_catalog types.
        tree = json.dumps(pglast.parse_plpgsql(text.replace("pgq.", "public.")))
        if name in HOT_PATH:
            assert "PLpgSQL_stmt_dynexecute" not in tree, f"pgq.{name} uses EXECUTE"
        seen.add(name)
    assert seen >= HOT_PATH, f"hot-path functions missing: {HOT_PATH - seen}"


def test_no_function_is_executable_by_public(pgq_conn: psycopg.Connection[object]) -> None:
    public = pgq_conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p"
        " WHERE p.pronamespace = 'pgq'::regnamespace"
        " AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) AS a"
        "      WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))"
    ).fetchall()
    assert public == []
    usage = pgq_conn.execute("SELECT has_schema_privilege('public', 'pgq', 'USAGE')").fetchone()
    assert usage == (False,)


def test_plpgsql_check_finds_nothing(pgq_conn: psycopg.Connection[object]) -> None:
    available = pgq_conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'plpgsql_check'"
    ).fetchone()
    if available is None:
        pytest.fail(
            "plpgsql_check is not installed: run `make deps` (Debian postgresql-NN-plpgsql-check)"
        )
    pgq_conn.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
    rows = pgq_conn.execute(
        """
        SELECT p.oid::regprocedure::text, c.lineno, c.level, c.message
        FROM pg_proc AS p
        JOIN pg_language AS l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
        CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid, fatal_errors => false) AS c
        WHERE p.pronamespace = 'pgq'::regnamespace AND c.level IN ('error', 'warning')
        """
    ).fetchall()
    assert rows == []
