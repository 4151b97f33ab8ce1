"""/healthz: is this app server fit to serve? For a load balancer and an operator; no sign-in, no secrets.

It reports the database (a `SELECT 1`, every time) and the payment provider (one cheap authenticated read,
at most once per HEALTH_PROVIDER_TTL seconds per process, so a probe every second costs the provider
nothing), each with its latency. The answer is 200 while the database answers, "degraded" when only the
provider does not (calendars and bookings still work; payments wait), and 503 when the database does not.
Errors are named by their kind only: no address, key or message from the driver reaches the page.
"""
import threading
import time

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .extensions import db, limiter
from .payments import GatewayError, get_gateway

bp = Blueprint("health", __name__)

_provider_lock = threading.Lock()


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        check()
        ok, error = True, None
    except Exception as exc:  # noqa: BLE001 (any failure is "not healthy"; its kind is reported, not its text)
        ok, error = False, type(exc).__name__
    result = {"ok": ok, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if error:
        result["error"] = error
    return result


def _database() -> dict:
    def check():
        db.session.execute(text("SELECT 1"))

    try:
        return _timed(check)
    finally:
        db.session.rollback()


def _provider() -> dict:
    """The provider's last check, made again when older than HEALTH_PROVIDER_TTL (one request at a time)."""
    if not current_app.config["PAYMENTS_ENABLED"]:
        return {"ok": True, "checked": "payments are off"}
    cache = current_app.extensions.setdefault("health_provider", {})
    ttl = current_app.config["HEALTH_PROVIDER_TTL"]
    with _provider_lock:
        if cache.get("at") is None or time.monotonic() - cache["at"] >= ttl:
            def check():
                try:
                    get_gateway().ping()
                except GatewayError as exc:
                    raise ProviderDown(exc.code or "unreachable") from exc
            cache["result"], cache["at"] = _timed(check), time.monotonic()
        age = time.monotonic() - cache["at"]
    return {**cache["result"], "age_s": round(age, 1)}


class ProviderDown(Exception):
    pass


@bp.get("/healthz")
@limiter.exempt
def healthz():
    database = _database()
    provider = _provider() if database["ok"] else {"ok": False, "error": "not checked"}
    status = "ok" if database["ok"] and provider["ok"] else ("degraded" if database["ok"] else "down")
    response = jsonify(status=status, database=database, provider=provider)
    response.status_code = 200 if database["ok"] else 503
    response.headers["Cache-Control"] = "no-store"
    return response
