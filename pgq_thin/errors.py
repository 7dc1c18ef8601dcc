"""Errors the client reports to the user as one clear line."""


class PgqError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
