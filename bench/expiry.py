"""The expiry job at scale: 100,000 expired holds, none with a payment intent, against one bulk UPDATE.

Usage: .venv/bin/python bench/expiry.py [--holds 100000]

Builds a template database of its own on the local server (TEST_PG_ADMIN_URL; 127.0.0.1 or localhost only):
the migrations, one building of 50 rooms, 1,000 residents, and `--holds` held bookings whose hold ran out
between one and two hours ago, one hour each, laid out so that no two overlap; half have a payment the resident
never took to the provider (state new, no intent), half no payment at all (they left before the pay page).
Then three identical copies of it (CREATE DATABASE ... TEMPLATE: the same rows, indexes, constraints and
triggers), each measured in a child process of its own, so that each peak is its own:
  (a) one run of the real job, as the scheduler runs it (jobs.run_job of release_expired_holds in an app
      context): its seconds, and the process's peak RSS (VmHWM) and growth during the run;
  (b) the same run under tracemalloc, for the peak of Python allocations (tracemalloc slows Python down, so
      (a) gives the time);
  (c) one bulk `UPDATE bookings SET state = 'expired' WHERE <the same rows>` by psycopg;
  (d) everything the job writes, in SQL: that UPDATE, the payments' UPDATE and the audit rows' INSERT, as
      three set-based statements in one transaction.
ratio = job / bulk UPDATE (goal <= 3); ratio_to_full_sql = job / (d). Peak memory: VmHWM of (a)'s process
(ru_maxrss beside it: Linux carries it over exec from the parent, so it is at least the parent's peak).
Prints one JSON line (bench/_common.emit); progress on stderr. Drops its databases at the end, whatever happens.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import time
import uuid

import psycopg
from _common import ROOT, emit
from psycopg.conninfo import conninfo_to_dict

ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOMS, USERS = 50, 1000

HOLDS = """
INSERT INTO bookings (user_id, room_id, start_at, end_at, state, hold_expires_at, price, price_detail, residency,
                      division_codes, channel, created_at, updated_at, kind, pay_mode)
SELECT %(first_user)s + g %% %(users)s, %(first_room)s + g %% %(rooms)s,
       date_trunc('hour', now()) + interval '30 days' + (g / %(rooms)s) * interval '1 hour',
       date_trunc('hour', now()) + interval '30 days' + (g / %(rooms)s + 1) * interval '1 hour',
       'held', now() - interval '1 hour' - (g %% 3600) * interval '1 second', 1000, '{}', 'resident', NULL,
       'online', now() - interval '2 hours', now() - interval '2 hours', 'booking', 'now'
FROM generate_series(0, %(holds)s - 1) AS g ORDER BY g
"""
PAYMENTS = """
INSERT INTO payments (booking_id, provider, intent_id, amount, currency, state, captured_amount, refunded_amount,
                      failure_message, created_at, updated_at, idempotency_key)
SELECT id, 'stripe', NULL, price, 'jpy', 'new', 0, 0, '', created_at, created_at, gen_random_uuid()::text
FROM bookings WHERE id % 2 = 0
"""
# The rows the job releases (expiry._release_unpaid_batch): lapsed "pay now" holds with no payment, or with a
# payment never taken to the provider.
SAME_ROWS = """
state = 'held' AND pay_mode = 'now' AND hold_expires_at <= now()
AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.booking_id = bookings.id
                AND (p.intent_id IS NOT NULL OR p.state <> 'new'))
