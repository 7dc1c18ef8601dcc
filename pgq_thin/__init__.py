"""pgq-thin: a PostgreSQL job queue whose rules live in SQL."""

__version__ = "0.1.0"
