"""Contended booking inserts on PostgreSQL: bare exclusion constraint vs advisory lock first.

Usage: .venv/bin/python bench/pg_contention.py [--workers 32] [--ranges 1000] [--per-range 2]

Every worker inserts into one scratch table guarded by the same exclusion
constraint as `bookings`. Each contested range is attempted `per-range` times
at once. Without the advisory lock some losers die of deadlock (40P01) rather
than of the exclusion (23P01); with it, every loser sees the winner cleanly.
Prints both runs and their time ratio, measured in this one run. Talks only to
the local server (TEST_PG_ADMIN_URL).
"""
import argparse
import os
import threading
import time
import uuid
from collections import Counter

import psycopg

ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE TABLE slots (
    id serial PRIMARY KEY, room_id int NOT NULL, start_at timestamptz NOT NULL, end_at timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'held',
    EXCLUDE USING gist (room_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&) WHERE (state IN ('held','confirmed'))
);
"""


def run(url: str, workers: int, ranges: int, per_range: int, advisory: bool) -> tuple[float, Counter]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE slots")
    # Attempts of one range are spread over the workers, and each worker walks
    # the ranges in a different order, which is what makes the bare constraint deadlock.
    jobs = [[] for _ in range(workers)]
    for r in range(ranges):
        for k in range(per_range):
            jobs[(r * per_range + k) % workers].append(r)
    outcome: Counter = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(workers)

    def worker(mine: list[int]) -> None:
        with psycopg.connect(url) as conn:
            barrier.wait()
            for r in mine:
                try:
                    with conn.transaction():
                        if advisory:
                            conn.execute("SELECT pg_advisory_xact_lock(4201, 1)")
                        conn.execute(
                            "INSERT INTO slots (room_id, start_at, end_at) VALUES "
                            "(1, '2027-01-01'::timestamptz + %s * interval '1 hour', "
                            "'2027-01-01'::timestamptz + (%s + 1) * interval '1 hour')",
                            (r, r),
                        )
                    key = "won"
                except psycopg.Error as exc:
                    key = exc.sqlstate or "other"
                with lock:
                    outcome[key] += 1

    threads = [threading.Thread(target=worker, args=(j,)) for j in jobs]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--ranges", type=int, default=1000)
    parser.add_argument("--per-range", type=int, default=2)
    args = parser.parse_args()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)
        bare_t, bare = run(url, args.workers, args.ranges, args.per_range, advisory=False)
        lock_t, locked = run(url, args.workers, args.ranges, args.per_range, advisory=True)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    attempts = args.ranges * args.per_range
    print(f"attempts={attempts} ranges={args.ranges} workers={args.workers}")
    print(f"bare constraint : {bare_t:7.2f} s  {dict(bare)}  (40P01 = deadlock, 23P01 = exclusion)")
    print(f"advisory lock   : {lock_t:7.2f} s  {dict(locked)}")
    print(f"time ratio bare/advisory = {bare_t / lock_t:.2f}")


if __name__ == "__main__":
    main()
