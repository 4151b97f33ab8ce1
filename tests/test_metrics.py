"""/metrics: who may read it, and what it counts.

The metrics live in one registry per process (reservations.observability.REGISTRY), shared by every app
the suite makes, so each test asserts on the change it caused, never on a total.
"""
import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from config import ConfigError
from reservations import create_app, observability
from reservations.extensions import db
from reservations.jobs import JOBS, Job, run_job
from reservations.payments import GatewayError, ProviderUnreachable, get_gateway
from reservations.services import checkout, refunds
from reservations.services.booking import reserve
from reservations.services.cancellation import cancel_booking
from reservations.services.rules import division_slot
from reservations.timeutil import now_utc
from tests.helpers import book, booking_day, provider_down

TOKEN = "metrics-token-for-the-tests-0123456789"
OUTSIDE = {"REMOTE_ADDR": "203.0.113.5"}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "METRICS_TOKEN": TOKEN}


def value(name: str, **labels) -> float:
    return observability.REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """The change of a few samples across a block: `with Delta(a, b) as d: ...`, then `d[a]`."""

    def __init__(self, *samples: tuple):
        self.samples = samples

    def __enter__(self):
        self.before = {s: value(s[0], **dict(s[1:])) for s in self.samples}
        return self

    def __exit__(self, *exc):
        self.after = {s: value(s[0], **dict(s[1:])) for s in self.samples}

    def __getitem__(self, key: tuple) -> float:
        return self.after[key] - self.before[key]


def sample(name: str, **labels) -> tuple:
    return (name, *sorted(labels.items()))


