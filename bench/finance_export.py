"""The ledger export at scale on PostgreSQL: our streamed CSV and XLSX against COPY (SELECT ...) TO STDOUT WITH CSV.

Usage: .venv/bin/python bench/finance_export.py [--rows 1000000] [--small 100000]

Builds a database of its own on the local server (TEST_PG_ADMIN_URL; 127.0.0.1 or localhost only, else it
refuses), runs the migrations, and bulk-inserts `--rows` ledger rows in SQL (generate_series), with their
bookings, payments, receipts, payouts and settlements (入金日), over 400 business days from 1 April 2026:
a capture per booking, and a refund or a processor fee for every fifth. Then, each in a child process of
its own (so that each peak is its own):
  (a) our CSV (UTF-8) export, by the function the CLI runs (reservations/finance/exports.write_export),
      to a file;
  (b) our XLSX export, likewise;
  (c) psycopg's COPY (SELECT the same columns, joins and order) TO STDOUT WITH CSV, to a file;
each over every row and over the first `--small` days' worth of rows (the same code, 10x fewer rows:
constant memory means the same peak). Prints one JSON line on stdout (bench/_common.emit): for every row,
CSV and XLSX each with its seconds, peak RSS and ratio to COPY's time, COPY's own figures, and the peaks of
the smaller run; the human table (rows, seconds, peak RSS, RSS growth during the export: peak less the
process's RSS just before it, the interpreter and the app being the rest) goes to stderr. Drops its
database at the end, whatever happens. About 4 minutes for the default million rows on 2 cores.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from _common import ROOT, emit
from psycopg.conninfo import conninfo_to_dict

ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FIRST_DAY = date(2026, 4, 1)
DAYS = 400
BUILDINGS, ROOMS_PER_BUILDING, USERS = 10, 10, 5000

SEED = [
    """
INSERT INTO bookings (user_id, room_id, start_at, end_at, state, price, price_detail, residency, division_codes,
                      channel, created_at, updated_at)
SELECT u.first + (b %% %(users)s), r.first + (b %% %(rooms)s),
       %(first)s::timestamptz + ((b::bigint * %(days)s) / %(bookings)s + 30) * interval '1 day' + interval '9 hours',
       %(first)s::timestamptz + ((b::bigint * %(days)s) / %(bookings)s + 30) * interval '1 day' + interval '12 hours',
       'completed', 2800 + 100 * (b %% 9), '{}', 'resident', 'MORNING', 'online', now(), now()
FROM generate_series(0, %(bookings)s - 1) AS b,
     (SELECT min(id) AS first FROM users) AS u, (SELECT min(id) AS first FROM rooms) AS r
ORDER BY b
""", """
INSERT INTO payments (booking_id, provider, intent_id, slip_number, amount, currency, state, captured_amount,
                      refunded_amount, failure_message, created_at, updated_at, idempotency_key)
SELECT id, p.provider, CASE WHEN p.provider = 'stripe' THEN 'pi_bench_' || id END,
       CASE WHEN p.provider = 'terminal' THEN 'T-' || id END, price, 'jpy', 'captured', price,
       CASE WHEN id %% 10 = 0 THEN 1000 ELSE 0 END, '', now(), now(), gen_random_uuid()::text
FROM bookings, LATERAL (SELECT CASE WHEN id %% 10 < 6 THEN 'stripe' WHEN id %% 10 < 8 THEN 'cash' ELSE 'terminal' END
                        AS provider) AS p
""", """
CREATE TEMP TABLE movements AS
SELECT k.id AS booking_id, p.id AS payment_id, k.user_id, u.name AS payer_name, r.building_id, k.room_id,
       coalesce(bu.revenue_account, '13-01-02-01') AS revenue,
       CASE p.provider WHEN 'stripe' THEN 'card' ELSE p.provider END AS method, p.intent_id, p.amount AS paid,
       k.start_at - interval '30 days' + ((k.id::bigint * 7919) %% 36000) * interval '1 second' AS paid_at
