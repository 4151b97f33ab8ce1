"""Every test that takes `app` runs twice: on SQLite and on PostgreSQL.

PostgreSQL must answer at TEST_DATABASE_URL (default: the local server); when it
does not, the tests error rather than skip, so CI cannot pass without it.
Each pytest process builds its own databases with the migrations, so runs in
parallel never share a schema.
"""
import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from datetime import date, time
from pathlib import Path

import psycopg
import pytest
import requests
from flask import g, request_started
from flask_migrate import upgrade
from sqlalchemy import text

from reservations import create_app
from reservations.extensions import db
from reservations.models import Building, Division, Letting, Residency, Role, Room, User
from reservations.timeutil import now_utc

# The suite runs in test mode whatever the shell or CI says: with APP_ENV unset the app would be
# production, which refuses the test settings. create_app reads it each time (config.app_env).
os.environ["APP_ENV"] = "test"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FAST_PASSWORD_HASH = "pbkdf2:sha256:1"
CHUO_DIVISIONS = [
    ("MORNING", time(9), time(12), 2800, 2800),
    ("AFTERNOON", time(13), time(17), 3600, 3600),
    ("EVENING", time(18), time(21), 3600, 3600),
]


def _pg_url(name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", PG_ADMIN_URL)


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory):
    """Build an empty schema with the migrations on each backend, once per session."""
    name = f"reservations_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {PG_ADMIN_URL}: {exc}", pytrace=False)
    urls = {
        "sqlite": f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}",
        "postgresql": _pg_url(name).replace("postgresql://", "postgresql+psycopg://"),
    }
    for url in urls.values():
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
        with app.app_context():
            upgrade()
            db.engine.dispose()
    yield urls
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migration(filename: str):
    """A migration module, for its trigger SQL."""
    path = Path(__file__).parent.parent / "migrations" / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The audit trail and the ledger (0007); closed days and 入金日 records (0011).
APPEND_ONLY = (_migration("0007_append_only.py"), _migration("0011_finance.py"))


def _empty_tables() -> None:
    """Empty every table between tests. The append-only tables refuse it, so their triggers are lifted
    for this transaction only (PostgreSQL: replica mode, as a superuser; SQLite: dropped and made again)."""
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    execute = lambda sql: db.session.execute(text(sql))  # noqa: E731
    if db.engine.dialect.name == "postgresql":
        # DELETE, not TRUNCATE: on the few rows a test leaves it is several times faster (TRUNCATE makes
        # new files for every table), and replica mode skips the foreign-key checks, so any order will do.
        execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            execute(f"DELETE FROM {table}")
        sequences = db.session.scalars(text("SELECT schemaname || '.' || sequencename FROM pg_sequences")).all()
        if sequences:  # ids start at 1 again, as they would in a new database
            execute("SELECT " + ", ".join(f"setval('{name}', 1, false)" for name in sequences))
    else:
        for migration in APPEND_ONLY:
            migration.drop_triggers(execute, "sqlite")
        for table in tables:
            execute(f"DELETE FROM {table}")
        for migration in APPEND_ONLY:
            migration.create_triggers(execute, "sqlite")
    db.session.commit()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def app_config(tmp_path, request) -> dict:
    """Tests may change settings by overriding or updating this fixture before `app`.

    Tests marked `payments` get online payment switched on, against localstripe.
    """
    config = {
        "TESTING": True,
        "SECRET_KEY": "test",
        "WTF_CSRF_ENABLED": False,
        "MAIL_BACKEND": "outbox",
        "MAIL_OUTBOX_DIR": str(tmp_path / "outbox"),
        "MAX_ACTIVE_BOOKINGS": 5,
        "HOLD_MINUTES": 10,
        "PAYMENTS_ENABLED": False,
        # Limits stay on, counted in memory: each test's app starts with empty counters (tests/test_rate_limits.py
        # proves the limits, on Redis too).
        "RATELIMIT_STORAGE_URI": "memory://",
        # One PBKDF2 round instead of scrypt (about 0.1-0.3 s a hash here): only a TESTING app honours it, and
        # tests/test_password_hashing.py proves every other app keeps werkzeug's default.
        "TESTING_PASSWORD_HASH_METHOD": FAST_PASSWORD_HASH,
    }
    if request.node.get_closest_marker("payments"):
        config.update(request.getfixturevalue("localstripe").config)
    return config


