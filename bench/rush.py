"""The opening rush (issue 11): many residents signed in, released at one instant on a few hot divisions.

Usage: .venv/bin/python bench/rush.py [--residents 300] [--divisions 30] [--workers 4] [--runs 1]
                                      [--port 0] [--trivial-seconds 5] [--payments on|off] [--profile]
                                      [--gunicorn-args '...']

Each run builds a fresh PostgreSQL database with the migrations (on TEST_PG_ADMIN_URL's server, dropped at the
end), seeds it (bench/rush_seed.py: `--divisions` hot divisions of one bookable day, each wanted by residents
/ divisions residents), and serves it with gunicorn (`-w WORKERS`, sync workers, the deployment's hooks in
deploy/gunicorn.conf.py, so each worker warms up before its first request (reservations/warmup.py),
APP_ENV=development, rate limits in Redis db RUSH_REDIS_DB (default 13, flushed before and after) with every
limit raised, since all residents come from 127.0.0.1). With payments on (the default) a won hold is a held
booking with a new payment: the reserve request asks nothing of the provider (the pay page, not opened here,
would); localstripe runs only so /healthz finds the provider. Then, with asyncio and httpx, one client (and
cookie jar) per resident:

1. sign-in storm: every resident at once GETs /account/login for its CSRF token and POSTs the form:
   signin_per_s (signed in / wall time), signin_p50_ms and signin_p99_ms (both requests), signin_errors_5xx,
   signin_cpu_ms_per_signin (server CPU, as below).
2. trivial baseline: every client GETs /account/profile (the lightest signed-in page: the user loader's one
   query and a form) in a loop for --trivial-seconds: trivial_rps, and trivial_app_cpu_ms and
   trivial_pg_cpu_ms, the server CPU of one such request (as below), to set an attempt's CPU beside.
3. the rush: once every client is waiting, all are released together; each makes one attempt, as the room
   page's form leads it: GET /rooms/<id>/book?date=&divisions= (the review page), read the CSRF token and
   expected_price from its form, POST it. attempts_per_s = attempts / wall time of the rush;
   throughput_ratio = attempts_per_s / trivial_rps; p50_ms and p99_ms of an attempt (both requests);
   errors_5xx; rate_limited (429s, must be 0). From the database afterwards: holds_won (held or confirmed
   bookings in the hot rooms, must equal divisions) and overlaps (pairs of active bookings of one room whose
   times overlap, must be 0).

Server CPU (utime + stime from /proc/<pid>/stat) is read before and after a phase for the gunicorn master
and its workers (app_cpu_ms_per_attempt) and for the PostgreSQL backends of gunicorn's connections, found by
their application_name set in DATABASE_URL (pg_cpu_ms_per_attempt); server_cpu_ms_per_attempt is the sum.
The pool keeps those backends for the whole run; a backend that exited within a phase would be missed (none
is expected: sync workers use one pooled connection each). PostgreSQL's shared processes (WAL writer,
checkpointer) are not counted: other users of the server share them. client_cpu_ms_per_attempt is this
process's own CPU, which shares the machine's cores with the server.

queries_per_attempt: pg_stat_statements is not preloaded on the local server, and the app has no query
counter, so the statements are counted in this process: after the rush, the same app (create_app, same
database and settings, warmed up as the workers are) serves one winning and one losing attempt (GET review +
POST reserve, signed in beforehand) through the Flask test client, with a SQLAlchemy before_cursor_execute
counter plus one for each liveness ping at a pool checkout (reservations/pool.py: only of a connection the
server has spoken to; the dialect's do_ping, which no event sees). BEGIN/COMMIT/ROLLBACK are not counted.
queries_per_win and queries_per_loss are reported, queries_per_attempt is the larger.

--gunicorn-args adds flags to gunicorn's command line, to measure another worker class against the
default in one sitting. With `-k gthread --threads 1 --keep-alive 120` each resident's connection stays open
between its requests (sync workers close it after each one): the client then spends less CPU on connecting,
and the server about the same. The keep-alive must outlast the pause between the phases, or a resident's next
request meets a connection the server has just closed.

--runs K repeats the whole (fresh database and seed each time) and reports the median of each figure.
--profile attaches `py-spy record --subprocesses --function --full-filenames --format raw` to the gunicorn
master for the rush only, keeps the folded stacks in /tmp/rush-profile.txt and prints to stderr: the top
frames by inclusive samples (reservations/, sqlalchemy/, flask_wtf/, wtforms/); within each of the two views
(review, reserve) its share of the samples, how much of it was spent waiting on PostgreSQL, and its top
reservations/ frames; and the top frames by self samples (any module). A sample is a moment a worker was in a
request, busy or waiting (psycopg's Connection.wait: a query, or a lock such as the room's advisory lock), so
the shares are of the workers' request time, not of CPU. Sampling pauses the workers: figures of a profiled
run are not comparable with unprofiled ones.

Prints one JSON line on stdout (bench/_common.emit); everything else goes to stderr.
"""
import argparse
import asyncio
import logging
import os
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
import psycopg
import redis
from _common import ROOT, emit, free_port, start_localstripe
from rush_seed import PASSWORD, Plan, seed
from sqlalchemy import event

