"""The dashboard's credentials: where they come from and which Authorization headers they admit."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from pgq_thin.errors import PgqError
from pgq_thin.web.security import Auth, is_loopback


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_token_admits_bearer_and_basic_with_it_as_the_password(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t0ken\n")
    auth = Auth.load(token_file=tmp_path / "token", environ={})
    assert auth == Auth(token="t0ken")
    assert auth.admits("Bearer t0ken")
    assert auth.admits("bearer t0ken")
    assert auth.admits(basic("anyone", "t0ken"))
    for header in (
        None,
        "",
        "Bearer",
        "Bearer t0ke",
        "Bearer t0ken2",
        basic("t0ken", "x"),
        "Basic !!!",
        "Digest t0ken",
    ):
        assert not auth.admits(header), header


def test_basic_auth_needs_both_user_and_password() -> None:
    auth = Auth.load(environ={"PGQ_WEB_BASIC_AUTH": "admin:pa:ss"})
    assert auth == Auth(user="admin", password="pa:ss")
    assert auth.admits(basic("admin", "pa:ss"))
    assert not auth.admits(basic("admin", "pa"))
    assert not auth.admits(basic("root", "pa:ss"))
    assert not auth.admits("Bearer pa:ss")


def test_bad_auth_settings_are_clear_errors(tmp_path: Path) -> None:
    assert Auth.load(environ={}) is None
    with pytest.raises(PgqError, match="choose one auth mode"):
        Auth.load(environ={"PGQ_WEB_TOKEN": "a", "PGQ_WEB_BASIC_AUTH": "u:p"})
    with pytest.raises(PgqError, match="user:password"):
        Auth.load(environ={"PGQ_WEB_BASIC_AUTH": "nopassword"})
    with pytest.raises(PgqError, match="cannot read"):
        Auth.load(token_file=tmp_path / "missing", environ={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(PgqError, match="is empty"):
        Auth.load(token_file=tmp_path / "empty", environ={})


def test_only_loopback_addresses_count_as_local() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.5", "example.com"]))
