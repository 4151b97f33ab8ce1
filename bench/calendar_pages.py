"""The calendars at scale: Meguro's 177 rooms with 1,000,000 bookings, three pages against hand-written SQL.

Usage: .venv/bin/python bench/calendar_pages.py [--bookings 1000000] [--renders 10] [--keep]

Builds a database of its own on the local server (TEST_PG_ADMIN_URL; 127.0.0.1 or localhost only), runs the
migrations, imports data/facilities/tokyo-meguro.json with the app's own importer (services/catalog.py, as
`flask facilities import --divisions ...` does), gives every division a fee (Meguro publishes none, and a room
without fees is not offered online), a monthly closure (the second Monday) to the 社会教育館, and a member of
staff over the two buildings measured. Then `--bookings` bookings in SQL (INSERT ... SELECT generate_series),
over the year from the first of this month, laid out in the rooms' divisions day by day:

- 177 rooms x 3 divisions x 365 days are 193,815 slots, so a year holds at most that many live (held or
  confirmed) bookings: the database refuses overlaps. Each slot gets its live booking with a share that
  differs by room (95 %, 80 %, 60 % or 30 %) and a little by day: mostly confirmed (a few paid by a deadline
  and not yet paid: held), online ones with their captured payment.
- The rest of the million is the history that piles up on the same slots and occupies nothing: expired holds
  (checkouts given up) and cancelled bookings, as a busy year leaves them.

Each page goes through the Flask test client, cold (a new session per request, as in production):
  - a room's month calendar (the public room page, `?month=`), for a busy room and a quiet one;
  - a building's staff day view (/staff/buildings/<id>/day), signed in as staff, for the largest building
    (13 rooms) and a one-room one;
  - the public search for one day (/?date=), over every room, and over one building on another day.
For each: the SQL statements of the page (a before_cursor_execute listener) for both sizes and whether they
are the same number, the median time of `--renders` renders (and their CPU time in this process), and the
median time of hand-written SQL that fetches the rows the page shows, by psycopg on a connection of its own,
run in turn with the renders; ratio = page / SQL (goal <= 3). The search keeps the catalog (its rooms,
buildings, divisions, closures and equipment) while the catalog's token stays the same (public/search.py):
the warm render before the measured ones reads it, and each measured one then reads the token, the bookings
and the rounds, as every search does until staff change a room. The hand-written SQL still reads all of it
each time: the ratio is the page as residents meet it against fetching its rows.
search_cold_* are the search of every
room just after a change to the catalog (the token set anew by hand): the render that reads it again.
Prints one JSON line (bench/_common.emit); progress on stderr. Drops its database unless --keep.

Not bench/calendar.py, as the issue names the benchmark: a calendar.py beside the scripts would shadow the
standard library's calendar module for every one of them (run as `python bench/x.py`, their folder comes first
on sys.path, and psycopg, http.cookiejar and email import calendar).
"""
import argparse
import logging
import os
import statistics
import sys
import time
import uuid
from datetime import date, timedelta

import psycopg
from _common import ROOT, emit
from psycopg.conninfo import conninfo_to_dict

ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MEGURO = ROOT / "data" / "facilities" / "tokyo-meguro.json"
DIVISIONS = "MORNING=09:00-12:00,AFTERNOON=13:00-17:00,EVENING=18:00-21:00"
DAYS, USERS = 365, 5000