from reservations import create_app
from reservations.extensions import db
from reservations.warmup import warm

ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_DB = int(os.environ.get("RUSH_REDIS_DB", "13"))
APP_NAME = "rush-gunicorn"  # application_name of gunicorn's connections: how their backends are found
UNLIMITED = "1000000 per minute"
LIMITS = ("LOGIN", "LOGIN_IP", "RESERVE", "RESERVE_IP", "PAY", "PAY_IP")
PROFILE_OUT = Path("/tmp/rush-profile.txt")
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PRICE = re.compile(r'name="expected_price"[^>]*value="(\d+)"')
WON = re.compile(r"/bookings/\d+")


def log(*parts, sep: str = " ") -> None:
    print(*parts, sep=sep, file=sys.stderr, flush=True)


def db_url(name: str, *, driver: str = "postgresql") -> str:
    return ADMIN.rsplit("/", 1)[0].replace("postgresql", driver, 1) + "/" + name


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# --- CPU of the server's processes ------------------------------------------------


def _ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


@dataclass
class CpuMeter:
    """The CPU of gunicorn's master and workers, and of the PostgreSQL backends of their connections."""

    master: int
    admin: psycopg.Connection

    def sample(self) -> dict[str, dict[int, int]]:
        backends = [pid for (pid,) in self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,))]
        groups = {"app": [self.master, *_children(self.master)], "pg": backends}
        return {name: {pid: t for pid in pids if (t := _ticks(pid)) is not None} for name, pids in groups.items()}

    @staticmethod
    def spent_ms(before: dict, after: dict) -> dict[str, float]:
        return {name: sum(t - before[name].get(pid, 0) for pid, t in after[name].items()) * TICK_MS
                for name in after}


# --- the server -------------------------------------------------------------------


def app_settings(database: str, payments: bool, stripe_url: str, outbox: str) -> dict[str, str]:
    """The environment gunicorn's app reads (config.py), as strings."""
    settings = {
        "APP_ENV": "development", "DATABASE_URL": f"{db_url(database)}?application_name={APP_NAME}",
        "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:6379/{REDIS_DB}", "PAYMENTS_ENABLED": "1" if payments else "0",
        "STRIPE_API_BASE": stripe_url, "MAIL_OUTBOX_DIR": outbox, "LOG_FORMAT": "text",
    }
    settings.update({f"RATELIMIT_{name}": UNLIMITED for name in LIMITS})
    return settings


