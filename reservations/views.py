"""Blueprints, the language switch and error pages."""
from urllib.parse import urlparse

from flask import jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError


def register(app) -> None:
    from .account import bp as account_bp
    from .bookings import bp as bookings_bp
    from .public import bp as public_bp
    from .staff import bp as staff_bp
    from .webhooks import bp as webhooks_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(bookings_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(staff_bp)

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


def safe_next(target: str | None) -> str:
    """Only redirect within this site."""
    if target and target.startswith("/") and not target.startswith("//") and not urlparse(target).netloc:
        return target
    return url_for("public.index")