FROM bookings k JOIN payments p ON p.booking_id = k.id JOIN users u ON u.id = k.user_id
JOIN rooms r ON r.id = k.room_id JOIN buildings bu ON bu.id = r.building_id
""", """
WITH moves AS (
    SELECT m.*, x.*, ((x.at AT TIME ZONE 'Asia/Tokyo'))::date AS day,
           extract(year FROM ((CASE WHEN x.kind = 'fee' THEN x.at ELSE m.paid_at END) AT TIME ZONE 'Asia/Tokyo')
                             - interval '3 months')::int AS fy
    FROM movements m CROSS JOIN LATERAL (
        SELECT 'capture' AS kind, m.paid AS amount, m.paid_at AS at,
               CASE WHEN m.method = 'card' THEN 'ch_bench_' || m.booking_id ELSE m.method || '-' || m.booking_id END
                   AS reference, NULL AS refund_kind,
               CASE WHEN m.method = 'card' THEN 'ch_bench_' || m.booking_id END AS charge_id,
               NULL AS refund_id, NULL AS txn, m.revenue AS account
        UNION ALL
        SELECT 'refund', -1000, m.paid_at + interval '2 days', 're_bench_' || m.booking_id, 'current', NULL,
               're_bench_' || m.booking_id, NULL, m.revenue
        WHERE m.booking_id %% 10 = 0
        UNION ALL
        SELECT 'fee', -(m.paid * 36 / 1000), m.paid_at + interval '1 day', 'txn_fee_' || m.booking_id, NULL, NULL,
               NULL, 'txn_fee_' || m.booking_id, '02-01-01-12'
        WHERE m.booking_id %% 10 = 5 AND m.method = 'card'
    ) AS x
    ORDER BY x.at, m.booking_id
    LIMIT %(rows)s
)
INSERT INTO ledger_entries (at, payment_id, kind, amount, reference, booking_id, payer_id, payer_name, building_id,
                            room_id, account_code, paid_on, business_date, fiscal_year, method, refund_kind,
                            refund_serial, intent_id, charge_id, provider_refund_id, balance_transaction_id)
SELECT at, payment_id, kind, amount, reference, booking_id, user_id, payer_name, building_id, room_id, account,
       day, day, fy, method, refund_kind,
       CASE WHEN kind = 'refund' THEN row_number() OVER (PARTITION BY kind, fy ORDER BY at, booking_id) END,
       intent_id, charge_id, refund_id, txn
FROM moves ORDER BY at, booking_id
""", """
INSERT INTO receipts (booking_id, fiscal_year, serial, issued_at, payer_name, amount, issuer, method)
SELECT booking_id, fiscal_year, row_number() OVER (PARTITION BY fiscal_year ORDER BY id), at, payer_name, amount,
       '中央区', method