def start_gunicorn(settings: dict, workers: int, port: int, logfile, extra: Sequence[str] = ()) -> subprocess.Popen:
    env = {**os.environ, **settings}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "--config", str(ROOT / "deploy/gunicorn.conf.py"), "-w", str(workers),
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", *extra, "wsgi:app"],
        cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}: see {logfile.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"gunicorn did not answer /healthz within 60 s: see {logfile.name}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the residents ----------------------------------------------------------------


@dataclass
class Resident:
    email: str
    target: tuple[int, str]
    client: httpx.AsyncClient
    signed_in: bool = False


@dataclass
class Tally:
    """Outcomes by kind and the time of each try, in ms."""

    outcomes: Counter = field(default_factory=Counter)
    times_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def count(self, outcome: str, started: float) -> None:
        self.outcomes[outcome] += 1
        self.times_ms.append((time.perf_counter() - started) * 1000)


def kind_of(response: httpx.Response) -> str:
    code = response.status_code
    return "5xx" if code >= 500 else "429" if code == 429 else str(code)


async def released_together(residents: list[Resident], attempt) -> float:
    """Run attempt(resident, go) for every resident, once all of them wait on `go`; the wall time after it."""
    go, ready, count = asyncio.Event(), asyncio.Event(), 0

    async def one(resident: Resident):
        nonlocal count
        count += 1
        if count == len(residents):
            ready.set()
        await go.wait()
        await attempt(resident)

    tasks = [asyncio.create_task(one(r)) for r in residents]
    await ready.wait()
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


async def sign_in_storm(residents: list[Resident]) -> Tally:
    tally = Tally()

    async def sign_in(resident: Resident):
        started = time.perf_counter()
        page = await resident.client.get("/account/login")
        token = CSRF.search(page.text)
        if page.status_code != 200 or token is None:
            return tally.count(f"login_page_{kind_of(page)}", started)
        sent = await resident.client.post("/account/login", data={
            "csrf_token": token.group(1), "email": resident.email, "password": PASSWORD, "next": ""})
        resident.signed_in = sent.status_code == 302
        tally.count("signed_in" if resident.signed_in else kind_of(sent), started)

    tally.wall_s = await released_together(residents, sign_in)
    return tally


async def trivial_baseline(residents: list[Resident], seconds: float) -> Tally:
    tally = Tally()
    deadline = time.perf_counter() + seconds

    async def loop(resident: Resident):
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await resident.client.get("/account/profile")
            tally.count("ok" if response.status_code == 200 else kind_of(response), started)

    tally.wall_s = await released_together(residents, loop)
    return tally


def review_and_reserve(room_id: int, code: str, day: str):
    """One attempt, as a browser makes it: a generator of the two requests (each sent by the caller, which
    sends back the response), ending with the outcome. The HTTP rush and the in-process count share it."""
    page = yield ("GET", f"/rooms/{room_id}/book", {"date": day, "divisions": code})
    token, price = CSRF.search(page.text), PRICE.search(page.text)
    if page.status_code != 200 or token is None or price is None:
        return f"review_{kind_of(page)}"
    sent = yield ("POST", f"/rooms/{room_id}/book", {"csrf_token": token.group(1), "date": day,
                                                     "divisions": code, "expected_price": price.group(1)})
    if sent.status_code == 302:
        return "won" if WON.search(sent.headers.get("location", "")) else "lost"
    return kind_of(sent)


async def rush(residents: list[Resident], day: str) -> Tally:
    tally = Tally()

    async def attempt(resident: Resident):
        started, client = time.perf_counter(), resident.client
        steps = review_and_reserve(*resident.target, day)
        try:
            method, url, data = next(steps)
            while True:
                response = await (client.get(url, params=data) if method == "GET" else client.post(url, data=data))
                method, url, data = steps.send(response)
        except StopIteration as done:
            tally.count(done.value, started)

    tally.wall_s = await released_together(residents, attempt)
    return tally


# --- the database's word, and the in-process query count ---------------------------


def rush_results(conn: psycopg.Connection, plan: Plan) -> tuple[int, int]:
    won = conn.execute("SELECT count(*) FROM bookings WHERE state IN ('held', 'confirmed') AND room_id = ANY(%s)",
                       (plan.hot_rooms,)).fetchone()[0]
    overlaps = conn.execute(
        "SELECT count(*) FROM bookings a JOIN bookings b ON a.room_id = b.room_id AND a.id < b.id "
        "AND a.start_at < b.end_at AND b.start_at < a.end_at "
        "WHERE a.state IN ('held', 'confirmed') AND b.state IN ('held', 'confirmed')").fetchone()[0]
    return won, overlaps


def attempt_in_process(client, room_id: int, code: str, day: str) -> str:
    """review_and_reserve through the Flask test client."""
    steps = review_and_reserve(room_id, code, day)
    try:
        method, url, data = next(steps)
        while True:
            response = client.get(url, query_string=data) if method == "GET" else client.post(url, data=data)
            method, url, data = steps.send(SimpleNamespace(  # what review_and_reserve reads of a response
                status_code=response.status_code, text=response.get_data(as_text=True), headers=response.headers))
    except StopIteration as done:
        return done.value


def queries_per_attempt(database: str, settings: dict, plan: Plan) -> dict[str, int]:
    """Statements of one winning and one losing attempt, served in this process through the test client."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url(database, driver="postgresql+psycopg"),
                      "APP_ENV": "development", "RATELIMIT_STORAGE_URI": "memory://",
                      "PAYMENTS_ENABLED": settings["PAYMENTS_ENABLED"] == "1",
                      "STRIPE_API_BASE": settings["STRIPE_API_BASE"], "MAIL_OUTBOX_DIR": settings["MAIL_OUTBOX_DIR"]})
    logging.getLogger("reservations.requests").setLevel(logging.WARNING)  # the request lines of this probe
    warm(app)  # as the server's workers are before their first request (deploy/gunicorn.conf.py)
    with app.app_context():
        engine = db.engine
    seen, counted = Counter(), {}
    event.listen(engine, "before_cursor_execute", lambda *a: seen.update(["statement"]))
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: seen.update(["ping"]) or ping(connection)
    for email, expected, name in zip(plan.probe_emails, ("won", "lost"), ("win", "loss"), strict=True):
        client = app.test_client()
        page = client.get("/account/login")
        client.post("/account/login", data={"csrf_token": CSRF.search(page.get_data(as_text=True)).group(1),
                                            "email": email, "password": PASSWORD, "next": ""})
        seen.clear()
        outcome = attempt_in_process(client, plan.probe_room, "MORNING", plan.day.isoformat())
        if outcome != expected:
            raise SystemExit(f"the in-process attempt meant to be {expected} ended {outcome}")
        counted[f"queries_per_{name}"] = seen.total()
    with app.app_context():
        db.engine.dispose()
    counted["queries_per_attempt"] = max(counted.values())
    return counted


# --- profiling --------------------------------------------------------------------


def start_py_spy(master: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(ROOT / ".venv/bin/py-spy"), "record", "--subprocesses", "--function",
                             "--full-filenames", "--format", "raw", "--pid", str(master), "-o", str(PROFILE_OUT)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said = []
    for line in proc.stdout:  # it says when it samples
        if "Sampling" in line:
            break
        said.append(line)
    else:
        raise SystemExit(f"py-spy did not start: {''.join(said)[-1000:]}")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc


def stop_py_spy(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)


PROFILED = ("reservations/", "sqlalchemy/", "flask_wtf/", "wtforms/")
VIEWS = ("review", "reserve")  # the attempt's two requests (reservations/bookings/routes.py)
IN_PSYCOPG = "Connection.wait (psycopg/"  # sending a statement and waiting for its answer (a lock's wait too)


LIBRARY = re.compile(r"\(/[^()]*/(site-packages|lib/python3\.\d+)/")


def _short(frame: str) -> str:
    """A frame's file as a package path: reservations/services/booking.py, sqlalchemy/orm/session.py."""
    return LIBRARY.sub("(", frame).replace(f"({ROOT}/", "(")


def _stacks(path: Path):
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            yield [_short(frame) for frame in stack.split(";")], int(count)


def _top(counts: Counter, total: int, top: int, keep=lambda frame: True) -> None:
    for frame, n in [(f, n) for f, n in counts.most_common() if keep(f)][:top]:
        log(f"  {100 * n / max(total, 1):5.1f}%  {frame}")


def summarise_profile(path: Path, top: int = 25) -> None:
    """The folded stacks in short: by inclusive samples overall and within each view, and by self samples."""
    inclusive, own, below = Counter(), Counter(), {view: Counter() for view in VIEWS}
    in_view, waiting, total = Counter(), Counter(), 0
    for frames, count in _stacks(path):
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        for view in VIEWS:
            at = next((i for i, f in enumerate(frames) if f.startswith(f"{view} (reservations/bookings/")), None)
            if at is not None:
                in_view[view] += count
                waiting[view] += count if any(f.startswith(IN_PSYCOPG) for f in frames[at + 1:]) else 0
                for frame in set(frames[at + 1:]):
                    below[view][frame] += count
    profiled = lambda frame: any(p in frame for p in PROFILED)  # noqa: E731
    log(f"\npy-spy: {total} samples of the workers in requests during the rush; folded stacks in {path}")
    log(f"top {top} frames by inclusive samples, of all ({', '.join(PROFILED)}):")
    _top(inclusive, total, top, profiled)
    for view in VIEWS:
        share = 100 * in_view[view] / max(total, 1)
        log(f"within {view} ({share:.1f}% of all; {100 * waiting[view] / max(in_view[view], 1):.1f}% of it in "
            "psycopg's Connection.wait, on PostgreSQL), top 15 reservations/ frames by inclusive samples:")
        _top(below[view], in_view[view], 15, lambda frame: "reservations/" in frame)
    log("top 15 frames by self samples, of all (any module):")
    _top(own, total, 15)


# --- one run ----------------------------------------------------------------------


def migrate_and_seed(database: str, settings: dict, args) -> Plan:
    done = subprocess.run([str(ROOT / ".venv/bin/flask"), "db", "upgrade"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **settings})
    if done.returncode:
        raise SystemExit(f"flask db upgrade failed:\n{done.stderr[-2000:]}")
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url(database, driver="postgresql+psycopg"),
                      "APP_ENV": "development", "RATELIMIT_STORAGE_URI": "memory://"})
    plan = seed(app, args.residents, args.divisions)
    with app.app_context():
        db.engine.dispose()
    return plan