"""
BULK = f"UPDATE bookings SET state = 'expired', updated_at = now() WHERE {SAME_ROWS}"
FULL = [
    f"CREATE TEMP TABLE released ON COMMIT DROP AS WITH u AS ({BULK} RETURNING id) SELECT id FROM u",
    "CREATE TEMP TABLE cancelled ON COMMIT DROP AS WITH u AS (UPDATE payments SET state = 'cancelled', "
    "updated_at = now() WHERE booking_id IN (SELECT id FROM released) AND intent_id IS NULL AND state = 'new' "
    "RETURNING id) SELECT id FROM u",
    "INSERT INTO audit_entries (at, subject, subject_id, action, data) "
    "SELECT now(), 'booking', id, 'held->expired', %(why)s::json FROM released "
    "UNION ALL SELECT now(), 'payment', id, 'new->cancelled', %(why)s::json FROM cancelled",
]
WHY = '{"reason": "hold expired before any payment"}'


def say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# -- the children ----------------------------------------------------------------------------------------

def child_job(url: str, trace: str) -> dict:
    import resource
    import tracemalloc

    from sqlalchemy import text

    from reservations import create_app
    from reservations.extensions import db
    from reservations.jobs import JOBS, run_job

    app = create_app({"APP_ENV": "development", "SQLALCHEMY_DATABASE_URI": url})
    job = next(j for j in JOBS if j.id == "release_expired_holds")
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # connected, as a running scheduler is
        db.session.rollback()
        before = status_kb("VmRSS:")
        if trace == "trace":
            tracemalloc.start()
        started = time.perf_counter()
        result = run_job(job)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if trace == "trace" else None
    return {"seconds": seconds, "result": result, "before_kb": before, "peak_kb": status_kb("VmHWM:"),
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "traced_peak": peak}


def child_sql(url: str, what: str) -> dict:
    with psycopg.connect(plain(url)) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        started = time.perf_counter()
        if what == "bulk":
            rows = conn.execute(BULK).rowcount
        else:
            for statement in FULL:
                conn.execute(statement, {"why": WHY} if "%(why)s" in statement else None)
            rows = conn.execute("SELECT count(*) FROM released").fetchone()[0]
        conn.commit()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "peak_kb": status_kb("VmHWM:")}


def in_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the parent ------------------------------------------------------------------------------------------

def seed(url: str, holds: int) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import func, insert, select

    from reservations import create_app
    from reservations.extensions import db
    from reservations.models import Building, Room, User
    from reservations.timeutil import now_utc

    app = create_app({"APP_ENV": "development", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        building = Building(name="ベンチ会館", name_kana="ベンチカイカン", name_en="Bench hall",
                            address="東京都目黒区1-1-1")
        db.session.add_all([building, *(Room(building=building, name=f"第{n + 1}室", name_en=f"Room {n + 1}",
                                             kind="meeting_room", capacity=10) for n in range(ROOMS))])
        now = now_utc()
        db.session.execute(insert(User), [
            {"email": f"bench{n}@example.com", "name": f"目黒 花子{n}", "password_hash": "x", "residency": "resident",
             "role": "resident", "created_at": now, "email_verified_at": now} for n in range(USERS)])
        db.session.commit()
        first_user = db.session.scalar(select(func.min(User.id)))
        first_room = db.session.scalar(select(func.min(Room.id)))
        db.session.remove()
        db.engine.dispose()
    with psycopg.connect(plain(url), autocommit=True) as conn:
        with conn.transaction():
            conn.execute(HOLDS, {"first_user": first_user, "users": USERS, "first_room": first_room, "rooms": ROOMS,
                                 "holds": holds})
            conn.execute(PAYMENTS)
        conn.execute("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holds", type=int, default=100_000)
    args = parser.parse_args()
    wall = time.perf_counter()
    host = conninfo_to_dict(ADMIN).get("host", "")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to run against {host!r}: this benchmark talks to the local server only")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stem = f"bench_expiry_{uuid.uuid4().hex[:8]}"
    names = [stem, *(f"{stem}_{copy}" for copy in ("job", "traced", "bulk", "full"))]
    base = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    urls = {name: f"{base}/{name}" for name in names}
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{stem}"')
    try:
        started = time.perf_counter()
        seed(urls[stem], args.holds)
        seed_s = time.perf_counter() - started
        say(f"seeded {args.holds:,} expired holds in {seed_s:.1f} s")
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            for name in names[1:]:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{stem}"')
        job = in_child("job", urls[f"{stem}_job"], "plain")
        say(f"job: {job['result']} in {job['seconds']:.2f} s, peak RSS {job['peak_kb'] / 1024:.1f} MB")
        traced = in_child("job", urls[f"{stem}_traced"], "trace")
        say(f"job under tracemalloc: {traced['seconds']:.2f} s, Python peak {traced['traced_peak'] / 2**20:.1f} MB")
        bulk = in_child("sql", urls[f"{stem}_bulk"], "bulk")
        say(f"bulk UPDATE: {bulk['rows']:,} rows in {bulk['seconds']:.2f} s")
        full = in_child("sql", urls[f"{stem}_full"], "full")
        say(f"the job's writes in 3 statements: {full['rows']:,} rows in {full['seconds']:.2f} s")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            for name in reversed(names):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    released = job["result"].get("released", 0)
    assert released == bulk["rows"] == full["rows"] == args.holds, (job["result"], bulk["rows"], full["rows"])
    emit({"bench": "expiry", "holds": args.holds, "released": released, "job_s": round(job["seconds"], 2),
          "bulk_update_s": round(bulk["seconds"], 2), "ratio": round(job["seconds"] / bulk["seconds"], 2),
          "ratio_goal": 3, "full_sql_s": round(full["seconds"], 2),
          "ratio_to_full_sql": round(job["seconds"] / full["seconds"], 2),
          "peak_rss_mb": round(job["peak_kb"] / 1024, 1),
          "rss_growth_mb": round((job["peak_kb"] - job["before_kb"]) / 1024, 1),
          "ru_maxrss_mb": round(job["maxrss_kb"] / 1024, 1),
          "tracemalloc_peak_mb": round(traced["traced_peak"] / 2**20, 1), "job_traced_s": round(traced["seconds"], 2),
          "seed_s": round(seed_s, 1), "wall_s": round(time.perf_counter() - wall, 1)})


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        print(json.dumps(child_job(*rest) if kind == "job" else child_sql(*rest)))
    else:
        main()
