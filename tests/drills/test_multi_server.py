"""Drill: two app servers and two schedulers against one PostgreSQL, the shape of a multi-server deployment.

PostgreSQL only: several servers and schedulers sharing one database is PostgreSQL's shape (the room's
advisory lock, SKIP LOCKED claims, the job_runs tick claims across processes).

Two `gunicorn wsgi:app` (2 sync workers each) and two `flask jobs run` (JOB_INTERVAL_SECONDS=1) run against
one fresh database built by `flask db upgrade`. The rate limits count in Redis (a database of this run
alone, as production counts across servers), with the per-address limits raised: every resident here comes
from 127.0.0.1. 40 residents sign in on one server and reserve on the other, ten of them released at once
on each of 4 divisions, while each division also holds a lapsed hold the job or the booking must retire.
"""
import re
import signal
import threading
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import pairwise

import psycopg
import pytest
import redis
from psycopg.rows import namedtuple_row

from tests.drills.conftest import (
    BIN,
    Resident,
    app_env,
    booked_id,
    seed_residents,
    seed_rooms,
    seeding,
    start_gunicorn,
    wait_until,
)
from tests.helpers import audit_actions, booking_day, calendar_booking

RESIDENTS = 40
CODES = ("MORNING", "AFTERNOON")
SKIPPED = re.compile(r"job (\w+): tick (\d+) already claimed")


@pytest.fixture
def redis_db():
    """A Redis database (1-15) that nobody else uses during this run: claimed with SET NX, emptied after."""
    for number in range(1, 16):
        client = redis.Redis(host="127.0.0.1", port=6379, db=number)
        try:
            claimed = client.set("drills:claim", uuid.uuid4().hex, nx=True, ex=600)
        except redis.ConnectionError as exc:
            pytest.fail(f"Redis does not answer at 127.0.0.1:6379: {exc}", pytrace=False)
        if claimed and client.dbsize() == 1:
            try:
                yield number
            finally:
                keys = list(client.scan_iter(match="LIMIT*"))
                if keys:
                    client.delete(*keys)
                client.delete("drills:claim")
                client.close()
            return
        if claimed:
            client.delete("drills:claim")  # someone's data is there: not ours to use
        client.close()
    pytest.fail("no free Redis database among 1-15", pytrace=False)


def seed(url: str) -> dict:
    """Three rooms; residents; a lapsed hold on each contested division and four more elsewhere."""
    from reservations.extensions import db
    from reservations.models import Room, User
    from reservations.timeutil import now_utc

    with seeding(url):
        contested_a, contested_b, quiet = seed_rooms(3)
        emails = seed_residents(RESIDENTS)
        holders = [db.session.get(User, n) for n in range(1, 9)]  # 8 of them left holds that ran out
        day, now = booking_day(), now_utc()
        lapsed = dict(hold_expires_at=now - timedelta(hours=1), created_at=now - timedelta(hours=1, minutes=10),
                      state="held", now=now)
        holds = []
        contested = [(r, c) for r in (contested_a, contested_b) for c in CODES]
        for holder, (room_id, code) in zip(holders[:4], contested, strict=True):
            holds.append(calendar_booking(holder, db.session.get(Room, room_id), day, code, **lapsed).id)
        for n, holder in enumerate(holders[4:]):
            holds.append(calendar_booking(holder, db.session.get(Room, quiet), day + timedelta(days=n + 1),
                                          "EVENING", **lapsed).id)
    return {"rooms": (contested_a, contested_b), "emails": emails, "day": day, "holds": holds}