FROM ledger_entries WHERE kind = 'capture'
""", """
INSERT INTO payouts (id, arrival_date, gross, fees, refunds, other, net, source, recorded_at)
SELECT 'po_bench_' || d, %(day)s::date + d + 3, 0, 0, 0, 0, 0, 'report', now()
FROM generate_series(0, %(days)s + 3) AS d
""", """
INSERT INTO ledger_settlements (ledger_entry_id, balance_transaction_id, payout_id, arrival_date, recorded_at)
SELECT id, 'txn_bench_' || id, 'po_bench_' || (paid_on - %(day)s::date), paid_on + 3, now()
FROM ledger_entries WHERE kind = 'capture' AND method = 'card'
"""]

# The same columns as services/finance/exports.COLUMNS, the same joins and the same order, in SQL.
COPY = """
COPY (
    SELECT e.id, e.business_date, e.paid_on, CASE WHEN e.business_date <> e.paid_on THEN 'Yes' ELSE 'No' END,
           to_char(e.at AT TIME ZONE 'Asia/Tokyo', 'YYYY-MM-DD HH24:MI:SS'), e.fiscal_year, e.kind, e.refund_kind,
           CASE WHEN e.refund_serial IS NOT NULL THEN 'R' || e.fiscal_year || '-' || lpad(e.refund_serial::text, 6, '0')
                WHEN r.serial IS NOT NULL THEN r.fiscal_year || '-' || lpad(r.serial::text, 6, '0') END,
           e.booking_id, e.payer_name, b.name, rm.name, e.account_code, a.name, e.method, x.full_fee, x.code,
           x.reduction, e.amount, e.intent_id,
           e.charge_id, e.provider_refund_id, coalesce(e.balance_transaction_id, s.balance_transaction_id),
           s.payout_id, s.arrival_date
    FROM ledger_entries e
    JOIN buildings b ON b.id = e.building_id
    JOIN rooms rm ON rm.id = e.room_id
    LEFT JOIN receipts r ON r.booking_id = e.booking_id AND e.kind = 'capture'
    LEFT JOIN exemptions x ON x.booking_id = e.booking_id AND e.kind = 'capture' AND x.state = 'applied'
    LEFT JOIN ledger_settlements s ON s.ledger_entry_id = e.id
    LEFT JOIN (VALUES {accounts}) AS a(code, name) ON a.code = e.account_code
    WHERE e.business_date BETWEEN %s AND %s
    ORDER BY e.business_date, e.id
) TO STDOUT WITH CSV HEADER
"""


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def say(*args, **kwargs) -> None:
    """The human side of the benchmark: stderr, so that stdout holds the one JSON line."""
    print(*args, **kwargs, file=sys.stderr)


def rss_kb() -> int:
    return _status_kb("VmRSS:")


def peak_kb() -> int:
    """The process's peak RSS. Not getrusage's ru_maxrss: Linux carries that over exec from the parent, so a
    child started after the seeding would report the parent's peak; VmHWM is this program's own."""
    return _status_kb("VmHWM:")


# -- the children -----------------------------------------------------------------------------------------

def child_ours(url: str, fmt: str, first: str, last: str, out: str) -> dict:
    from sqlalchemy import text

    from reservations import create_app
    from reservations.extensions import db
    from reservations.finance.exports import write_export
    from reservations.services.finance import exports

    app = create_app({"APP_ENV": "development", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        import xlsxwriter  # noqa: F401 (loaded before the baseline, as a running server has it)

        db.session.execute(text("SELECT 1"))
        db.session.rollback()
        before = rss_kb()
        started = time.perf_counter()
        run = exports.LedgerExport(exports.parse_filter(first, last), fmt, via="cli")
        try:
            write_export(run, Path(out), None)
        finally:
            run.close()
        seconds = time.perf_counter() - started
        rows = run.rows
    return {"rows": rows, "seconds": seconds, "before_kb": before, "peak_kb": peak_kb(), "bytes": os.path.getsize(out)}


def child_copy(url: str, first: str, last: str, out: str, accounts: str) -> dict:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("SELECT 1")
        before = rss_kb()
        started = time.perf_counter()
        with conn.cursor() as cur, open(out, "wb") as file:
            with cur.copy(COPY.format(accounts=accounts), (first, last)) as copy:
                for data in copy:
                    file.write(data)
        seconds = time.perf_counter() - started
    with open(out, "rb") as file:
        rows = sum(1 for _ in file) - 1  # no newline inside these values; less the heading
    return {"rows": rows, "seconds": seconds, "before_kb": before, "peak_kb": peak_kb(), "bytes": os.path.getsize(out)}


def in_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the parent -------------------------------------------------------------------------------------------

def loopback_only(url: str) -> None:
    host = conninfo_to_dict(url).get("host", "")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to run against {host!r}: this benchmark talks to the local server only")


def seed(url: str, rows: int) -> float:
    """The world by the ORM (buildings, rooms, users: a few thousand rows), the money in SQL (the rest)."""
    import logging

    from flask_migrate import upgrade

    from reservations import create_app
    from reservations.extensions import db
    from reservations.models import Building, Room, User

    app = create_app({"APP_ENV": "development", "SQLALCHEMY_DATABASE_URI": url})
    logging.getLogger("alembic").setLevel(logging.WARNING)
    started = time.perf_counter()
    with app.app_context():
        upgrade()
        now = datetime.now(UTC)
        for n in range(BUILDINGS):
            building = Building(name=f"ベンチ会館{n + 1}", name_kana="ベンチカイカン", name_en=f"Bench hall {n + 1}",
                                address="東京都中央区1-1-1", revenue_account="13-01-06-01" if n % 3 == 0 else None)
            db.session.add(building)
            db.session.add_all(Room(building=building, name=f"第{m + 1}会議室", kind="meeting_room", capacity=20)
                               for m in range(ROOMS_PER_BUILDING))
        db.session.add_all(
            User(email=f"bench{n}@example.com", password_hash="x", email_verified_at=now, created_at=now,
                 name="𠮷田 🏀" if n % 1000 == 7 else f"山田 花子{n}")
            for n in range(USERS))
        db.session.commit()
        db.engine.dispose()
    bookings = rows * 5 // 6 + 1  # captures, and a refund or a fee for every fifth: a little over `rows`
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        params = {"users": USERS, "rooms": BUILDINGS * ROOMS_PER_BUILDING, "days": DAYS, "bookings": bookings,
                  "first": f"{FIRST_DAY.isoformat()} 00:00+09", "day": FIRST_DAY.isoformat(), "rows": rows}
        with conn.transaction():
            for statement in SEED:
                conn.execute(statement, {k: v for k, v in params.items() if f"%({k})s" in statement})
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def ranges(url: str, small: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """Every row's days, and the first days holding about `small` rows."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        first, last = conn.execute("SELECT min(business_date), max(business_date) FROM ledger_entries").fetchone()
        cut = conn.execute("SELECT business_date FROM ledger_entries ORDER BY business_date, id OFFSET %s LIMIT 1",
                           (small - 1,)).fetchone()
    cut_day = cut[0] if cut else last
    assert (last - first).days < 427, "the rows must fit one export's range"
    return (first.isoformat(), last.isoformat()), (first.isoformat(), cut_day.isoformat())


