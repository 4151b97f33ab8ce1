"""Drill: PostgreSQL restarts, cleanly and by a crash, while residents book; the app server is never restarted.

PostgreSQL only, and on a private server: the drill starts its own cluster (initdb, on a free port; as the
postgres user when run as root) so that stopping and crashing it touches nobody else's tests.

One `gunicorn wsgi:app` (2 sync workers) serves it; the rate limits count in memory (one server, and the
per-address limits raised: every resident comes from 127.0.0.1). A steady load of residents signs in and
reserves distinct divisions while the server is restarted with `pg_ctl restart -m fast`, then with
`-m immediate` (a crash: recovery from the WAL). The app must answer again by itself (reservations/pool.py), keep
every booking it said was made, show a clear 503 page while the database is away (never a traceback), and
keep its processes.
"""
import queue
import re
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import psycopg
from flask import request_finished
from sqlalchemy import text

from config import DEV_STRIPE_WEBHOOK_SECRET
from tests.conftest import PG_ADMIN_URL
from tests.drills.conftest import (
    Resident,
    app_env,
    booked_id,
    created_database,
    flask,
    seed_residents,
    seed_rooms,
    seeding,
    start_gunicorn,
    wait_until,
    worker_pids,
)
from tests.helpers import booking_day, closed_port, event_payload, signed

LOAD_THREADS = 3
RETRY_AFTER_SECONDS = 0.2
ROOMS, DAYS, PER_RESIDENT = 4, 10, 4
CODES = ("MORNING", "AFTERNOON", "EVENING")
TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PRICE = re.compile(r'name="expected_price" value="(\d+)"')
UNAVAILABLE = "The service is briefly unavailable. Please try again in a moment."


def look_during_the_outage(server: str, prober: "Resident") -> dict:
    """With the database down: a signed-in resident's page, and a provider event (JSON), as the app answers them."""
    payload = event_payload("payment_intent.succeeded", {"id": "pi_drill", "object": "payment_intent"})
    return {"page": prober.http.get(f"{server}/bookings"),
            "webhook": httpx.post(f"{server}/webhooks/stripe", content=payload, timeout=30,
                                  headers=signed(DEV_STRIPE_WEBHOOK_SECRET, payload))}


@dataclass
class Load:
    """Residents signing in and reserving one division each time, from a few threads, until told to stop."""

    server: str
    tasks: queue.Queue
    booked: list = field(default_factory=list)  # (booking id, when) of every reserve the app said was made
    answers: list = field(default_factory=list)  # (method, path, status, body of a 5xx)
    failures: list = field(default_factory=list)  # what could not even be sent (the server itself is gone)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _send(self, http: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response | None:
        try:
            response = http.request(method, f"{self.server}{path}", **kwargs)
        except httpx.HTTPError as exc:
            with self.lock:
                self.failures.append((method, path, repr(exc)))
            return None
        with self.lock:
            self.answers.append((method, path, response.status_code,
                                 response.text if response.status_code >= 500 else ""))
        return response

    def attempt(self, email: str, room_id: int, day, code: str) -> bool:
        """One resident's try: sign in, open the review page, reserve. False when the server could not serve it."""
        with httpx.Client(timeout=30, follow_redirects=False) as http:
            page = self._send(http, "GET", "/account/login")
            if page is None or page.status_code != 200:
                return False
            signed_in = self._send(http, "POST", "/account/login", data={
                "email": email, "password": "correct horse", "csrf_token": TOKEN.search(page.text).group(1)})
            if signed_in is None or signed_in.status_code != 302:
                return False
            path = f"/rooms/{room_id}/book"
            review = self._send(http, "GET", path, params={"date": day.isoformat(), "divisions": code})
            if review is None or review.status_code != 200:
                return False
            answer = self._send(http, "POST", path, data={
                "csrf_token": TOKEN.search(review.text).group(1), "date": day.isoformat(), "divisions": code,
                "expected_price": PRICE.search(review.text).group(1)})
            if answer is None or answer.status_code >= 500:
                return False
            if booking_id := booked_id(answer):
                with self.lock:
                    self.booked.append(booking_id)
            return True

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return
            if not self.attempt(*task):
                # As a resident would: try again a little later (the page said so). Pacing, not a race.
                self.tasks.put(task)
                self.stop.wait(RETRY_AFTER_SECONDS)

    def booked_count(self) -> int:
        with self.lock:
            return len(self.booked)


