"""Fixtures of the process drills: real gunicorn servers, real schedulers, child processes, a private PostgreSQL.

Everything here is opt-in (plain fixtures, none autouse): the in-process drills beside these files use only
tests/conftest.py. The process drills are PostgreSQL-only: several app servers and schedulers against one
database is PostgreSQL's deployment shape (SQLite is one file on one machine).

Every process is started in a session of its own (so gunicorn's workers go with their master) and is
stopped in the fixture's finaliser, first with SIGINT, then with SIGKILL, whatever the test's outcome.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import FAST_PASSWORD_HASH, PG_ADMIN_URL, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def wait_until(condition, *, timeout: float, interval: float = 0.05, what: str = "the condition"):
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}", pytrace=False)
        time.sleep(interval)


class Processes:
    """The processes one test started, each logging to a file of its own; all stopped at the end."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict, **kwargs) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 (the child writes to it until it stops)
        try:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, **kwargs)
        finally:
            log.close()  # the child holds its own copy
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def errors(self, name: str) -> list[str]:
        """What the process logged as an error: each record's first line and the exception it ended with."""
        found = []
        for record in re.split(r"\n(?=time=|\[\d{4}-)", self.log(name)):
            if "level=error" in record or "[ERROR]" in record or "Traceback" in record:
                lines = record.replace("\\n", "\n").splitlines()
                ends = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Shutdown)", line)]
                last = ends[-1] if ends else ""
                found.append(f"{lines[0][:300]} ... {last[:300]}")
        return found

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the process and everything in its session (gunicorn's workers), and reap it."""
        proc = self.started[name]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        unique = {id(proc): (name, proc) for name, proc in self.started.items()}  # a retried start: one entry
        for name, proc in unique.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)  # gunicorn's quick shutdown; KeyboardInterrupt elsewhere
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill(name)
                except ProcessLookupError:
                    proc.wait(timeout=10)
            else:
                # The leader is gone; anything left in its session (a worker) goes too.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for _name, proc in unique.values():
            if proc.stdin:
                proc.stdin.close()
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture
def processes(tmp_path):
    started = Processes(tmp_path)
    yield started
    started.stop_all()


def app_env(database_url: str, tmp_path: Path, **settings) -> dict:
    """The environment of an app process (server, scheduler, flask command) in test mode.

    Payments are off unless the settings turn them on; the provider's address is a closed port unless
    given, so no process ever reaches a localstripe that happens to run on the development port.
    """
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTEST_", "FLASK_", "STRIPE_", "RATELIMIT_", "JOB_"))}
    env.update({
        "APP_ENV": "test", "FLASK_APP": "wsgi", "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url, "SECRET_KEY": "drills-secret-key-shared-by-every-process",
        "MAIL_BACKEND": "outbox", "MAIL_OUTBOX_DIR": str(tmp_path / "outbox"),
        "PAYMENTS_ENABLED": "0", "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
    })
    env.update({key: str(value) for key, value in settings.items()})
    return env