async def drive(base_url: str, plan: Plan, meter: CpuMeter, args) -> dict:
    """The three phases against the running server, with the server CPU of each."""
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=1)
    residents = [Resident(email, plan.target_of(n), httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits))
                 for n, email in enumerate(plan.emails)]
    try:
        before = meter.sample()
        signin = await sign_in_storm(residents)
        signin_cpu = CpuMeter.spent_ms(before, meter.sample())
        signed_in = [r for r in residents if r.signed_in]
        log(f"sign-in storm: {dict(signin.outcomes)} in {signin.wall_s:.1f} s")
        before = meter.sample()
        trivial = await trivial_baseline(signed_in, args.trivial_seconds)
        trivial_cpu = CpuMeter.spent_ms(before, meter.sample())
        log(f"trivial GET /account/profile: {dict(trivial.outcomes)} in {trivial.wall_s:.1f} s")
        profiler = start_py_spy(meter.master) if args.profile else None
        before, client_before = meter.sample(), resource.getrusage(resource.RUSAGE_SELF)
        attempts = await rush(signed_in, plan.day.isoformat())
        rush_cpu, client_after = CpuMeter.spent_ms(before, meter.sample()), resource.getrusage(resource.RUSAGE_SELF)
        if profiler:
            stop_py_spy(profiler)
        log(f"rush: {dict(attempts.outcomes)} in {attempts.wall_s:.2f} s")
    finally:
        await asyncio.gather(*(r.client.aclose() for r in residents))
    n = max(len(attempts.times_ms), 1)
    client_ms = (client_after.ru_utime + client_after.ru_stime - client_before.ru_utime - client_before.ru_stime)
    trivial_rps = trivial.outcomes["ok"] / trivial.wall_s
    attempts_per_s = len(attempts.times_ms) / attempts.wall_s
    return {
        "signin_per_s": round(signin.outcomes["signed_in"] / signin.wall_s, 1),
        "signin_p50_ms": round(percentile(signin.times_ms, 50), 1),
        "signin_p99_ms": round(percentile(signin.times_ms, 99), 1),
        "signin_cpu_ms_per_signin": round(sum(signin_cpu.values()) / max(len(signin.times_ms), 1), 1),
        "signin_errors_5xx": signin.outcomes["5xx"] + signin.outcomes["login_page_5xx"],
        "signin_failed": len(residents) - len(signed_in),
        "trivial_rps": round(trivial_rps, 1),
        "trivial_errors_5xx": trivial.outcomes["5xx"],
        "trivial_app_cpu_ms": round(trivial_cpu["app"] / max(trivial.outcomes["ok"], 1), 2),
        "trivial_pg_cpu_ms": round(trivial_cpu["pg"] / max(trivial.outcomes["ok"], 1), 2),
        "attempts": len(attempts.times_ms),
        "won_seen": attempts.outcomes["won"],
        "errors_5xx": attempts.outcomes["5xx"] + attempts.outcomes["review_5xx"],
        "rate_limited": attempts.outcomes["429"] + attempts.outcomes["review_429"],
        "other_outcomes": sum(v for k, v in attempts.outcomes.items() if k not in ("won", "lost", "5xx", "429",
                                                                                     "review_5xx", "review_429")),
        "attempts_per_s": round(attempts_per_s, 1),
        "throughput_ratio": round(attempts_per_s / trivial_rps, 3),
        "p50_ms": round(percentile(attempts.times_ms, 50), 1),
        "p99_ms": round(percentile(attempts.times_ms, 99), 1),
        "server_cpu_ms_per_attempt": round(sum(rush_cpu.values()) / n, 2),
        "app_cpu_ms_per_attempt": round(rush_cpu["app"] / n, 2),
        "pg_cpu_ms_per_attempt": round(rush_cpu["pg"] / n, 2),
        "client_cpu_ms_per_attempt": round(client_ms * 1000 / n, 2),
    }