def test_the_app_rides_out_a_postgres_restart_and_a_crash_and_keeps_every_booking_it_announced(
        private_postgres, processes, tmp_path):
    cluster = private_postgres
    with created_database(cluster.admin_url, "restart") as url:
        flask(app_env(url, tmp_path), "db", "upgrade")
        with seeding(url):
            rooms = seed_rooms(ROOMS)
            emails = seed_residents(len(rooms) * DAYS * len(CODES) // PER_RESIDENT)
        first = booking_day()
        slots = [(room_id, first + timedelta(days=d), code) for d in range(DAYS) for room_id in rooms for code in CODES]
        tasks: queue.Queue = queue.Queue()
        for n, (room_id, day, code) in enumerate(slots):
            tasks.put((emails[n % len(emails)], room_id, day, code))

        env = app_env(url, tmp_path, RATELIMIT_STORAGE_URI="memory://", RATELIMIT_LOGIN_IP="100000 per minute",
                      RATELIMIT_RESERVE_IP="100000 per minute")
        [server] = start_gunicorn(processes, ["server"], env)
        master = processes.started["server"].pid
        workers = worker_pids(master)
        assert len(workers) == 2

        prober = Resident(emails[-1])  # signed in before the outage, to look at the pages during it
        prober.sign_in(server)
        page = prober.http.get(f"{server}/bookings")  # every page's language switch carries a CSRF token
        english = prober.http.post(f"{server}/lang/en", data={"csrf_token": TOKEN.search(page.text).group(1)})
        assert english.status_code == 302  # the outage page's message is asserted in English
        load = Load(server, tasks)
        threads = [threading.Thread(target=load.run) for _ in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        outage = {}
        try:
            for mode in ("fast", "immediate"):
                before = load.booked_count()
                wait_until(lambda before=before: load.booked_count() >= before + 3, timeout=60,
                           what=f"three bookings before the {mode} restart")
                if mode == "fast":
                    cluster.pg_ctl("restart", "-m", "fast")
                else:
                    # The crash: no checkpoint, the server recovers from its WAL at the start. Stopped and started
                    # in two steps so that the outage itself is looked at, not only raced by the load.
                    cluster.stop("immediate")
                    outage = look_during_the_outage(server, prober)
                    cluster.start()
                after = load.booked_count()
                # Answers again by itself: more bookings are made through the same server processes.
                wait_until(lambda after=after: load.booked_count() >= after + 3, timeout=60,
                           what=f"three bookings after the {mode} restart")
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(timeout=60)
            prober.close()
        assert not any(thread.is_alive() for thread in threads)

        page, webhook = outage["page"], outage["webhook"]
        assert (page.status_code, page.headers.get("retry-after")) == (503, "5")
        assert UNAVAILABLE in page.text and "Traceback" not in page.text
        assert webhook.status_code == 503 and webhook.json()["retry"] is True  # the provider sends it again

        health = httpx.get(f"{server}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["database"]["ok"]
        assert processes.started["server"].poll() is None and worker_pids(master) == workers

        # Every reserve the app answered "booked" is in the database, confirmed, the crash's recovery included.
        with seeding(url):
            from reservations.extensions import db

            rows = dict(db.session.execute(text("SELECT id, state FROM bookings")).all())
        assert load.booked and {rows.get(booking_id) for booking_id in load.booked} == {"confirmed"}
        assert len(set(load.booked)) == len(load.booked)

        # While the database was away: a clear 503 page, never a 500, never a traceback; nothing unanswered.
        assert load.failures == []
        errors = [(method, path, status) for method, path, status, _body in load.answers if status >= 500]
        assert {status for _m, _p, status in errors} <= {503}, (errors, processes.errors("server"))
        assert not any("Traceback" in body for *_, body in load.answers)


# --- the two seams the drill found, each shown on its own, deterministically ----------------------------

def outage_app(database_url: str):
    from reservations import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True, "SECRET_KEY": "test",
                       "WTF_CSRF_ENABLED": False, "RATELIMIT_STORAGE_URI": "memory://", "PAYMENTS_ENABLED": False,
                       "STRIPE_WEBHOOK_SECRET": DEV_STRIPE_WEBHOOK_SECRET})


def test_a_database_that_does_not_answer_gets_the_outage_page_and_the_provider_a_retry():
    app = outage_app(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nowhere")
    client = app.test_client()
    with client.session_transaction() as session:
        session["lang"] = "en"

    page = client.get("/")
    payload = event_payload("payment_intent.succeeded", {"id": "pi_drill", "object": "payment_intent"})
    event = client.post("/webhooks/stripe", data=payload, headers=signed(DEV_STRIPE_WEBHOOK_SECRET, payload))

    assert (page.status_code, page.headers["Retry-After"]) == (503, "5")
    assert UNAVAILABLE in page.get_data(as_text=True) and "Traceback" not in page.get_data(as_text=True)
    assert event.status_code == 503 and event.json == {"status": "error", "message": UNAVAILABLE, "retry": True}
    with app.app_context():
        from reservations.extensions import db

        db.engine.dispose()


def test_a_connection_the_database_ends_after_the_page_was_made_still_sends_the_page(database_urls):
    """A restart terminates the connection of a request whose page is ready: its session's end must not fail it."""
    from reservations.extensions import db

    app = outage_app(database_urls["postgresql"])
    ended = []

    def terminate_the_connection(sender, response, **extra):
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            ended.append(admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0])

    request_finished.connect(terminate_the_connection, app)
    try:
        page = app.test_client().get("/")
    finally:
        request_finished.disconnect(terminate_the_connection, app)

    assert ended == [True] and page.status_code == 200
    with app.app_context():
        assert db.session.execute(text("SELECT 1")).scalar() == 1  # the pool's next connection is a live one
        db.session.remove()
        db.engine.dispose()


def _backend_pid(app) -> int:
    from reservations.extensions import db

    with app.app_context():
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        db.session.remove()
    return pid


def test_a_pooled_connection_is_pinged_only_once_the_server_has_ended_it(database_urls, monkeypatch):
    """reservations/pool.py: a live idle connection is handed out without a round trip; one whose backend was
    terminated while it sat in the pool is found out at checkout and replaced, and the request never sees it."""
    from reservations.extensions import db

    app = outage_app(database_urls["postgresql"])
    with app.app_context():
        engine = db.engine
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real_ping(conn))
    try:
        first = _backend_pid(app)
        assert _backend_pid(app) == first and pings == []  # the same live connection, never pinged

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone()[0]
            # pg_terminate_backend returns once the signal is sent: wait for the backend to be gone.
            wait_until(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                             (first,)).fetchone()[0] == 0, timeout=10)

        second = _backend_pid(app)  # no OperationalError: the dead connection was replaced before use
        assert second != first and len(pings) == 1
        assert _backend_pid(app) == second and len(pings) == 1
    finally:
        with app.app_context():
            db.engine.dispose()