def flask(env: dict, *args: str, timeout: float = 120) -> str:
    """Run a `flask` command to its end; its output, or the test fails with it."""
    result = subprocess.run([str(BIN / "flask"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _admin(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@contextmanager
def created_database(admin_url: str, prefix: str):
    """A new, empty database on the server of `admin_url`, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"{prefix}_{WORKER}_{uuid.uuid4().hex[:8]}"
    _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield re.sub(r"/[^/]*$", f"/{name}", admin_url).replace("postgresql://", "postgresql+psycopg://")
    finally:
        try:
            _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.OperationalError:
            pass  # a private server already stopped: its whole folder goes


@pytest.fixture
def drill_database(tmp_path):
    """A fresh database on the shared PostgreSQL, built by `flask db upgrade` as a deployment builds it."""
    with created_database(PG_ADMIN_URL, "drill") as url:
        flask(app_env(url, tmp_path), "db", "upgrade")
        yield url


@contextmanager
def seeding(database_url: str, **config):
    """An app context in this process on `database_url`, to write the drill's rows and read the outcome.

    The accounts it makes get the suite's one-round hash, which any server checks quickly.
    """
    from reservations import create_app
    from reservations.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True, "SECRET_KEY": "seed",
                      "TESTING_PASSWORD_HASH_METHOD": FAST_PASSWORD_HASH, "RATELIMIT_STORAGE_URI": "memory://",
                      "PAYMENTS_ENABLED": False, **config})
    with app.app_context():
        try:
            yield app
        finally:
            db.session.rollback()
            db.session.remove()
            db.engine.dispose()


def start_gunicorn(processes: Processes, names: list[str], env: dict, *, workers: int = 2) -> list[str]:
    """`gunicorn wsgi:app` with sync workers, one per name, each on a free loopback port; their URLs once each
    /healthz answers 200. The servers boot at the same time."""
    def launch(name: str, attempt: int) -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = processes.start(f"{name}-{attempt}" if attempt else name, [
            str(BIN / "gunicorn"), "--workers", str(workers), "--worker-class", "sync", "--bind", f"127.0.0.1:{port}",
            "--timeout", "60", "--graceful-timeout", "5", "wsgi:app"], env)
        processes.started[name] = proc
        return proc, f"http://127.0.0.1:{port}"

    launched = {name: launch(name, 0) for name in names}
    urls = []
    for name in names:
        for attempt in range(1, 4):
            proc, url = launched[name]

            def up(proc=proc, url=url):
                if proc.poll() is not None:
                    return "exited"
                try:
                    return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            if wait_until(up, timeout=60, interval=0.1, what=f"gunicorn {name} to answer") != "exited":
                break
            launched[name] = launch(name, attempt)  # the port was taken meanwhile: another one
        else:
            pytest.fail(f"gunicorn {name} did not start:\n{processes.log(name)}", pytrace=False)
        urls.append(url)
    return urls


def worker_pids(master_pid: int) -> set[int]:
    """The pids of a gunicorn master's worker processes."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


# --- a private PostgreSQL cluster, for the restart drill ---------------------------------------------

class PrivateCluster:
    """A PostgreSQL server of this test alone (initdb in a temp folder), which the test may stop and crash."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.data = folder / "data"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *argv: str, timeout: float = 60) -> str:
        command = list(argv)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def pg_ctl(self, action: str, *options: str) -> str:
        return self._run(shutil.which("pg_ctl") or "pg_ctl", action, "-D", str(self.data), "-w", "-t", "60",
                         "-l", str(self.folder / "server.log"), *options)

    def init(self) -> None:
        self._run(shutil.which("initdb") or "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C")
        settings = (f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.folder}'\n"
                    "max_connections = 50\nshared_buffers = 32MB\nlog_min_messages = warning\n")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(settings)

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-m", mode)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster on a free port, owned by the postgres user when the tests run as root; removed after."""
    # Not under pytest's own temp folder: that is private to this user (0700), and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix=f"drill-pg-{WORKER}-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = PrivateCluster(folder, free_port())
    try:
        cluster.init()
        for _attempt in range(3):
            try:
                cluster.start()
                break
            except AssertionError:  # the port was taken meanwhile: another one (the last setting wins)
                cluster.port = free_port()
                cluster.admin_url = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
                with open(cluster.data / "postgresql.conf", "a") as conf:
                    conf.write(f"port = {cluster.port}\n")
        else:
            pytest.fail(f"the private PostgreSQL did not start:\n{(folder / 'server.log').read_text()}",
                        pytrace=False)
        yield cluster
    finally:
        if cluster.running():
            try:
                cluster.stop("immediate")
            except AssertionError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


# --- a resident in a browser, seen from the server's side --------------------------------------------

class Resident:
    """One resident's browser (its own cookies) signing in and reserving through the real pages and forms.

    Every answer is kept in `answers` as (method, path, status), for the 5xx checks.
    """

    def __init__(self, email: str, password: str = "correct horse", *, timeout: float = 30):
        self.email, self.password = email, password
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)
        self.answers: list[tuple[str, str, int]] = []

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, url: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, url, **kwargs)
        self.answers.append((method, httpx.URL(url).path, response.status_code))
        return response

    @staticmethod
    def _token(page: httpx.Response) -> str:
        found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
        assert found, f"no CSRF token on {page.request.url} ({page.status_code})"
        return found.group(1)

    def sign_in(self, server: str) -> httpx.Response:
        page = self._send("GET", f"{server}/account/login")
        answer = self._send("POST", f"{server}/account/login", data={
            "email": self.email, "password": self.password, "csrf_token": self._token(page)})
        assert answer.status_code == 302, f"{self.email} could not sign in: {answer.status_code}"
        return answer

    def review(self, server: str, room_id: int, day, code: str) -> dict:
        """The review page's reserve form: what the resident's click sends."""
        page = self._send("GET", f"{server}/rooms/{room_id}/book", params={"date": day.isoformat(), "divisions": code})
        assert page.status_code == 200, f"review page: {page.status_code} {page.headers.get('location')}"
        price = re.search(r'name="expected_price" value="(\d+)"', page.text)
        assert price, "no expected price on the review page"
        return {"csrf_token": self._token(page), "date": day.isoformat(), "divisions": code,
                "expected_price": price.group(1)}

    def reserve(self, server: str, room_id: int, form: dict) -> httpx.Response:
        return self._send("POST", f"{server}/rooms/{room_id}/book", data=form)


BOOKED = re.compile(r"^/bookings/(\d+)(/pay)?$")


def booked_id(response: httpx.Response) -> int | None:
    """The booking a reserve POST says it made (its redirect to the pay page or the booking's page), else None."""
    if response.status_code not in (302, 303):
        return None
    found = BOOKED.match(httpx.URL(response.headers["location"]).path)
    return int(found.group(1)) if found else None


def seed_rooms(count: int, *, prefix: str = "練習室") -> list[int]:
    """`count` rooms let in Chuo's three divisions, in one building; their ids. Inside `seeding`."""
    from reservations.extensions import db
    from reservations.models import Building, Division, Letting, Room
    from tests.conftest import CHUO_DIVISIONS

    building = Building(name="訓練会館", name_kana="クンレンカイカン", name_en="Drill hall",
                        address="東京都中央区1-1-1")
    rooms = []
    for n in range(count):
        room = Room(building=building, name=f"{prefix}{n + 1}", name_en=f"Room {n + 1}", kind="music_room",
                    capacity=30, letting=Letting.DIVISION)
        for pos, (code, start, end, weekday_fee, holiday_fee) in enumerate(CHUO_DIVISIONS):
            room.divisions.append(Division(code=code, position=pos, start_time=start, end_time=end,
                                           weekday_fee=weekday_fee, holiday_fee=holiday_fee))
        rooms.append(room)
    db.session.add_all([building, *rooms])
    db.session.commit()
    return [room.id for room in rooms]


def seed_residents(count: int, *, prefix: str = "drill") -> list[str]:
    """`count` verified residents (password "correct horse"); their addresses. Inside `seeding`."""
    from reservations.extensions import db
    from reservations.models import User
    from reservations.timeutil import now_utc

    emails = [f"{prefix}{n}@example.com" for n in range(count)]
    for email in emails:
        user = User(email=email, name="区民 太郎", email_verified_at=now_utc())
        user.set_password("correct horse")
        db.session.add(user)
    db.session.commit()
    return emails