# The bookings, in one statement. Slot = (room, day, division); copy 0 of a slot is its live booking (or a
# cancelled one, when the slot is left free), copies 1.. are its history: expired holds, and cancelled.
BOOKINGS = """
INSERT INTO bookings (user_id, room_id, start_at, end_at, state, hold_expires_at, price, price_detail, residency,
                      division_codes, channel, created_at, updated_at, kind, pay_mode)
SELECT %(first_user)s + abs(hashtext(s.room_id || '/' || s.day_no || '/' || s.code || '/' || c)) %% %(users)s,
       s.room_id, s.start_at, s.end_at, x.state,
       CASE x.state WHEN 'held' THEN now() + interval '7 days'
                    WHEN 'expired' THEN s.start_at - interval '20 days' END,
       s.fee, '{}', 'resident', s.code, CASE WHEN (s.room_id + s.day_no + c) %% 10 = 3 THEN 'counter' ELSE 'online' END,
       s.start_at - interval '20 days' - c * interval '1 hour', now(), 'booking',
       CASE x.state WHEN 'held' THEN 'deadline' ELSE 'now' END
FROM (
    SELECT r.id AS room_id, d.code, dv.fee, d.day_no,
           ((%(first)s::date + d.day_no) + dv.start_time) AT TIME ZONE 'Asia/Tokyo' AS start_at,
           ((%(first)s::date + d.day_no) + dv.end_time) AT TIME ZONE 'Asia/Tokyo' AS end_at,
           -- the share of the room's slots taken: by room, and a little more at weekends
           (r.id * 37 + d.day_no * 11 + dv.position * 7) %% 100
               < (ARRAY[95, 80, 60, 30])[r.id %% 4 + 1]
                 + CASE WHEN extract(isodow FROM %(first)s::date + d.day_no) >= 6 THEN 5 ELSE 0 END AS filled,
           NOT EXISTS (SELECT 1 FROM closures k
                       WHERE k.room_id = r.id AND k.kind = 'monthly'
                         AND k.weekday = extract(isodow FROM %(first)s::date + d.day_no)::int - 1
                         AND k.nth = (extract(day FROM %(first)s::date + d.day_no)::int - 1) / 7 + 1) AS open
    FROM rooms r
    JOIN (SELECT id, room_id, code, start_time, end_time, weekday_fee AS fee,
                 row_number() OVER (PARTITION BY room_id ORDER BY start_time) AS position FROM divisions) dv
         ON dv.room_id = r.id
    CROSS JOIN LATERAL (SELECT dv.code, g AS day_no FROM generate_series(0, %(days)s - 1) AS g) d
) AS s
CROSS JOIN generate_series(0, %(copies)s - 1) AS c
CROSS JOIN LATERAL (SELECT CASE
    WHEN c = 0 AND s.filled AND s.open THEN CASE WHEN (s.room_id + s.day_no) %% 33 = 0 THEN 'held' ELSE 'confirmed' END
    WHEN c = 0 OR c %% 4 = 0 THEN 'cancelled'
    ELSE 'expired' END AS state) AS x
ORDER BY c, s.day_no, s.room_id, s.start_at
LIMIT %(bookings)s
"""

PAYMENTS = """
INSERT INTO payments (booking_id, provider, intent_id, amount, currency, state, captured_amount, refunded_amount,
                      failure_message, created_at, updated_at, idempotency_key)
SELECT id, 'stripe', 'pi_bench_' || id, price, 'jpy', 'captured', price, 0, '', created_at, created_at,
       gen_random_uuid()::text
FROM bookings WHERE state = 'confirmed' AND channel = 'online' AND price > 0
"""

# -- the SQL a page's rows come from, written by hand --------------------------------------------------------

# The live bookings over a span, as one would write it by hand: by the overlap guard's GiST index.
LIVE_IN_SPAN = ("AND tstzrange(start_at, end_at, '[)') && tstzrange(%(start)s, %(end)s, '[)') "
                "AND state IN ('held', 'confirmed') AND (state = 'confirmed' OR hold_expires_at > now())")

RAW_ROOM_MONTH = [
    ("SELECT r.*, b.* FROM rooms r JOIN buildings b ON b.id = r.building_id WHERE r.id = %(room)s", None),
    ("SELECT * FROM divisions WHERE room_id = %(room)s ORDER BY start_time", None),
    ("SELECT * FROM closures WHERE room_id = %(room)s", None),
    ("SELECT * FROM refund_tiers WHERE room_id = %(room)s OR room_kind = (SELECT kind FROM rooms WHERE id = %(room)s)",
     None),
    ("SELECT rr.room_id, lr.* FROM lottery_round_rooms rr JOIN lottery_rounds lr ON lr.id = rr.round_id "
     "WHERE rr.room_id = %(room)s AND rr.target_month = %(first)s", None),
    ("SELECT start_at, end_at FROM bookings WHERE room_id = %(room)s " + LIVE_IN_SPAN, "bookings"),
]