@pytest.fixture
def now():
    """The real current time, for tests that pass `now` to the services explicitly."""
    from reservations.timeutil import now_utc

    return now_utc()


@pytest.fixture
def app(backend, database_urls, app_config):
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": database_urls[backend]})
    with app.app_context():
        yield app
        db.session.rollback()
        _empty_tables()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    """A test client whose every request gets its own `g`, as in production.

    The `app` fixture keeps one app context open for the whole test and Flask
    reuses it for each request, so `g` (where Flask-Babel caches the locale and
    Flask-Login the user) would otherwise outlive the request that filled it.
    """

    def clear(sender, **extra):
        g.__dict__.clear()

    request_started.connect(clear, app)
    yield app.test_client()
    request_started.disconnect(clear, app)


@pytest.fixture
def fresh_session_per_request(app):
    """Each request begins with the session ended and its connection back in the pool, as in a server: the test's
    app context would otherwise keep one session, and one transaction, across requests, and serve the test's
    objects from its identity map."""
    def fresh(sender, **extra):
        db.session.remove()

    request_started.connect(fresh, app)
    yield
    request_started.disconnect(fresh, app)


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def english(client):
    """Messages are asserted in English, whatever the Japanese catalog says."""
    client.post("/lang/en")


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, email="resident@example.com", password="correct horse"):
        return self._client.post("/account/login", data={"email": email, "password": password})

    def logout(self):
        return self._client.post("/account/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def make_user(app):
    """Create and commit a user; returns it. Password is 'correct horse'; the address is verified
    unless `verified=False`. Staff run the test building unless given `buildings=`."""

    def make(email=None, *, residency=Residency.RESIDENT, role=Role.RESIDENT, name="山田 花子", verified=True, **kw):
        kw.setdefault("email_verified_at", now_utc() if verified else None)
        if role == Role.STAFF:
            kw.setdefault("buildings", [_building()])  # staff of the one test building, unless told otherwise
        user = User(email=email or f"u{uuid.uuid4().hex[:10]}@example.com", name=name,
                    residency=residency, role=role, **kw)
        user.set_password("correct horse")
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def resident(make_user):
    return make_user("resident@example.com")


def _building() -> Building:
    building = db.session.query(Building).filter_by(name="テスト会館").one_or_none()
    if building is None:
        building = Building(name="テスト会館", name_kana="テストカイカン", name_en="Test Hall",
                            address="東京都中央区1-1-1")
        db.session.add(building)
    return building


@pytest.fixture
def make_room(app):
    """A room let in Chuo's three divisions (weekday = holiday fees unless given)."""

    def make(name="音楽室", *, divisions=CHUO_DIVISIONS, **kw):
        room = Room(building=_building(), name=name, name_en="Music room", kind="music_room",
                    capacity=30, letting=Letting.DIVISION, **kw)
        for pos, (code, start, end, weekday_fee, holiday_fee) in enumerate(divisions):
            room.divisions.append(Division(code=code, position=pos, start_time=start, end_time=end,
                                           weekday_fee=weekday_fee, holiday_fee=holiday_fee))
        db.session.add(room)
        db.session.commit()
        return room

    return make


@pytest.fixture
def make_hourly_room(app):
    """A court let by the hour, 09:00–21:00, 1 to 3 hours, ¥1,000/h weekdays, ¥1,500/h holidays."""

    def make(name="テニスコート", **kw):
        fields = dict(kind="court", capacity=4, letting=Letting.HOURLY, open_time=time(9), close_time=time(21),
                      min_minutes=60, max_minutes=180, step_minutes=60, weekday_hourly_fee=1000,
                      holiday_hourly_fee=1500)
        fields.update(kw)
        room = Room(building=_building(), name=name, name_en="Tennis court", **fields)
        db.session.add(room)
        db.session.commit()
        return room

    return make


@pytest.fixture
def room(make_room):
    return make_room()


def weekday_on_or_after(day: date, weekday: int) -> date:
    from datetime import timedelta

    return day + timedelta(days=(weekday - day.weekday()) % 7)


@pytest.fixture
def login_as(client):
    """Sign a user in without going through the login form (for tests of other pages)."""

    def login(user):
        with client.session_transaction() as sess:
            sess["_user_id"] = user.get_id()  # "<id>:<session version>", as login_user stores it
            sess["_fresh"] = True
        return user

    return login


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStripe:
    """localstripe on loopback, one per test session, emptied before each test that uses it."""

    webhook_secret = "whsec_test_localstripe"

    def __init__(self, url: str):
        self.url = url
        self.config = {
            "PAYMENTS_ENABLED": True,
            "STRIPE_API_BASE": url,
            "STRIPE_JS_URL": f"{url}/js.stripe.com/v3/",
            "STRIPE_SECRET_KEY": "sk_test_localstripe",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
            "STRIPE_WEBHOOK_SECRET": self.webhook_secret,
            "STRIPE_LIVE_PARAMS": False,
        }

    def reset(self) -> None:
        requests.delete(f"{self.url}/_config/data", timeout=5).raise_for_status()

    def register_webhook(self, target_url: str, name: str = "app") -> None:
        requests.post(f"{self.url}/_config/webhooks/{name}",
                      data={"url": target_url, "secret": self.webhook_secret}, timeout=5).raise_for_status()

    def card_token(self, number: str = "4242424242424242") -> str:
        """What Stripe.js's createToken does in the browser."""
        response = requests.post(f"{self.url}/v1/tokens", timeout=5, data={
            "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2030", "card[cvc]": "123",
            "key": "pk_test_localstripe"})
        response.raise_for_status()
        return response.json()["id"]


def _start_localstripe(port: int) -> subprocess.Popen | None:
    """localstripe listening on `port`, or None if it could not (it exits when the port is taken)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reservations.payments.localstripe_server", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # The server prints "Running on ..." once it listens; read up to that line (the caller keeps draining).
    for line in proc.stdout:
        if "Running on" in line:
            return proc
    proc.wait(timeout=10)
    proc.stdout.close()
    return None


@pytest.fixture(scope="session")
def localstripe_server():
    # One per process (each xdist worker has its own) on a port the system says is free. Something else
    # (another worker's localstripe or live server, an outgoing connection) may take it before localstripe
    # binds it: then try another port, never one fixed for everybody.
    for _ in range(5):
        proc = _start_localstripe(port := free_port())
        if proc is not None:
            break
    else:
        pytest.fail("localstripe did not start", pytrace=False)
    drain = threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True)
    drain.start()
    yield LocalStripe(f"http://127.0.0.1:{port}")
    proc.terminate()
    proc.wait(timeout=10)
    drain.join(timeout=10)
    proc.stdout.close()


@pytest.fixture
def localstripe(localstripe_server):
    localstripe_server.reset()
    return localstripe_server


@pytest.fixture
def paid(localstripe, room, resident, now):
    """A confirmed MORNING (09:00) booking about two weeks ahead, paid 2,800 yen by card at localstripe."""
    from reservations.services import checkout
    from tests.helpers import book

    booking = book(resident, room, now=now)
    assert checkout.pay(booking.payment, token=localstripe.card_token(), now=now)[0] == "confirmed"
    db.session.commit()
    return booking


@pytest.fixture
def empty_database(backend, tmp_path):
    """An empty database of its own on the backend, for tests that run the migrations themselves."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    name = f"reservations_migr_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _pg_url(name).replace("postgresql://", "postgresql+psycopg://")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the accessibility scan's summary line, added up across xdist workers ---------------------------
# These hooks live here, not in tests/e2e/conftest.py: the xdist controller collects no tests, so it only
# loads this conftest. Each worker counts the scans it ran (tests/e2e/tour.py's AXE_SUMMARY) and hands them
# over when it finishes; the controller adds them up and prints the one line for the whole run.
TOUR = "tests.e2e.tour"


def pytest_sessionfinish(session):
    """On an xdist worker: give this worker's axe figures to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and TOUR in sys.modules:
        workeroutput["axe_summary"] = sys.modules[TOUR].AXE_SUMMARY.to_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """On the xdist controller: add up what each worker's axe scans saw."""
    figures = getattr(node, "workeroutput", {}).get("axe_summary")
    if figures:
        importlib.import_module(TOUR).AXE_SUMMARY.merge(figures)


def pytest_terminal_summary(terminalreporter):
    """The accessibility scan's figures (tests/e2e/test_accessibility.py), when it ran: this process's
    own, or the workers' added up (with xdist, workers print no summary)."""
    tour = sys.modules.get(TOUR)
    if tour is not None and tour.AXE_SUMMARY.scans:
        terminalreporter.write_sep("-", "accessibility")
        terminalreporter.write_line(tour.AXE_SUMMARY.line())
