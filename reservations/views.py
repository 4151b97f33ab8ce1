"""Blueprints, the language switch and error pages."""
import time
from urllib.parse import urlparse

from flask import abort, current_app, g, jsonify, make_response, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, OperationalError

from .extensions import db, limiter
from .i18n import gettext as _

# The endpoints whose bodies are JSON: the payment page's fetch calls and the provider's events.
JSON_ENDPOINTS = frozenset({"bookings.pay", "bookings.pay_complete", "bookings.pay_by_link",
                            "bookings.pay_by_link_complete", "webhooks.stripe_events"})


def register(app) -> None:
    from .account import bp as account_bp
    from .admin import bp as admin_bp
    from .bookings import bp as bookings_bp
    from .feeds import bp as feeds_bp
    from .finance import bp as finance_bp
    from .groups import bp as groups_bp
    from .health import bp as health_bp
    from .lottery import bp as lottery_bp
    from .observability import bp as observability_bp
    from .observability import rate_limit_hit
    from .public import bp as public_bp
    from .staff import bp as staff_bp
    from .webhooks import bp as webhooks_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(bookings_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(staff_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(feeds_bp)
    app.register_blueprint(finance_bp)
    app.register_blueprint(groups_bp)
    app.register_blueprint(lottery_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(observability_bp)

    @app.before_request
    def forms_take_no_json():
        # Flask-WTF reads a JSON body as the form (MultiDict(request.get_json())), so a
        # list, a number, a nested value or a body nested thousands deep crashed inside
        # WTForms. Only the endpoints that speak JSON may be sent it.
        if request.is_json and request.endpoint not in JSON_ENDPOINTS and request.method not in ("GET", "HEAD"):
            abort(415)

    @app.errorhandler(415)
    def unsupported_media_type(exc):
        message = _("This form cannot be sent as JSON. Please use the page's form.")
        return jsonify(status="error", message=message, retry=False), 415

    @app.post("/lang/<code>")
    def set_language(code: str):
        if code in app.config["LANGUAGES"]:
            session["lang"] = code
        return redirect(safe_next(request.form.get("next")))

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        message = _("Your session expired or the form was tampered with. Please try again.")
        if request.is_json:  # the payment page's fetch calls show this in their alert
            return jsonify(status="error", message=message, retry=False), 400
        return render_template("error.html", message=message), 400

    @app.errorhandler(403)
    def forbidden(exc):
        return render_template("error.html", message=_("This page is for facility staff.")), 403

    @app.errorhandler(404)
    def not_found(exc):
        return render_template("error.html", message=_("Not found.")), 404

    @app.errorhandler(405)
    def method_not_allowed(exc):
        return render_template("error.html", message=_("That action is not allowed here.")), 405

    @app.errorhandler(413)
    def request_too_large(exc):
        # A body over MAX_CONTENT_LENGTH, refused before anything reads it.
        message = _("What you sent is too large to accept.")
        if request.is_json:  # the payment page's fetch calls and the provider's webhooks
            return jsonify(status="error", message=message, retry=False), 413
        return render_template("error.html", message=message), 413

    @app.errorhandler(429)
    def too_many_requests(exc):
        # Raised by the rate limits (reservations/limits.py), with the limit that refused the request.
        rate_limit_hit()
        message = _("Too many attempts in a short time. Please wait a while and try again.")
        if request.is_json:  # the payment page's fetch calls show this in their alert
            response = jsonify(status="error", message=message, retry=False)
        else:
            response = make_response(render_template("error.html", message=message))
        response.status_code = 429
        response.headers["Retry-After"] = str(_seconds_until_allowed())
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(exc):
        # The database is away for a moment (a restart, a failover, a crash and its recovery): a 503 that says
        # to try again, not a bare 500. What the request had not committed is rolled back; the pool drops the
        # dead connection, and at checkout any it kept that the server ended is replaced (reservations/pool.py),
        # so the app recovers by itself (tests/drills/test_postgres_restart.py). Handled, Flask would not log
        # it: logged here.
        app.logger.warning("database unavailable on %s %s: %s", request.method, request.path,
                           (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()[0])
        _end_session_quietly()
        # The page must not ask the database again while it renders (the header reads the signed-in user, and
        # loading the user may be what failed): for this one page, the header is the signed-out one.
        g._login_user = app.login_manager.anonymous_user()
        message = _("The service is briefly unavailable. Please try again in a moment.")
        if request.is_json:  # the payment page's fetch calls and the provider's webhooks (which send it again)
            response = jsonify(status="error", message=message, retry=True)
        else:
            response = make_response(render_template("error.html", message=message))
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response

    @app.teardown_appcontext
    def end_session_even_without_the_database(exc):
        # Runs before Flask-SQLAlchemy's own teardown, whose ROLLBACK raises out of the request when the
        # database has just terminated the connection (a restart), turning a page already rendered into
        # gunicorn's bare 500.
        _end_session_quietly()


def _seconds_until_allowed() -> int:
    """Seconds until the limit that refused this request lets it through again (at least 1; 60 if the storage
    cannot say)."""
    refused = limiter.current_limit
    try:
        return max(1, int(refused.reset_at - time.time())) if refused is not None else 60
    except Exception:  # the storage is away: Flask-Limiter counts in memory meanwhile, and so we guess
        return 60


def _end_session_quietly() -> None:
    """Roll the session back; a connection the database already closed is only discarded, not an error."""
    try:
        db.session.rollback()
    except DBAPIError:
        current_app.logger.info("the database closed the connection before the session ended")


def safe_next(target: str | None) -> str:
    """Only redirect within this site."""
    if target and target.startswith("/") and not target.startswith("//") and not urlparse(target).netloc:
        return target
    return url_for("public.index")