RAW_STAFF_DAY = [
    ("SELECT * FROM users WHERE id = %(staff)s", None),
    ("SELECT b.* FROM buildings b JOIN staff_buildings sb ON sb.building_id = b.id WHERE sb.user_id = %(staff)s",
     None),
    ("SELECT * FROM buildings WHERE id = %(building)s", None),
    ("SELECT * FROM rooms WHERE building_id = %(building)s AND active ORDER BY id", None),
    ("SELECT d.* FROM divisions d JOIN rooms r ON r.id = d.room_id WHERE r.building_id = %(building)s AND r.active",
     None),
    ("SELECT k.* FROM closures k JOIN rooms r ON r.id = k.room_id WHERE r.building_id = %(building)s AND r.active",
     None),
    ("SELECT k.*, u.*, p.* FROM bookings k JOIN rooms r ON r.id = k.room_id JOIN users u ON u.id = k.user_id "
     "LEFT JOIN payments p ON p.booking_id = k.id "
     "WHERE r.building_id = %(building)s AND r.active AND k.start_at < %(end)s AND k.end_at > %(start)s "
     "AND k.state <> 'expired' ORDER BY k.start_at, k.id", "bookings"),
]

RAW_SEARCH = [
    ("SELECT * FROM buildings ORDER BY name_kana, id", None),
    ("SELECT r.*, b.* FROM rooms r JOIN buildings b ON b.id = r.building_id WHERE r.active {filter} "
     "ORDER BY b.name_kana, b.id, r.id", None),
    ("SELECT d.* FROM divisions d JOIN rooms r ON r.id = d.room_id WHERE r.active {filter}", None),
    ("SELECT e.* FROM room_equipment e JOIN rooms r ON r.id = e.room_id WHERE r.active {filter}", None),
    ("SELECT k.* FROM closures k JOIN rooms r ON r.id = k.room_id WHERE r.active {filter}", None),
    ("SELECT rr.room_id, lr.* FROM lottery_round_rooms rr JOIN lottery_rounds lr ON lr.id = rr.round_id "
     "JOIN rooms r ON r.id = rr.room_id WHERE r.active {filter} AND rr.target_month = %(first)s", None),
    ("SELECT room_id, start_at, end_at FROM bookings WHERE room_id IN (SELECT id FROM rooms r WHERE r.active {filter}) "
     + LIVE_IN_SPAN, "bookings"),
]


def say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def loopback_only(url: str) -> None:
    host = conninfo_to_dict(url).get("host", "")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to run against {host!r}: this benchmark talks to the local server only")


def tokyo_bounds(first: date, last: date) -> tuple[str, str]:
    return f"{first.isoformat()} 00:00+09", f"{(last + timedelta(days=1)).isoformat()} 00:00+09"


# -- seeding -------------------------------------------------------------------------------------------------

def seed_world(app) -> dict:
    """Meguro through the importer, fees, closures, the residents and a member of staff. Returns the ids."""
    from flask_migrate import upgrade
    from sqlalchemy import func, insert, select

    from reservations.extensions import db
    from reservations.models import Building, Closure, ClosureKind, Role, Room, User
    from reservations.services.catalog import import_catalog, parse_division_times, read_catalog
    from reservations.timeutil import now_utc

    with app.app_context():
        upgrade()
        result = import_catalog(read_catalog(MEGURO), parse_division_times(DIVISIONS))
        rooms = result.rooms
        for room in rooms:
            for n, division in enumerate(sorted(room.divisions, key=lambda d: d.start_time)):
                division.weekday_fee = 1200 + 600 * n
                division.holiday_fee = 1500 + 700 * n
            if room.building.name.endswith("社会教育館"):
                room.closures.append(Closure(kind=ClosureKind.MONTHLY, weekday=0, nth=2, reason="定期休館日"))
        db.session.flush()
        now = now_utc()
        db.session.execute(insert(User), [
            {"email": f"bench{n}@example.com", "name": f"目黒 花子{n}", "password_hash": "x", "residency": "resident",
             "role": "resident", "created_at": now, "email_verified_at": now} for n in range(USERS)])
        counts = dict(db.session.execute(
            select(Room.building_id, func.count()).where(Room.active.is_(True)).group_by(Room.building_id)).all())
        big = max(counts, key=lambda b: (counts[b], -b))
        small = min(counts, key=lambda b: (counts[b], b))
        staff = User(email="staff@example.com", name="区 職員", password_hash="x", residency="resident",
                     role=Role.STAFF, created_at=now, email_verified_at=now,
                     buildings=[db.session.get(Building, big), db.session.get(Building, small)])
        db.session.add(staff)
        db.session.commit()
        unbookable = [r.id for r in rooms if not r.bookable_online]
        assert not unbookable, f"rooms not offered online: {unbookable}"
        ids = {"rooms": len(rooms), "big_building": big, "big_rooms": counts[big], "small_building": small,
               "small_rooms": counts[small], "staff": staff.id, "staff_session": staff.get_id(),
               "first_user": db.session.scalar(select(func.min(User.id)))}
        db.session.remove()
        db.engine.dispose()
    return ids


