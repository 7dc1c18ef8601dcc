"""Enqueue the demo jobs for examples/consumer.py in one transaction; prints their ids."""

from __future__ import annotations

from pgq_thin import NewJob, Queue
from pgq_thin._connection import connect


def main() -> None:
    """Enqueue one job per demo entrypoint (the database comes from DATABASE_URL)."""
    with connect() as conn:
        ids = Queue(conn).enqueue_many(
            [NewJob("greet", {"name": "Ada"}), NewJob("flaky"), NewJob("slow")]
        )
        conn.commit()  # the jobs exist from here on
    print(" ".join(str(job_id) for job_id in ids))


if __name__ == "__main__":
    main()
