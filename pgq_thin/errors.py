"""Errors the client reports to the user as one clear line."""


class PgqError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback."""