def seed_bookings(url: str, ids: dict, bookings: int, first: date) -> dict:
    slots = ids["rooms"] * 3 * DAYS
    copies = -(-bookings // slots)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(BOOKINGS, {"first_user": ids["first_user"], "users": USERS, "first": first.isoformat(),
                                    "days": DAYS, "copies": copies, "bookings": bookings})
            conn.execute(PAYMENTS)
        conn.execute("VACUUM ANALYZE")
        states = dict(conn.execute("SELECT state, count(*) FROM bookings GROUP BY state").fetchall())
    return states


# -- measuring -----------------------------------------------------------------------------------------------

def compare(app, client, url: str, conn, queries, params: dict, renders: int, fill: str = "") -> dict:
    """The page's statements (one cold render), then `renders` rounds of one render and one run of the
    hand-written SQL (every row fetched) in turn, so that both meet the same load on a shared machine."""
    from sqlalchemy import event

    from reservations.extensions import db

    def sql() -> int:
        rows = 0
        with conn.transaction():
            for statement, what in queries:
                fetched = conn.execute(statement.replace("{filter}", fill), params).fetchall()
                if what == "bookings":
                    rows = len(fetched)
        return rows

    def render() -> None:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True)[:2000])

    with app.app_context():
        engine = db.engine
    render()  # warm: the first request may ask the server for its version
    rows = sql()
    sent: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        render()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    page_s, page_cpu, sql_s = [], [], []
    for _ in range(renders):
        started, cpu = time.perf_counter(), time.process_time()
        render()
        page_s.append(time.perf_counter() - started)
        page_cpu.append(time.process_time() - cpu)
        started = time.perf_counter()
        sql()
        sql_s.append(time.perf_counter() - started)
    return {"statements": len(sent), "page": statistics.median(page_s), "page_cpu": statistics.median(page_cpu),
            "sql": statistics.median(sql_s), "rows": rows}


def figures(name: str, measured: list[tuple[str, dict]]) -> dict:
    (label_a, a), (label_b, b) = measured
    for label, m in measured:
        say(f"{name}, {label}: {m['statements']} statements, {m['rows']} bookings rows, page {m['page'] * 1000:.1f} ms "
            f"(CPU {m['page_cpu'] * 1000:.1f} ms), SQL {m['sql'] * 1000:.1f} ms")
    return {f"{name}_statements": [a["statements"], b["statements"]],
            f"{name}_constant": a["statements"] == b["statements"],
            f"{name}_sizes": [label_a, label_b], f"{name}_booking_rows": [a["rows"], b["rows"]],
            f"{name}_page_ms": round(a["page"] * 1000, 1), f"{name}_page_cpu_ms": round(a["page_cpu"] * 1000, 1),
            f"{name}_sql_ms": round(a["sql"] * 1000, 2), f"{name}_ratio": round(a["page"] / a["sql"], 2),
            f"{name}_page_ms_small": round(b["page"] * 1000, 1), f"{name}_sql_ms_small": round(b["sql"] * 1000, 2),
            f"{name}_ratio_small": round(b["page"] / b["sql"], 2)}


