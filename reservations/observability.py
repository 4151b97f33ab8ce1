"""Operations: Prometheus metrics at /metrics, and one structured log line per request and per job run.

Metrics (prometheus-client, one module registry; tests assert on deltas):

- `reservations_http_request_duration_seconds{endpoint, method, status}`: each request's latency, by
  Flask endpoint name (never the raw path: the labels stay bounded), method and status class ("2xx");
- `reservations_holds_placed_total`, `reservations_confirmations_total`,
  `reservations_releases_total{state, was}` (state expired|cancelled, was: the state before) and
  `reservations_refunds_total{via}` (provider | counter | external): counted from the audit trail, where
  every state change writes an entry, and only once the transaction that wrote it commits: a hold rolled
  back, or made in a savepoint that rolled back (a lottery bundle let whole or not at all), never counts;
- `reservations_job_runs_total{job, outcome}` (ok | failed) and `reservations_job_duration_seconds{job}`;
- `reservations_provider_errors_total{kind, code}`: the gateway's classification (unreachable, transient,
  declined, permanent) and the provider's code (a documented, bounded list);
- `reservations_rate_limit_hits_total{endpoint}`: each 429 the limits answered.

Several processes: gunicorn runs several workers, and the scheduler (`flask jobs run`) is a process of its
own. The operator sets PROMETHEUS_MULTIPROC_DIR (deploy/: /run/reservations/metrics) in the environment of
every unit, the app's and the scheduler's, before Python starts: prometheus-client picks its storage when it
is imported. Each process then writes its figures to files there, and /metrics adds up all of them
(MultiProcessCollector), so a scrape sees every worker and the scheduler's job runs. Without it, /metrics
shows this process alone (development, tests).

/metrics answers only a request with `Authorization: Bearer <METRICS_TOKEN>` or from an address in
METRICS_ALLOW (CIDRs, loopback by default); anyone else gets the site's 404. It is GET only (so no CSRF
token) and has no rate limit. The address is the one the app sees: behind a proxy without
PROXY_FIX_X_FORWARDED that is the proxy's own, so the proxy must not pass /metrics on from outside.

Logs: one line per request on the `reservations.requests` logger, and one per job run on
`reservations.jobs`, as JSON (LOG_FORMAT=json, the default in production) or key=value text (development).
A request's id comes from a sane incoming X-Request-ID (at most 64 of A-Z a-z 0-9 . _ -) or is a new
uuid4; it is echoed in the response's X-Request-ID and put on every record logged during the request. A job
run's id is its job_runs row. Paths are logged without their query string, and tokens in a path (a payment
link, a reset link, a calendar feed) are replaced by `<token>`.
"""
import hmac
import ipaddress
import json
import logging
import os
import re
import sys
import time
import uuid
from collections import Counter as CountOf
from collections.abc import Iterable
from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, abort, current_app, g, has_app_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from .extensions import limiter

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = CollectorRegistry()
if os.environ.get(MULTIPROC_ENV):
    # Before the first metric below: a metric without labels opens its file as it is made.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
else:  # in multiprocess mode one process's own figures mean little
    ProcessCollector(registry=REGISTRY)
    PlatformCollector(registry=REGISTRY)

REQUEST_SECONDS = Histogram(
    "reservations_http_request_duration_seconds", "Time to answer a request, by Flask endpoint.",
    ["endpoint", "method", "status"], registry=REGISTRY)
HOLDS = Counter("reservations_holds_placed", "Holds placed (committed).", registry=REGISTRY)
CONFIRMATIONS = Counter("reservations_confirmations", "Bookings confirmed (committed).", registry=REGISTRY)
RELEASES = Counter("reservations_releases", "Bookings that let their slot go: expired or cancelled.",
                   ["state", "was"], registry=REGISTRY)
REFUNDS = Counter("reservations_refunds", "Refunds made: through the provider, at the counter, or found there.",
                  ["via"], registry=REGISTRY)
JOB_RUNS = Counter("reservations_job_runs", "Job runs, by job and outcome.", ["job", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram("reservations_job_duration_seconds", "Time a job run took.", ["job"], registry=REGISTRY,
                        buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, float("inf")))
PROVIDER_ERRORS = Counter("reservations_provider_errors", "Errors from the payment provider, by kind and code.",
                          ["kind", "code"], registry=REGISTRY)
RATE_LIMIT_HITS = Counter("reservations_rate_limit_hits", "Requests refused by a rate limit (429).", ["endpoint"],
                          registry=REGISTRY)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Path arguments that are secrets: the payment link, the e-mail and reset links, a room's calendar feed.
SECRET_PATH_ARGS = frozenset({"token"})
REQUEST_LOGGER = "reservations.requests"
JOB_LOGGER = "reservations.jobs"

bp = Blueprint("observability", __name__)


def init_app(app: Flask) -> None:
    """Settings checked, the request hooks, and the log handler (one per process, in this app's format)."""
    import config as settings

    problems = {}
    try:
        app.extensions["metrics_allow"] = parse_networks(app.config["METRICS_ALLOW"])
    except ValueError as exc:
        problems["METRICS_ALLOW"] = f"is not a comma-separated list of addresses or CIDRs: {exc}"
    style = log_format(app.config)
    if style not in ("json", "text"):
        problems["LOG_FORMAT"] = f"{style!r} is not json or text"
    if problems:
        lines = "\n".join(f"  {name}: {why}" for name, why in problems.items())
        raise settings.ConfigError(f"Observability settings to fix:\n{lines}", problems)
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)  # first: before the rate limits
    app.after_request(_finish_request)
    _install_handler(app, style)


