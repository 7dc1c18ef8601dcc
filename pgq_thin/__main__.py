"""`python -m pgq_thin` is the `pgq-thin` command."""

from pgq_thin.cli import main

main(prog_name="pgq-thin")