def measure(app, url: str, ids: dict, first: date, renders: int) -> dict:
    from reservations.timeutil import shift_months

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    month = shift_months(first, 1)
    month_end = shift_months(month, 1) - timedelta(days=1)
    day_a, day_b = month + timedelta(days=9), month + timedelta(days=16)
    with psycopg.connect(plain) as conn:
        # A busy room (95 % of its slots taken) and a quiet one (30 %).
        busy, quiet = (conn.execute("SELECT id FROM rooms WHERE id %% 4 = %s ORDER BY id LIMIT 1", (m,)).fetchone()[0]
                       for m in (0, 3))
        record = {"rooms": ids["rooms"], "big_building_rooms": ids["big_rooms"],
                  "small_building_rooms": ids["small_rooms"], "month": month.isoformat()[:7],
                  "day": day_a.isoformat(), "day_small": day_b.isoformat(), "renders": renders}
        public = app.test_client()
        start, end = tokyo_bounds(month, month_end)
        measured = []
        for label, room in (("busy room", busy), ("quiet room", quiet)):
            measured.append((label, compare(app, public, f"/rooms/{room}?month={month.isoformat()[:7]}", conn,
                                            RAW_ROOM_MONTH, {"room": room, "first": month, "start": start,
                                                             "end": end}, renders)))
        record |= figures("room_month", measured)

        staff = app.test_client()
        with staff.session_transaction() as session:
            session["_user_id"] = ids["staff_session"]
            session["_fresh"] = True
        measured = []
        for label, building, day in ((f"{ids['big_rooms']} rooms", ids["big_building"], day_a),
                                     (f"{ids['small_rooms']} room(s)", ids["small_building"], day_b)):
            start, end = tokyo_bounds(day, day)
            measured.append((label, compare(app, staff, f"/staff/buildings/{building}/day?date={day}", conn,
                                            RAW_STAFF_DAY, {"staff": ids["staff"], "building": building,
                                                            "start": start, "end": end}, renders)))
        record |= figures("staff_day", measured)

        measured = []
        for label, query, fill, day in (
                (f"{ids['rooms']} rooms", "", "", day_a),
                (f"{ids['small_rooms']} room(s)", f"&building={ids['small_building']}",
                 f"AND r.building_id = {int(ids['small_building'])}", day_b)):
            start, end = tokyo_bounds(day, day)
            measured.append((label, compare(app, public, f"/?date={day}{query}", conn, RAW_SEARCH,
                                            {"first": day.replace(day=1), "start": start, "end": end}, renders,
                                            fill)))
        record |= figures("search", measured)
        record |= cold_search(app, public, f"/?date={day_a}", plain, renders)
    return record


def cold_search(app, client, url: str, database: str, renders: int) -> dict:
    """The search of every room just after a change to the catalog (a new token, as any write to it gives):
    the render that reads the catalog again, and its statements. The token is written on a connection of its
    own in autocommit: on measure's connection, whose first SELECT began a transaction that stays open,
    conn.transaction() would be a savepoint, and the app would never see the new token."""
    from sqlalchemy import event

    from reservations.extensions import db

    with app.app_context():
        engine = db.engine
    times, sent = [], []
    writer = psycopg.connect(database, autocommit=True)
    for n in range(max(3, renders // 4)):
        writer.execute("UPDATE catalog_version SET token = md5(random()::text) WHERE id = 1")
        listener = (lambda c, cursor, statement, *args: sent.append(statement)) if n == 0 else None
        if listener:
            event.listen(engine, "before_cursor_execute", listener)
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        if listener:
            event.remove(engine, "before_cursor_execute", listener)
        assert response.status_code == 200, response.status_code
    writer.close()
    say(f"search after a catalog change: {len(sent)} statements, page {statistics.median(times) * 1000:.1f} ms")
    return {"search_cold_statements": len(sent), "search_cold_page_ms": round(statistics.median(times) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=1_000_000)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()
    wall = time.perf_counter()
    loopback_only(ADMIN)

    from reservations import create_app
    from reservations.timeutil import business_date, now_utc

    name = f"bench_calendar_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        app = create_app({"APP_ENV": "development", "SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_ENABLED": False})
        logging.getLogger("reservations.requests").setLevel(logging.WARNING)  # a line per render: not here
        first = business_date(now_utc()).replace(day=1)
        started = time.perf_counter()
        ids = seed_world(app)
        world_s = time.perf_counter() - started
        started = time.perf_counter()
        states = seed_bookings(url.replace("postgresql+psycopg://", "postgresql://"), ids, args.bookings, first)
        bookings_s = time.perf_counter() - started
        say(f"seeded {ids['rooms']} rooms in {world_s:.1f} s and {sum(states.values()):,} bookings {states} "
            f"in {bookings_s:.1f} s")
        record = {"bench": "calendar", "bookings": sum(states.values()), "booking_states": states,
                  "slots": ids["rooms"] * 3 * DAYS,
                  "seed_bookings_s": round(bookings_s, 1)}
        record |= measure(app, url, ids, first, args.renders)
    finally:
        if args.keep:
            say(f"kept the database {name}")
        else:
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ratios = [record[f"{p}_ratio{s}"] for p in ("room_month", "staff_day", "search") for s in ("", "_small")]
    record |= {"ratio_goal": 3, "ratios_ok": all(r <= 3 for r in ratios),
               "all_constant": all(record[f"{p}_constant"] for p in ("room_month", "staff_day", "search")),
               "wall_s": round(time.perf_counter() - wall, 1)}
    emit(record)


if __name__ == "__main__":
    main()