# -- /metrics --------------------------------------------------------------------------------------

def parse_networks(value: str | Iterable[str]) -> tuple:
    items = value.split(",") if isinstance(value, str) else value
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def _may_scrape() -> bool:
    token = current_app.config.get("METRICS_TOKEN") or ""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in current_app.extensions["metrics_allow"])


@bp.get("/metrics")
@limiter.exempt
def metrics():
    if not _may_scrape():
        abort(404)  # as if there were nothing here
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    response = Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


# -- what the rest of the app reports ------------------------------------------------------------------

def rate_limit_hit() -> None:
    """Called by the 429 handler (views.too_many_requests)."""
    RATE_LIMIT_HITS.labels(endpoint=request.endpoint or "unmatched").inc()


def provider_error(error) -> None:
    """Called where the Stripe gateway classifies a provider error (stripe_gateway._call)."""
    from .payments import CardDeclined, ProviderUnreachable

    if isinstance(error, ProviderUnreachable):
        kind = "unreachable"
    elif isinstance(error, CardDeclined):
        kind = "declined"
    else:
        kind = "transient" if error.transient else "permanent"
    PROVIDER_ERRORS.labels(kind=kind, code=(error.code or "none")[:64]).inc()


def bind_request_id(value) -> object:
    """Make `value` the request id of what is logged in this app context (a job run's id); returns the old one."""
    previous = g.get("request_id")
    g.request_id = str(value)
    return previous


def restore_request_id(previous) -> None:
    if previous is None:
        g.pop("request_id", None)
    else:
        g.request_id = previous


def job_ran(job_id: str, run_id: int, outcome: str, seconds: float, result: object = None, *,
            failed: bool = False) -> None:
    """The job run's metrics and its one log line (with the traceback when it failed)."""
    JOB_RUNS.labels(job=job_id, outcome=outcome).inc()
    JOB_SECONDS.labels(job=job_id).observe(seconds)
    fields = {"job": job_id, "run_id": run_id, "outcome": outcome, "duration_ms": round(seconds * 1000, 1),
              "counts": result if isinstance(result, dict) else ({} if result is None else {"result": str(result)})}
    logging.getLogger(JOB_LOGGER).log(logging.ERROR if failed else logging.INFO, "job %s %s", job_id, outcome,
                                      exc_info=failed, extra={"fields": fields, "request_id": str(run_id)})


# -- business counters from the audit trail, on commit ------------------------------------------------

AUDIT_TABLE = "audit_entries"
_PENDING = "observability.audit"
REFUND_ACTIONS = {"refund requested": "provider", "refund paid out at the counter": "counter",
                  "refund recorded from the provider": "external"}


def count_audit_action(subject: str, action: str, n: int = 1) -> None:
    """n committed audit entries of one (subject, action), counted if it is one of the business events."""
    if subject == "booking":
        if action == "held":
            HOLDS.inc(n)
        elif action == "confirmed" or action.endswith("->confirmed"):  # "confirmed": a booking made by a move
            CONFIRMATIONS.inc(n)
        elif "->" in action:
            was, _, state = action.partition("->")
            if state in ("expired", "cancelled"):
                RELEASES.labels(state=state, was=was).inc(n)
    elif subject == "payment" and action in REFUND_ACTIONS:
        REFUNDS.labels(via=REFUND_ACTIONS[action]).inc(n)


def _transaction(session: Session):
    return session.get_nested_transaction() or session.get_transaction()


def _pend(session: Session, entries: CountOf) -> None:
    """Keep the entries a transaction wrote, by (subject, action), until it commits (or rolls back)."""
    if entries:
        session.info.setdefault(_PENDING, []).append((_transaction(session), entries))


def pend_audit_entries(session: Session, subject: str, action: str, n: int) -> None:
    """n audit entries of one (subject, action) written by SQL the hooks below cannot read (INSERT ... SELECT):
    counted like the others, once the transaction that wrote them commits."""
    if n:
        _pend(session, CountOf({(subject, action): n}))


@event.listens_for(Session, "after_flush")
def _entries_flushed(session: Session, _context) -> None:
    _pend(session, CountOf((obj.subject, obj.action) for obj in session.new
                           if getattr(obj, "__tablename__", "") == AUDIT_TABLE))


