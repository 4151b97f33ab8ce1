"""Blueprints, the language switch and error pages."""
from urllib.parse import urlparse

from flask import abort, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

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
        # Raised by the rate limits (reservations/limits.py); Flask-Limiter adds Retry-After after this.
        message = _("Too many attempts in a short time. Please wait a while and try again.")
        if request.is_json:  # the payment page's fetch calls show this in their alert
            return jsonify(status="error", message=message, retry=False), 429
        return render_template("error.html", message=message), 429


def safe_next(target: str | None) -> str:
    """Only redirect within this site."""
    if target and target.startswith("/") and not target.startswith("//") and not urlparse(target).netloc:
        return target
    return url_for("public.index")