def test_metrics_answer_the_token_or_the_allow_list_and_nobody_else(client):
    assert client.get("/metrics", environ_overrides=OUTSIDE).status_code == 404
    for wrong in ("Bearer nope", f"Bearer {TOKEN}x", "Bearer ", TOKEN, f"Basic {TOKEN}"):
        refused = client.get("/metrics", headers={"Authorization": wrong}, environ_overrides=OUTSIDE)
        assert refused.status_code == 404, wrong
    assert b"reservations_" not in refused.data  # the site's own 404 page: nothing says metrics live here

    answered = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, environ_overrides=OUTSIDE)
    assert answered.status_code == 200
    assert answered.mimetype == "text/plain" and answered.headers["Cache-Control"] == "no-store"
    assert b"# TYPE reservations_http_request_duration_seconds histogram" in answered.data
    assert TOKEN.encode() not in answered.data
    # Loopback is the default allow-list: a scraper on the app server needs no token.
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_overrides={"REMOTE_ADDR": "::1"}).status_code == 200
    # No CSRF token or rate limit stands in the way of a scraper, but it only reads.
    assert client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_the_allow_list_is_a_list_of_networks_and_a_bad_one_stops_the_app(app, app_config, database_urls, backend):
    settings = {**app_config, "SQLALCHEMY_DATABASE_URI": database_urls[backend], "METRICS_TOKEN": "",
                "METRICS_ALLOW": "10.0.0.0/8, 2001:db8::/32"}
    listed = create_app(settings)  # no token: only the allow-list works
    try:
        client = listed.test_client()
        assert client.get("/metrics", environ_overrides={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
        assert client.get("/metrics", environ_overrides={"REMOTE_ADDR": "2001:db8::7"}).status_code == 200
        assert client.get("/metrics").status_code == 404  # loopback is no longer listed
        assert client.get("/metrics", headers={"Authorization": "Bearer "},
                          environ_overrides={"REMOTE_ADDR": "11.0.0.1"}).status_code == 404
    finally:
        with listed.app_context():
            db.engine.dispose()
    with pytest.raises(ConfigError) as refused:
        create_app({**settings, "METRICS_ALLOW": "10.0.0.0/33"})
    assert "METRICS_ALLOW" in refused.value.problems


def test_a_request_lands_in_the_latency_histogram_under_its_endpoint(client, room):
    index = dict(endpoint="public.index", method="GET", status="2xx")
    unmatched = dict(endpoint="unmatched", method="GET", status="4xx")
    odd = dict(endpoint="unmatched", method="other", status="4xx")
    with Delta(sample("reservations_http_request_duration_seconds_count", **index),
               sample("reservations_http_request_duration_seconds_sum", **index),
               sample("reservations_http_request_duration_seconds_count", **unmatched),
               sample("reservations_http_request_duration_seconds_count", **odd)) as delta:
        assert client.get("/?ignored=1").status_code == 200
        assert client.get("/no/such/page/42").status_code == 404
        assert client.open("/no/such/page/43", method="BREW").status_code in (404, 405)
    assert delta[sample("reservations_http_request_duration_seconds_count", **index)] == 1
    assert delta[sample("reservations_http_request_duration_seconds_sum", **index)] > 0
    # Unknown paths and methods share one label each: a scanner cannot grow the series.
    assert delta[sample("reservations_http_request_duration_seconds_count", **unmatched)] == 1
    assert delta[sample("reservations_http_request_duration_seconds_count", **odd)] == 1


@pytest.mark.payments
def test_a_committed_hold_counts_once_and_a_rolled_back_one_not_at_all(app, localstripe, room, resident, now):
    holds = sample("reservations_holds_placed_total")
    with Delta(holds) as committed:
        book(resident, room, now=now)
    assert committed[holds] == 1

    with Delta(holds) as rolled_back:
        reserve(resident, room, division_slot(room, booking_day(), ["AFTERNOON"]), now=now)
        db.session.flush()  # written to the database, then undone
        db.session.rollback()
    assert rolled_back[holds] == 0


@pytest.mark.payments
def test_a_cancelled_hold_counts_as_a_release(app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    released = sample("reservations_releases_total", state="cancelled", was="held")
    with Delta(released) as delta:
        cancel_booking(booking, resident, now=now)
        db.session.commit()
    assert delta[released] == 1


@pytest.mark.payments
def test_a_confirmation_and_a_refund_each_count(app, localstripe, room, resident, now):
    confirmations = sample("reservations_confirmations_total")
    by_provider = sample("reservations_refunds_total", via="provider")
    booking = book(resident, room, now=now)
    with Delta(confirmations) as paid:
        assert checkout.pay(booking.payment, token=localstripe.card_token(), now=now)[0] == "confirmed"
        db.session.commit()
    assert paid[confirmations] == 1

    with Delta(by_provider, confirmations) as refunded:
        refunds.refund(booking.payment, 1000, reason="test")
        db.session.commit()
    assert refunded[by_provider] == 1 and refunded[confirmations] == 0


@pytest.mark.payments
def test_the_expiry_job_counts_its_releases_and_its_run(app, localstripe, room, make_user):
    lapsed = now_utc() - timedelta(minutes=11)
    for code in ("MORNING", "AFTERNOON"):
        book(make_user(), room, (code,), now=lapsed)
    job = {j.id: j for j in JOBS}["release_expired_holds"]
    expired = sample("reservations_releases_total", state="expired", was="held")
    runs = sample("reservations_job_runs_total", job=job.id, outcome="ok")
    timed = sample("reservations_job_duration_seconds_count", job=job.id)
    with Delta(expired, runs, timed) as delta:
        result = run_job(job)
    assert result == {"released": 2}, result
    assert (delta[expired], delta[runs], delta[timed]) == (2, 1, 1)


def test_a_failed_job_run_counts_as_failed_with_its_duration(app):
    def broken():
        raise RuntimeError("boom")

    failing = Job("broken_for_metrics", broken, 60)
    failed = sample("reservations_job_runs_total", job=failing.id, outcome="failed")
    timed = sample("reservations_job_duration_seconds_count", job=failing.id)
    spent = sample("reservations_job_duration_seconds_sum", job=failing.id)
    with Delta(failed, timed, spent) as delta, pytest.raises(RuntimeError):
        run_job(failing)
    assert delta[failed] == 1 and delta[timed] == 1 and delta[spent] >= 0


def test_a_refused_attempt_counts_as_a_rate_limit_hit_of_its_endpoint(app, client, english):
    app.config["RATELIMIT_LOGIN_IP"] = "1 per hour"
    hits = sample("reservations_rate_limit_hits_total", endpoint="account.login")
    with Delta(hits) as delta:
        statuses = [client.post("/account/login", data={"email": f"x{n}@example.com", "password": "wrong"},
                                environ_overrides={"REMOTE_ADDR": "198.51.100.9"}).status_code for n in range(3)]
    assert statuses[0] != 429 and statuses[1:] == [429, 429]
    assert delta[hits] == 2


@pytest.mark.payments
def test_provider_errors_count_by_kind_and_code(app, localstripe):
    unreachable = sample("reservations_provider_errors_total", kind="unreachable", code="unreachable")
    with Delta(unreachable) as down:
        with provider_down(app), pytest.raises(ProviderUnreachable):
            get_gateway().ping()
    assert down[unreachable] == 1

    with pytest.raises(GatewayError) as refused:
        get_gateway().retrieve_intent("pi_no_such_intent_for_the_metrics_test")
    assert not refused.value.transient
    permanent = value("reservations_provider_errors_total", kind="permanent", code=refused.value.code)
    assert permanent >= 1


MULTIPROCESS_DRILL = textwrap.dedent("""
    import os, sys
    os.environ["APP_ENV"] = "test"
    from reservations import create_app
    app = create_app({"TESTING": True, "SECRET_KEY": "test", "SQLALCHEMY_DATABASE_URI": sys.argv[1],
                      "RATELIMIT_STORAGE_URI": "memory://", "LOG_FORMAT": "json"})
    client = app.test_client()
    client.get("/no/such/page")
    pid = os.fork()  # a second worker, as gunicorn forks them
    if pid == 0:
        client.get("/no/such/page")
        client.get("/no/such/page")
        os._exit(0)
    os.waitpid(pid, 0)
    sys.stdout.write(client.get("/metrics").get_data(as_text=True))
""")


def test_with_a_multiprocess_directory_a_scrape_adds_up_every_process(database_urls, tmp_path):
    """PostgreSQL or SQLite makes no difference here: SQLite only, in a process of its own, because
    prometheus-client picks its multiprocess storage when it is imported."""
    metrics_dir = tmp_path / "metrics"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", MULTIPROCESS_DRILL, database_urls["sqlite"]], env=env,
                          capture_output=True, text=True, timeout=60, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    line = 'reservations_http_request_duration_seconds_count{endpoint="unmatched",method="GET",status="4xx"}'
    [count] = [row.rsplit(" ", 1)[1] for row in done.stdout.splitlines() if row.startswith(line)]
    assert float(count) == 3  # one in the parent, two in the forked worker
    assert len(list(metrics_dir.glob("histogram_*.db"))) == 2
    # Where no logging is set up, as under gunicorn, each request wrote its one JSON line to stderr.
    lines = [json.loads(row) for row in done.stderr.splitlines() if row.startswith("{")]
    assert [(line["logger"], line["path"], line["status"]) for line in lines] == [
        ("reservations.requests", "/no/such/page", 404)] * 3 + [("reservations.requests", "/metrics", 200)]
    assert len({line["request_id"] for line in lines}) == 4
