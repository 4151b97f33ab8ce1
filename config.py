"""Settings, read from the environment.

Every setting has a development default so that `make run` works on a fresh
machine; production sets DATABASE_URL, SECRET_KEY and the Stripe keys.
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def database_url(raw: str | None) -> str:
    """Normalise DATABASE_URL so that PostgreSQL always goes through psycopg 3."""
    if not raw:
        return f"sqlite:///{BASE_DIR / 'instance' / 'reservations.sqlite3'}"
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret")
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}

    # Every business rule (windows, cut-offs, holidays) is reasoned about here.
    TIMEZONE = "Asia/Tokyo"
    LANGUAGES = ("ja", "en")
    BABEL_DEFAULT_LOCALE = "ja"
    BABEL_DEFAULT_TIMEZONE = "Asia/Tokyo"

    # Booking rules that are the same for every room.
    HOLD_MINUTES = _int("HOLD_MINUTES", 10)
    MAX_ACTIVE_BOOKINGS = _int("MAX_ACTIVE_BOOKINGS", 5)

    # Mail: "outbox" writes .eml files (development), "console" prints, "smtp" sends.
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "outbox")
    MAIL_OUTBOX_DIR = os.environ.get("MAIL_OUTBOX_DIR", str(BASE_DIR / "instance" / "outbox"))
    MAIL_FROM = os.environ.get("MAIL_FROM", "reservations@example.invalid")
    MAIL_SMTP_HOST = os.environ.get("MAIL_SMTP_HOST", "127.0.0.1")
    MAIL_SMTP_PORT = _int("MAIL_SMTP_PORT", 25)
    PASSWORD_RESET_MAX_AGE = _int("PASSWORD_RESET_MAX_AGE", 3600)

    # Who issues receipts and runs the facilities; shown on pages and receipts.
    ISSUER_NAME = os.environ.get("ISSUER_NAME", "中央区 施設予約（デモ）")

    # Payments. The local default is localstripe on loopback (`make run` starts it);
    # production sets real keys and STRIPE_API_BASE="" to talk to Stripe itself.
    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "sk_test_localstripe")
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "pk_test_localstripe")
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:8420")
    STRIPE_JS_URL = os.environ.get(
        "STRIPE_JS_URL", f"{STRIPE_API_BASE}/js.stripe.com/v3/" if STRIPE_API_BASE else "https://js.stripe.com/v3/"
    )
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_localstripe")
    # Parameters localstripe rejects (description, 3-D Secure options, refund reason) go only to real Stripe.
    STRIPE_LIVE_PARAMS = not STRIPE_API_BASE
    # Authorise when the hold is made, capture when the booking is confirmed (see README).
    PAYMENT_CAPTURE_METHOD = os.environ.get("PAYMENT_CAPTURE_METHOD", "manual")
    PAYMENTS_ENABLED = os.environ.get("PAYMENTS_ENABLED", "1") == "1"

    # Where residents reach the site; used for links in mail sent outside a request (jobs, webhooks).
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000")