def sql(url: str, query: str) -> list:
    """Rows of one query, read with a connection of its own (cheap enough to poll with)."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), row_factory=namedtuple_row) as conn:
        return conn.execute(query).fetchall()


def test_two_servers_and_two_schedulers_book_each_division_once_and_run_each_job_once_per_tick(
        drill_database, redis_db, processes, tmp_path):
    url = drill_database
    seeded = seed(url)
    env = app_env(url, tmp_path, JOB_INTERVAL_SECONDS=1, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:6379/{redis_db}",
                  RATELIMIT_LOGIN_IP="100000 per minute", RATELIMIT_RESERVE_IP="100000 per minute")
    servers = start_gunicorn(processes, ["server-a", "server-b"], env)

    # Each resident signs in on one server and reserves on the other: the session is the deployment's, not a
    # process's. Ten residents per division, half of them on each server.
    targets = [(room_id, code) for room_id in seeded["rooms"] for code in CODES]
    residents = [Resident(email) for email in seeded["emails"]]

    def prepare(n: int) -> dict:
        resident, (room_id, code) = residents[n], targets[n % len(targets)]
        resident.sign_in(servers[n % 2])
        return resident.review(servers[(n + 1) % 2], room_id, seeded["day"], code)

    try:
        with ThreadPoolExecutor(8) as pool:
            forms = list(pool.map(prepare, range(RESIDENTS)))

        schedulers = {name: processes.start(name, [str(BIN / "flask"), "jobs", "run"], env)
                      for name in ("scheduler-a", "scheduler-b")}
        hosts = {name: f":{proc.pid}" for name, proc in schedulers.items()}

        # The rush: everyone's click at the same instant, while both schedulers start and run.
        barrier = threading.Barrier(RESIDENTS)
        answers: list = [None] * RESIDENTS

        def click(n: int) -> None:
            room_id, _code = targets[n % len(targets)]
            barrier.wait(timeout=30)
            answers[n] = residents[n].reserve(servers[(n + 1) % 2], room_id, forms[n])

        threads = [threading.Thread(target=click, args=(n,)) for n in range(RESIDENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "a reserve request never finished"
    finally:
        for resident in residents:
            resident.close()

    # --- the rush: one winner per division, nobody else, no overlap, no 5xx --------------------------
    every_answer = [a for resident in residents for a in resident.answers]
    assert [a for a in every_answer if a[2] >= 500] == []
    won = {n: booked_id(answer) for n, answer in enumerate(answers) if booked_id(answer)}
    assert len(won) == len(targets), [(a.status_code, a.headers.get("location")) for a in answers]
    confirmed = sql(url, "SELECT id, room_id, division_codes FROM bookings WHERE state = 'confirmed' ORDER BY id")
    assert sorted(row.id for row in confirmed) == sorted(won.values())
    assert sorted((row.room_id, row.division_codes) for row in confirmed) == sorted(targets)
    overlaps = sql(url, """
        SELECT a.id AS first, b.id AS second FROM bookings a JOIN bookings b ON a.room_id = b.room_id AND a.id < b.id
         AND a.start_at < b.end_at AND b.start_at < a.end_at
        WHERE (a.state = 'confirmed' OR (a.state = 'held' AND a.hold_expires_at > now()))
          AND (b.state = 'confirmed' OR (b.state = 'held' AND b.hold_expires_at > now()))""")
    assert overlaps == []

    # --- the schedulers: both take part; one dies, the other carries on; each job runs once per tick ----
    def runs() -> list:
        return sql(url, "SELECT job_id, tick, host FROM job_runs WHERE tick IS NOT NULL ORDER BY tick")

    def both_seen():
        # A scheduler has taken part once it ran a tick (its host in job_runs) or saw one taken (its log).
        observed = runs()
        return len({r.tick for r in observed}) >= 3 and all(
            any(r.host.endswith(hosts[name]) for r in observed) or SKIPPED.search(processes.log(name))
            for name in schedulers)

    wait_until(both_seen, timeout=30, interval=0.2, what="both schedulers to run or skip three ticks")
    latest = runs()[-1]
    winner = next(name for name, host in hosts.items() if latest.host.endswith(host))
    survivor = next(name for name in schedulers if name != winner)
    processes.kill(winner, signal.SIGKILL)  # mid-tick, perhaps mid-job: the claim it made stays
    killed_at = max(r.tick for r in runs())

    def survivor_carried_on():
        return all(len([r for r in runs() if r.job_id == job and r.tick > killed_at + 1]) >= 2
                   for job in {r.job_id for r in runs()})

    wait_until(survivor_carried_on, timeout=30, interval=0.2, what=f"{survivor} to run every job twice alone")
    processes.kill(survivor, signal.SIGTERM)

    observed = runs()
    by_job = defaultdict(list)
    for row in observed:
        by_job[row.job_id].append(row.tick)
    for job, ticks in by_job.items():
        assert len(ticks) == len(set(ticks)), f"{job} ran a tick twice: {ticks}"
        # While two schedulers ran, every tick was run: one of them always claimed it.
        together = [tick for tick in ticks if tick <= killed_at]
        assert together == list(range(together[0], together[0] + len(together))), f"{job} missed a tick: {ticks}"
        # Alone, a scheduler can lose a tick to its own timing, never two in a row: a run that starts a moment
        # late, just past a tick's end, claims the next tick, and the next run finds that tick its own.
        assert all(b - a <= 2 for a, b in pairwise(ticks)), f"{job} missed ticks after the failover: {ticks}"
    ran_by = {name: {(r.job_id, r.tick) for r in observed if r.host.endswith(host)} for name, host in hosts.items()}
    assert ran_by[winner] and ran_by[survivor], {name: len(ticks) for name, ticks in ran_by.items()}
    assert {r.job_id for r in observed if r.host.endswith(hosts[survivor])} == set(by_job)
    # Both tried every tick: the one that lost them while both ran says so in its log, naming ticks the
    # other ran; and nobody skipped a tick that no scheduler ran.
    skipped = {name: {(job, int(tick)) for job, tick in SKIPPED.findall(processes.log(name))} for name in schedulers}
    assert skipped[survivor] & ran_by[winner], "the scheduler that lost the ticks while both ran never saw one taken"
    for name in schedulers:
        assert skipped[name] <= ran_by[winner] | ran_by[survivor], f"{name} skipped ticks nobody ran"

    # --- the lapsed holds: each retired once (by a job run or by the booking over its slot) --------------
    with seeding(url):
        for booking_id in seeded["holds"]:
            actions = [action for action, _reason in audit_actions("booking", booking_id)]
            assert [a for a in actions if a.startswith("held->")] == ["held->expired"], (booking_id, actions)