def one_run(args) -> dict:
    database = f"reservations_bench_rush_{uuid.uuid4().hex[:6]}"
    flush = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    gunicorn = localstripe = None
    with psycopg.connect(ADMIN, autocommit=True) as admin, tempfile.TemporaryDirectory() as tmp, \
            open(Path(tmp) / "gunicorn.log", "w+") as server_log:
        admin.execute(f'CREATE DATABASE "{database}"')
        try:
            flush.flushdb()
            started = time.perf_counter()
            if args.payments == "on":
                localstripe, stripe_url = start_localstripe()
            else:
                stripe_url = "http://127.0.0.1:9"  # nothing asks it
            settings = app_settings(database, args.payments == "on", stripe_url, str(Path(tmp) / "outbox"))
            plan = migrate_and_seed(database, settings, args)
            log(f"migrated and seeded {database} in {time.perf_counter() - started:.1f} s: "
                f"{len(plan.emails)} residents, {len(plan.targets)} hot divisions on {plan.day}")
            port = args.port or free_port()
            gunicorn = start_gunicorn(settings, args.workers, port, server_log, shlex.split(args.gunicorn_args))
            meter = CpuMeter(gunicorn.pid, admin)
            figures = asyncio.run(drive(f"http://127.0.0.1:{port}", plan, meter, args))
            stop(gunicorn)
            with psycopg.connect(db_url(database)) as conn:
                figures["holds_won"], figures["overlaps"] = rush_results(conn, plan)
            figures.update(queries_per_attempt(database, settings, plan))
            server_log.seek(0)
            problems = [line for line in server_log.read().splitlines() if line.strip() and "level=info" not in line]
            if problems:
                log(f"gunicorn said ({len(problems)} lines besides the request log, last 20):", *problems[-20:],
                    sep="\n  ")
            figures["server_log_problems"] = len(problems)
            return figures
        finally:
            stop(gunicorn)
            stop(localstripe)
            flush.flushdb()
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def median(values: list):
    value = statistics.median(values)
    return int(value) if all(isinstance(v, int) for v in values) and value == int(value) else round(value, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--residents", type=int, default=300)
    parser.add_argument("--divisions", type=int, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--port", type=int, default=0, help="gunicorn's port (default: a free one)")
    parser.add_argument("--trivial-seconds", type=float, default=5.0)
    parser.add_argument("--payments", choices=("on", "off"), default="on")
    parser.add_argument("--profile", action="store_true", help="py-spy on the workers during the rush")
    parser.add_argument("--gunicorn-args", default="", help="more gunicorn flags, e.g. "
                        "'-k gthread --threads 1 --keep-alive 120' (reported as gunicorn_args)")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = []
    for k in range(args.runs):
        runs.append(one_run(args))
        log(f"run {k + 1}/{args.runs}: {runs[-1]}")
    if args.profile:
        summarise_profile(PROFILE_OUT)
    figures = {key: median([run[key] for run in runs]) for key in runs[0]}
    emit({"bench": "rush", "residents": args.residents, "divisions": args.divisions, "workers": args.workers,
          "payments": args.payments, "gunicorn_args": args.gunicorn_args, "app_env": "development", "runs": args.runs,
          **figures,
          "profiled": args.profile, "seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