@event.listens_for(Session, "do_orm_execute")
def _entries_inserted(state) -> None:
    """The bulk INSERTs of rows (session.execute(insert(AuditEntry), [rows]))."""
    if not state.is_insert or getattr(state.statement.table, "name", None) != AUDIT_TABLE:
        return
    rows = state.parameters
    rows = [rows] if isinstance(rows, dict) else (rows or [])
    _pend(state.session, CountOf((row.get("subject"), row.get("action")) for row in rows))


@event.listens_for(Session, "after_soft_rollback")
def _entries_rolled_back(session: Session, previous_transaction) -> None:
    """Drop what the rolled-back transaction (the whole one, or a savepoint and what lay inside it) wrote."""
    pending = session.info.get(_PENDING)
    if not pending:
        return
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)
        return

    def inside(transaction) -> bool:
        while transaction is not None:
            if transaction is previous_transaction:
                return True
            transaction = transaction.parent
        return False

    session.info[_PENDING] = [item for item in pending if not inside(item[0])]


@event.listens_for(Session, "after_commit")
def _entries_committed(session: Session) -> None:
    """One inc(n) per (subject, action), not one per entry: the expiry job commits thousands at once."""
    committed = CountOf()
    for _, entries in session.info.pop(_PENDING, []):
        committed.update(entries)
    for (subject, action), n in committed.items():
        count_audit_action(subject, action, n)


# -- requests --------------------------------------------------------------------------------------

def _start_request() -> None:
    g.request_started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def _finish_request(response: Response) -> Response:
    started = g.get("request_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    endpoint = request.endpoint
    method = request.method if request.method in METHODS else "other"
    REQUEST_SECONDS.labels(endpoint=endpoint or "unmatched", method=method,
                           status=f"{response.status_code // 100}xx").observe(seconds)
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers["X-Request-ID"] = request_id
    user = g.get("_login_user")  # only a user the request already loaded: logging costs no query
    fields = {"method": method, "endpoint": endpoint, "path": logged_path(), "status": response.status_code,
              "duration_ms": round(seconds * 1000, 1),
              "user_id": _user_id(user),
              "remote_addr": request.remote_addr}
    logging.getLogger(REQUEST_LOGGER).info("request", extra={"fields": fields, "request_id": request_id})
    return response


def _user_id(user) -> int | None:
    """The signed-in user's id from the session's identity map: `user.id` would read the row again once the
    request's commit has expired it (one more SELECT per request)."""
    state = sa_inspect(user, raiseerr=False) if user is not None else None
    identity = state.identity if state is not None else None
    return identity[0] if identity else None


def logged_path() -> str:
    """The path without its query string, a secret path argument replaced by `<token>`."""
    path = request.path
    for name, value in (request.view_args or {}).items():
        if name in SECRET_PATH_ARGS and isinstance(value, str) and value:
            path = path.replace(value, "<token>")
    return path


# -- the log handler ---------------------------------------------------------------------------------

class RequestIdFilter(logging.Filter):
    """Every record logged in a request (or a job run) carries its id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = g.get("request_id") if has_app_context() else None
        return True


class StructuredFormatter(logging.Formatter):
    def __init__(self, style: str):
        super().__init__()
        self.style_name = style

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name,
                "request_id": getattr(record, "request_id", None), "msg": record.getMessage()}
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if self.style_name == "json":
            return json.dumps(line, ensure_ascii=False, default=str)
        return " ".join(f"{key}={_text_value(value)}" for key, value in line.items())


def _text_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        value = " ".join(f"{k}={v}" for k, v in sorted(value.items()))
    value = str(value)
    if not value or re.search(r'[\s"=]', value):
        return json.dumps(value, ensure_ascii=False)
    return value


class _StderrHandler(logging.StreamHandler):
    """The stderr of the moment (gunicorn's and journald's; pytest's capture in the tests)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def log_format(config) -> str:
    """LOG_FORMAT, or its default: json in production, text otherwise."""
    return config.get("LOG_FORMAT") or ("json" if config["APP_ENV"] == "production" else "text")


def _install_handler(app: Flask, style: str) -> None:
    """Our handler on the app's logger (`reservations`), in place of Flask's, unless logging is configured already.

    As Flask does with its own: when the process has a handler for these records (gunicorn --log-config, a
    dictConfig, pytest), the records go there instead, and carry the same fields (`fields`, `request_id`) for
    a StructuredFormatter to write. A new app replaces the last one's handler: there is one per process.
    """
    from flask.logging import default_handler, has_level_handler

    logger = app.logger
    logger.removeHandler(default_handler)  # its plain lines would repeat ours
    for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(old)
    for old in [f for f in logger.filters if isinstance(f, RequestIdFilter)]:
        logger.removeFilter(old)
    logger.addFilter(RequestIdFilter())  # what the app logs itself; the handler's filter covers the child loggers
    # The request and job lines are INFO, and would otherwise inherit WARNING from the root logger.
    for name in (REQUEST_LOGGER, JOB_LOGGER):
        logging.getLogger(name).setLevel(logging.INFO)
    if has_level_handler(logger):
        return
    handler = _StderrHandler()
    handler.setFormatter(StructuredFormatter(style))
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
