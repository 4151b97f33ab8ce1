"""One structured log line per request and per job run, each with its id.

Under pytest the records go to pytest's own handler (as to any handler a process configures), so each test
reads the records and writes them with the app's formatter; tests/test_metrics.py's multiprocess drill reads
the lines a process without logging set up writes to its stderr.
"""
import json
import re
from datetime import timedelta

import pytest
from flask import current_app
from sqlalchemy import select

from reservations import create_app
from reservations.extensions import db
from reservations.jobs import JOBS, run_job
from reservations.models import JobRun
from reservations.observability import StructuredFormatter, log_format
from reservations.timeutil import now_utc
from tests.helpers import book

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def app_config(app_config):
    return {**app_config, "LOG_FORMAT": "json"}


def json_lines(caplog, logger: str) -> list[dict]:
    formatter = StructuredFormatter(log_format(current_app.config))
    return [json.loads(formatter.format(record)) for record in caplog.records if record.name == logger]


def request_lines(caplog) -> list[dict]:
    return json_lines(caplog, "reservations.requests")


def test_each_request_logs_one_line_with_its_fields_and_keeps_a_sane_request_id(client, login_as, resident,
                                                                                 caplog):
    login_as(resident)
    caplog.clear()
    response = client.get("/bookings?page=1&token=secret-in-the-query", headers={"X-Request-ID": "edge-7f3a.9_Z"})

    assert response.headers["X-Request-ID"] == "edge-7f3a.9_Z"
    [line] = request_lines(caplog)
    assert line["request_id"] == "edge-7f3a.9_Z"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/bookings", response.status_code)
    assert line["endpoint"] == "bookings.mine" and response.status_code == 200
    assert line["user_id"] == resident.id and line["remote_addr"] == "127.0.0.1"
    assert line["level"] == "info" and line["time"].endswith("+00:00")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "secret-in-the-query" not in json.dumps(line) and resident.email not in json.dumps(line)


def test_an_insane_request_id_is_replaced_by_a_new_one(client, caplog):
    for incoming in ("a" * 65, "two words", "<script>", "id\u00e9", "semi;colon=1", ""):
        caplog.clear()
        response = client.get("/", headers={"X-Request-ID": incoming} if incoming else {})

        [line] = request_lines(caplog)
        assert HEX_ID.fullmatch(response.headers["X-Request-ID"]), incoming
        assert line["request_id"] == response.headers["X-Request-ID"]
        assert incoming == "" or incoming not in json.dumps(line, ensure_ascii=False)


def test_a_token_in_the_path_is_not_logged_and_errors_log_one_line_too(client, caplog):
    client.get("/account/reset/a-reset-token-that-is-a-secret")
    client.get("/no/such/page?token=x")

    reset, missing = request_lines(caplog)
    assert reset["path"] == "/account/reset/<token>" and reset["endpoint"] == "account.reset_password"
    assert (missing["path"], missing["status"], missing["endpoint"]) == ("/no/such/page", 404, None)
    assert reset["request_id"] != missing["request_id"]


def test_what_a_request_logs_carries_its_request_id(app, client, caplog):
    @app.get("/_test/logs-a-warning")
    def logs_a_warning():
        current_app.logger.warning("something worth a look")
        return "ok"

    response = client.get("/_test/logs-a-warning", headers={"X-Request-ID": "req-42"})

    [warning] = json_lines(caplog, "reservations")
    assert (warning["msg"], warning["level"], warning["request_id"]) == ("something worth a look", "warning", "req-42")
    assert response.headers["X-Request-ID"] == "req-42"


def test_text_lines_are_key_value_pairs(app_config, database_urls, backend, caplog):
    development = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": database_urls[backend], "LOG_FORMAT": ""})
    try:
        development.test_client().get("/?q=1", headers={"X-Request-ID": "abc"})
        style = log_format(development.config)
    finally:
        with development.app_context():
            db.engine.dispose()

    assert style == "text"  # the default outside production
    [record] = [r for r in caplog.records if r.name == "reservations.requests"]
    line = StructuredFormatter(style).format(record)
    assert re.match(r"time=\S+ level=info logger=reservations.requests request_id=abc msg=request method=GET "
                    r"endpoint=public.index path=/ status=200 duration_ms=[0-9.]+ user_id=- remote_addr=127.0.0.1$",
                    line), line


@pytest.mark.payments
def test_a_job_run_logs_one_line_with_its_run_id_as_request_id(app, localstripe, room, resident, caplog):
    book(resident, room, now=now_utc() - timedelta(minutes=11))
    job = {j.id: j for j in JOBS}["release_expired_holds"]
    caplog.clear()

    run_job(job)

    [line] = json_lines(caplog, "reservations.jobs")
    [run_id] = db.session.scalars(select(JobRun.id)).all()
    assert line["request_id"] == str(run_id) and line["run_id"] == run_id
    assert (line["job"], line["outcome"], line["counts"]) == ("release_expired_holds", "ok", {"released": 1})
    assert line["duration_ms"] >= 0 and line["level"] == "info"