def accounts_sql() -> str:
    from config import Config

    names = Config.ACCOUNT_NAMES
    return ", ".join("('{}', '{}')".format(code, name.replace("'", "''")) for code, name in names.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=None, help="rows of the smaller run (default rows / 10)")
    args = parser.parse_args()
    wall = time.perf_counter()
    small = args.small or max(1, args.rows // 10)
    loopback_only(ADMIN)
    name = f"bench_finance_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name
    try:
        seconds = seed(url, args.rows)
        say(f"seeded {args.rows:,} ledger rows (with bookings, payments, receipts, settlements) in {seconds:.1f} s")
        every, first_days = ranges(url, small)
        say("load average before the exports: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        accounts = accounts_sql()
        results = []
        with TemporaryDirectory() as tmp:
            for label, (first, last) in (("all", every), ("small", first_days)):
                for what in ("csv", "xlsx", "copy"):
                    out = str(Path(tmp) / f"{label}.{what}")
                    if what == "copy":
                        result = in_child("copy", url, first, last, out, accounts)
                    else:
                        result = in_child("ours", url, what, first, last, out)
                    results.append((label, what, first, last, result))
                    say(f"  {what:5} {first}..{last}: {result['rows']:,} rows in {result['seconds']:.1f} s",
                          flush=True)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    say("load average after the exports: {:.2f} {:.2f} {:.2f} (2 cores: other work slows every figure alike)"
        .format(*os.getloadavg()))
    by = report(results)
    emit(record(by, seconds, time.perf_counter() - wall))


def record(by: dict, seed_s: float, wall_s: float) -> dict:
    """The JSON line: the full run's figures by format, the smaller run's peaks beside them (constant memory)."""
    mb = 1024
    copy = by["all", "copy"]
    line = {"bench": "export", "rows": copy["rows"], "copy_s": round(copy["seconds"], 2),
            "copy_peak_rss_mb": round(copy["peak_kb"] / mb, 1)}
    for what in ("csv", "xlsx"):
        ours, little = by["all", what], by["small", what]
        line |= {f"{what}_rows": ours["rows"], f"{what}_s": round(ours["seconds"], 2),
                 f"{what}_peak_rss_mb": round(ours["peak_kb"] / mb, 1),
                 f"{what}_ratio_to_copy": round(ours["seconds"] / copy["seconds"], 2),
                 f"{what}_peak_rss_mb_small": round(little["peak_kb"] / mb, 1),
                 f"{what}_rows_small": little["rows"]}
    peak = max(by["all", "csv"]["peak_kb"], by["all", "xlsx"]["peak_kb"]) / mb
    return line | {"peak_rss_goal_mb": 200, "peak_rss_ok": peak < 200, "seed_s": round(seed_s, 1),
                   "wall_s": round(wall_s, 1)}


def report(results) -> dict:
    mb = 1024
    say()
    say(f"{'export':28} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'file MB':>8} {'peak RSS MB':>12} "
        f"{'growth MB':>10}")
    by = {}
    for label, what, _first, _last, r in results:
        by[label, what] = r
        name = {"csv": "ours, CSV (UTF-8)", "xlsx": "ours, XLSX", "copy": "COPY ... TO STDOUT CSV"}[what]
        say(f"{name + ' ' + label:28} {r['rows']:>10,} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9,.0f} "
            f"{r['bytes'] / mb / mb:>8.1f} {r['peak_kb'] / mb:>12.1f} {(r['peak_kb'] - r['before_kb']) / mb:>10.1f}")
    say()
    for label in ("all", "small"):
        copy = by[label, "copy"]
        for what in ("csv", "xlsx"):
            ours = by[label, what]
            say(f"{label:5} {what:4}/COPY: time {ours['seconds'] / copy['seconds']:5.1f}x, "
                f"peak RSS {ours['peak_kb'] / copy['peak_kb']:4.1f}x")
    for what in ("csv", "xlsx", "copy"):
        big, little = by["all", what], by["small", what]
        grew = [(r["peak_kb"] - r["before_kb"]) / mb for r in (little, big)]
        say(f"constant memory, {what:4}: peak RSS {little['rows']:,} rows {little['peak_kb'] / mb:.1f} MB, "
            f"{big['rows']:,} rows {big['peak_kb'] / mb:.1f} MB; growth {grew[0]:.1f} -> {grew[1]:.1f} MB")
    return by


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        outcome = child_ours(*rest) if kind == "ours" else child_copy(*rest)
        print(json.dumps(outcome))
    else:
        main()
