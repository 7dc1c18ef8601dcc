"""Print what became of the given jobs, using pgq.explain_job: `python summary.py ID...`."""

from __future__ import annotations

import sys

from pgq_thin._connection import connect


def main(ids: list[int]) -> None:
    """One line per job."""
    with connect(autocommit=True) as conn:
        for job_id in ids:
            row = conn.execute("SELECT pgq.explain_job(%s)", (job_id,)).fetchone()
            print(row[0] if row else f"job {job_id}: ?")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]])
