"""Settings, read from the environment.

Every setting has a development default so that `make run` works on a fresh
machine. The mode comes from APP_ENV: production (the default, so a bare
`gunicorn wsgi:app` is production), development (`make run`) or test (the
suite). Outside development and test, create_app refuses to start while a
secret or a URL still holds a development value (check_settings).
"""
import ipaddress
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from werkzeug.sansio.utils import host_is_trusted

BASE_DIR = Path(__file__).resolve().parent

APP_ENVS = ("production", "development", "test")

# The development defaults used below. Production refuses them, and anything like them.
DEV_SECRET_KEY = "dev-only-not-secret"
DEV_STRIPE_SECRET_KEY = "sk_test_localstripe"
DEV_STRIPE_PUBLISHABLE_KEY = "pk_test_localstripe"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_localstripe"
DEV_STRIPE_API_BASE = "http://127.0.0.1:8420"
DEV_MAIL_FROM = "reservations@example.invalid"
MIN_SECRET_KEY_LENGTH = 32


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


def _list(name: str) -> list[str] | None:
    """A comma-separated variable as a list; None when unset or empty."""
    items = [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]
    return items or None


class ConfigError(RuntimeError):
    """The settings are unsafe to serve with. `problems` maps each variable to what is wrong with it."""

    def __init__(self, message: str, problems: Mapping[str, str] | None = None):
        super().__init__(message)
        self.problems = dict(problems or {})


def app_env(test_config: Mapping | None = None) -> str:
    """The mode: test_config's APP_ENV, else the environment's, else production."""
    env = (test_config or {}).get("APP_ENV") or os.environ.get("APP_ENV") or "production"
    if env not in APP_ENVS:
        raise ConfigError(f"APP_ENV={env!r} is not a mode: use one of {', '.join(APP_ENVS)}.",
                          {"APP_ENV": f"{env!r} is not one of {', '.join(APP_ENVS)}"})
    return env


def mode_settings(env: str) -> dict:
    """Settings that follow the mode (test_config may still override them)."""
    production = env == "production"
    # Plain http on 127.0.0.1 in development and tests; browsers drop Secure cookies there.
    settings = {"APP_ENV": env, "SESSION_COOKIE_SECURE": production, "REMEMBER_COOKIE_SECURE": production}
    if os.environ.get("TEMPLATE_BYTECODE_DIR") is None:  # Config.TEMPLATE_BYTECODE_DIR
        settings["TEMPLATE_BYTECODE_DIR"] = "" if production else str(BASE_DIR / "instance" / "templates")
    return settings


# The demo's issuer (ISSUER_NAME): production refuses to print it on a real receipt.
DEMO_ISSUER_NAME, DEMO_ISSUER_NAME_EN = "中央区 施設予約（デモ）", "Chuo City Facility Reservations (demo)"


def check_settings(config: Mapping) -> None:
    """Refuse to serve production with a development value; the message names every variable to set."""
    if config["APP_ENV"] in ("development", "test"):
        return
    problems = production_problems(config)
    if problems:
        lines = "\n".join(f"  {name}: {why}" for name, why in problems.items())
        raise ConfigError(
            f"Refusing to start in {config['APP_ENV']} mode (APP_ENV, default production) with development "
            f"or missing settings. Set these environment variables:\n{lines}\n"
            "For the local demo, run `make run` (APP_ENV=development).", problems)


def _is_local(host: str | None) -> bool:
    """Loopback, unspecified, or localstripe: never where production talks to or is reached at."""
    host = (host or "").lower()
    if not host or host == "localhost" or host.endswith(".localhost") or "localstripe" in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _https_host(url: str | None) -> str | None:
    """The host of an https URL that is not local, else None."""
    parts = urlsplit(url or "")
    return parts.hostname if parts.scheme == "https" and not _is_local(parts.hostname) else None


def production_problems(config: Mapping) -> dict[str, str]:
    """What makes these settings unsafe for production, by variable name (empty when they are fine)."""
    problems: dict[str, str] = {}

    secret = config.get("SECRET_KEY") or ""
    if not secret:
        problems["SECRET_KEY"] = f"missing: set a random value of at least {MIN_SECRET_KEY_LENGTH} characters"
    elif secret == DEV_SECRET_KEY or "dev-only" in secret or "not-secret" in secret:
        problems["SECRET_KEY"] = "is the development default, which anyone can read in config.py"
    elif len(secret) < MIN_SECRET_KEY_LENGTH:
        problems["SECRET_KEY"] = (f"is {len(secret)} characters long: use at least {MIN_SECRET_KEY_LENGTH} "
                                  "random ones (python -c 'import secrets; print(secrets.token_urlsafe(48))')")

    # The webhook endpoint answers whether or not PAYMENTS_ENABLED, so the webhook secret is always needed.
    for name, prefixes in (("STRIPE_SECRET_KEY", ("sk_", "rk_")), ("STRIPE_PUBLISHABLE_KEY", ("pk_",)),
                           ("STRIPE_WEBHOOK_SECRET", ("whsec_",))):
        value = config.get(name) or ""
        if not value:
            problems[name] = "missing: copy it from the Stripe dashboard"
        elif "localstripe" in value.lower():
            problems[name] = "is a localstripe development value: copy the real one from the Stripe dashboard"
        elif not value.startswith(prefixes):
            problems[name] = f"is not a Stripe value (it starts with {' or '.join(prefixes)})"
    secret_key = config.get("STRIPE_SECRET_KEY") or ""
    publishable_key = config.get("STRIPE_PUBLISHABLE_KEY") or ""
    if "STRIPE_SECRET_KEY" not in problems and "STRIPE_PUBLISHABLE_KEY" not in problems and \
            ("_live_" in secret_key) != ("_live_" in publishable_key):
        problems["STRIPE_PUBLISHABLE_KEY"] = "is not of the same mode (live or test) as STRIPE_SECRET_KEY"

    api_base = config.get("STRIPE_API_BASE") or ""
    if api_base and not _https_host(api_base):
        # With real keys this would send the secret key to whatever listens there.
        problems["STRIPE_API_BASE"] = (f"is {api_base!r} (localstripe, loopback or not https): "
                                       "set it empty to talk to Stripe")
    if not _https_host(config.get("STRIPE_JS_URL")):
        problems["STRIPE_JS_URL"] = f"is {config.get('STRIPE_JS_URL')!r}: use https://js.stripe.com/v3/"

    base_url = config.get("PUBLIC_BASE_URL") or ""
    public_host = _https_host(base_url)
    if not public_host:
        problems["PUBLIC_BASE_URL"] = (f"is {base_url!r}: set the https address residents reach the site at "
                                       "(links in mail are built from it)")
    trusted = config.get("TRUSTED_HOSTS")
    if not trusted:
        problems["TRUSTED_HOSTS"] = "missing: the host names the site answers to, comma-separated"
    elif public_host and not host_is_trusted(public_host, trusted):
        problems["TRUSTED_HOSTS"] = f"does not include {public_host}, the host of PUBLIC_BASE_URL"

    if config.get("SQLALCHEMY_DATABASE_URI") == database_url(None):
        problems["DATABASE_URL"] = "missing: the development SQLite file would be used; set postgresql://..."
    if config.get("MAIL_BACKEND") != "smtp":
        problems["MAIL_BACKEND"] = (f"is {config.get('MAIL_BACKEND')!r}: set smtp (and MAIL_SMTP_*), "
                                    "or no mail reaches residents")
    if (config.get("MAIL_FROM") or DEV_MAIL_FROM).endswith(("@example.invalid", "example.invalid>")):
        problems["MAIL_FROM"] = "is the development address: set the ward's sending address"
    # Rate limits (reservations/limits.py): in memory, each worker process would count on its own.
    if "RATELIMIT_STORAGE_URI" in config and str(config["RATELIMIT_STORAGE_URI"]).startswith("memory://"):
        problems["RATELIMIT_STORAGE_URI"] = "is memory://: set redis://HOST:6379/0 so all workers share the counts"
    if config.get("RATELIMIT_ENABLED") is False:
        problems["RATELIMIT_ENABLED"] = "is off: rate limits must be on in production"
    metrics_token = config.get("METRICS_TOKEN") or ""
    if metrics_token and len(metrics_token) < MIN_SECRET_KEY_LENGTH:  # empty: only METRICS_ALLOW may scrape
        problems["METRICS_TOKEN"] = f"is shorter than {MIN_SECRET_KEY_LENGTH} characters: use a random one, or none"
    for name, demo in (("ISSUER_NAME", DEMO_ISSUER_NAME), ("ISSUER_NAME_EN", DEMO_ISSUER_NAME_EN)):
        value = (config.get(name) or "").strip()
        if not value or value == demo or "REPLACE_ME" in value:
            problems[name] = "is the demo's issuer: set the name the ward's receipts are issued under"
    if config.get("DEBUG"):
        problems["FLASK_DEBUG"] = "is on: the debugger runs any code a visitor sends; unset it"
    if not config.get("SESSION_COOKIE_SECURE"):
        problems["SESSION_COOKIE_SECURE"] = "is off: the session cookie must only travel over https"
    return problems


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    # No pool_pre_ping: a pooled PostgreSQL connection is pinged only when the server has spoken to it
    # (reservations/pool.py), which saves a round trip in every request.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}

    # HTTP hardening (reservations/security.py). The host names the site answers to, comma-separated
    # ("." before a name also admits its subdomains); a request for any other Host gets 400.
    TRUSTED_HOSTS = _list("TRUSTED_HOSTS")
    # Bodies larger than this (forms, JSON, webhooks) get 413 before anything reads them.
    MAX_CONTENT_LENGTH = _int("MAX_CONTENT_LENGTH", 1024 * 1024)
    # Behind N reverse proxies, trust the last N X-Forwarded-For/-Proto/-Host/-Port values (0: none).
    PROXY_FIX_X_FORWARDED = _int("PROXY_FIX_X_FORWARDED", 0)
    # Strict-Transport-Security, sent only on responses served over https; 0 sends none.
    HSTS_MAX_AGE = _int("HSTS_MAX_AGE", 365 * 24 * 3600)
    # Cookies. Secure follows the mode (production only, mode_settings). Sessions are browser sessions,
    # but phones keep those for weeks: this bounds how long a signed cookie is honoured after its last
    # change, even a copied one (logout and password changes revoke sooner: the user's session version).
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    PERMANENT_SESSION_LIFETIME = timedelta(hours=_int("SESSION_LIFETIME_HOURS", 7 * 24))
    # Passwords are hashed with werkzeug's default (scrypt). Only a TESTING app may name a cheaper method
    # (tests/conftest.py does: hundreds of accounts per run); no environment variable sets it (models/user.py).
    TESTING_PASSWORD_HASH_METHOD = None

    # Every business rule (windows, cut-offs, holidays) is reasoned about here.
    TIMEZONE = "Asia/Tokyo"
    LANGUAGES = ("ja", "en")
    BABEL_DEFAULT_LOCALE = "ja"
    BABEL_DEFAULT_TIMEZONE = "Asia/Tokyo"

    # Booking rules that are the same for every room.
    HOLD_MINUTES = _int("HOLD_MINUTES", 10)
    MAX_ACTIVE_BOOKINGS = _int("MAX_ACTIVE_BOOKINGS", 5)
    # Of those, how many may be holds still waiting for their payment (against hold squatting).
    MAX_LIVE_HOLDS = _int("MAX_LIVE_HOLDS", 2)
    # No-shows (services/no_shows.py): NO_SHOW_LIMIT no-shows whose slots began within the last
    # NO_SHOW_WINDOW_MONTHS months suspend the resident's online booking for NO_SHOW_SUSPENSION_MONTHS
    # months (staff at the counter can still book for them, and can lift it with a reason).
    NO_SHOW_LIMIT = _int("NO_SHOW_LIMIT", 3)
    NO_SHOW_WINDOW_MONTHS = _int("NO_SHOW_WINDOW_MONTHS", 6)
    NO_SHOW_SUSPENSION_MONTHS = _int("NO_SHOW_SUSPENSION_MONTHS", 3)

    # Registered groups (services/groups.py): eligibility, the duplicate-member check, validity and its reminder.
    GROUP_MIN_MEMBERS = _int("GROUP_MIN_MEMBERS", 5)
    GROUP_MIN_RESIDENT_PCT = _int("GROUP_MIN_RESIDENT_PCT", 50)  # of the members, living, working or studying here
    GROUP_MAX_MEMBERSHIPS = _int("GROUP_MAX_MEMBERSHIPS", 3)  # live groups one person may be listed in
    GROUP_DUPLICATE_MEMBERS = _int("GROUP_DUPLICATE_MEMBERS", 3)  # shared members that hold a new group for review
    GROUP_VALID_MONTHS = _int("GROUP_VALID_MONTHS", 12)
    GROUP_REMINDER_DAYS = _int("GROUP_REMINDER_DAYS", 30)  # the renewal reminder, this long before expiry
    # Lottery tiers (services/lottery/rounds.py): a lower tier draws first. Active groups of the ward's
    # residents are tier 1; other groups and persons are tier 2.
    LOTTERY_RESIDENT_GROUP_TIER = 1
    LOTTERY_OTHER_TIER = 2
    # Exemptions that need approval: staff decide within this many days (and before the payment deadline).
    EXEMPTION_DECISION_DAYS = _int("EXEMPTION_DECISION_DAYS", 7)

    # /metrics (reservations/observability.py) answers `Authorization: Bearer <METRICS_TOKEN>` (none: no token
    # works) or a client address in METRICS_ALLOW (CIDRs); anyone else gets 404.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
    METRICS_ALLOW = os.environ.get("METRICS_ALLOW", "127.0.0.1/32,::1/128")
    # Log lines: "json" or "text" (key=value); empty: json in production, text otherwise.
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "")

    # /healthz asks the payment provider at most this often per process (seconds); the database every time.
    HEALTH_PROVIDER_TTL = _int("HEALTH_PROVIDER_TTL", 30)
    # Every job's interval at once, in seconds (0: each job's own, reservations/jobs.py); for the fault drills.
    JOB_INTERVAL_SECONDS = _int("JOB_INTERVAL_SECONDS", 0)
    JOB_RUNS_RETENTION_DAYS = _int("JOB_RUNS_RETENTION_DAYS", 90)

    # Compiled templates are kept here (reservations/__init__.py: TemplateBytecode) so that a new process loads
    # them rather than compiling the site's templates again (2.5 s of CPU for all of them). Unset: instance/templates
    # in development and tests, and none in production, where a folder the app may write and then runs code from
    # would let a bug that writes files run code; there each worker compiles them at its start
    # (reservations/warmup.py). Empty: compile in each process.
    TEMPLATE_BYTECODE_DIR = os.environ.get("TEMPLATE_BYTECODE_DIR")

    # Mail: "outbox" writes .eml files (development), "console" prints, "smtp" sends.
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "outbox")
    MAIL_OUTBOX_DIR = os.environ.get("MAIL_OUTBOX_DIR", str(BASE_DIR / "instance" / "outbox"))
    MAIL_FROM = os.environ.get("MAIL_FROM", DEV_MAIL_FROM)
    MAIL_SMTP_HOST = os.environ.get("MAIL_SMTP_HOST", "127.0.0.1")
    MAIL_SMTP_PORT = _int("MAIL_SMTP_PORT", 25)
    MAIL_SMTP_STARTTLS = os.environ.get("MAIL_SMTP_STARTTLS", "0") == "1"
    MAIL_SMTP_USERNAME = os.environ.get("MAIL_SMTP_USERNAME", "")
    MAIL_SMTP_PASSWORD = os.environ.get("MAIL_SMTP_PASSWORD", "")
    MAIL_SMTP_TIMEOUT = _int("MAIL_SMTP_TIMEOUT", 30)
    PASSWORD_RESET_MAX_AGE = _int("PASSWORD_RESET_MAX_AGE", 3600)
    # How long the link mailed at sign-up verifies the address (seconds); no holds until then.
    EMAIL_VERIFY_MAX_AGE = _int("EMAIL_VERIFY_MAX_AGE", 2 * 24 * 3600)

    # Rate limits (reservations/limits.py): RATELIMIT_<ACTION> counts per account (the signed-in
    # user, or the address typed into the form), RATELIMIT_<ACTION>_IP per client address.
    # Counters live in memory by default (one process); production uses Redis, e.g. redis://127.0.0.1:6379/0.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    # Always set, never left to Flask-Limiter: its one limiter object would keep the last app's choice.
    RATELIMIT_ENABLED = os.environ.get("RATELIMIT_ENABLED", "1") == "1"
    # Redis unreachable: count in this process's memory until it answers again (checked every 30 s by
    # Flask-Limiter), and never turn a storage error into a 500 for the resident.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True
    # No X-RateLimit-* headers on every limited request: computing them asks the storage twice more per request
    # (a third of a reserve POST's Redis round trips). A refused request still says when to come back in its
    # Retry-After (views.too_many_requests).
    RATELIMIT_HEADERS_ENABLED = False
    RATELIMIT_LOGIN = os.environ.get("RATELIMIT_LOGIN", "10 per minute;50 per hour")
    RATELIMIT_LOGIN_IP = os.environ.get("RATELIMIT_LOGIN_IP", "30 per minute;300 per hour")
    RATELIMIT_SIGNUP = os.environ.get("RATELIMIT_SIGNUP", "3 per hour;10 per day")
    RATELIMIT_SIGNUP_IP = os.environ.get("RATELIMIT_SIGNUP_IP", "10 per hour;50 per day")
    RATELIMIT_RESET = os.environ.get("RATELIMIT_RESET", "3 per hour;10 per day")
    RATELIMIT_RESET_IP = os.environ.get("RATELIMIT_RESET_IP", "10 per hour;50 per day")
    RATELIMIT_VERIFY_RESEND = os.environ.get("RATELIMIT_VERIFY_RESEND", "3 per hour;10 per day")
    RATELIMIT_VERIFY_RESEND_IP = os.environ.get("RATELIMIT_VERIFY_RESEND_IP", "10 per hour;50 per day")
    RATELIMIT_RESERVE = os.environ.get("RATELIMIT_RESERVE", "10 per minute;60 per hour")
    RATELIMIT_RESERVE_IP = os.environ.get("RATELIMIT_RESERVE_IP", "30 per minute;300 per hour")
    RATELIMIT_PAY = os.environ.get("RATELIMIT_PAY", "20 per minute;100 per hour")
    RATELIMIT_PAY_IP = os.environ.get("RATELIMIT_PAY_IP", "60 per minute;600 per hour")

    # Who issues receipts and runs the facilities; shown on pages and receipts.
    ISSUER_NAME = os.environ.get("ISSUER_NAME", DEMO_ISSUER_NAME)
    # Its English form, shown on English pages beside the Japanese name each receipt keeps.
    ISSUER_NAME_EN = os.environ.get("ISSUER_NAME_EN", DEMO_ISSUER_NAME_EN)

    # Finance (services/ledger.py, reservations/finance/). Account codes are 款-項-目-節 as the ward's
    # budget writes them; a building's own revenue_account wins over its rooms' kind.
    REVENUE_ACCOUNTS = {
        "default": "13-01-02-01",  # 使用料及手数料 / 使用料 / 総務使用料 / 区民施設使用料
        "gym": "13-01-06-01",  # 教育使用料 / スポーツ施設使用料
        "court": "13-01-06-01",
    }
    ACCOUNT_NAMES = {
        "13-01-02-01": "使用料及手数料 使用料 総務使用料 区民施設使用料",
        "13-01-06-01": "使用料及手数料 使用料 教育使用料 スポーツ施設使用料",
        "02-01-01-12": "総務費 総務管理費 一般管理費 役務費（決済手数料）",
        "02-01-01-22": "総務費 総務管理費 一般管理費 償還金、利子及割引料（過年度支出）",
        "21-05-04-01": "諸収入 雑入 雑入 過年度収入",
    }
    FEE_EXPENSE_ACCOUNT = os.environ.get("FEE_EXPENSE_ACCOUNT", "02-01-01-12")  # 役務費
    PRIOR_YEAR_REFUND_ACCOUNT = os.environ.get("PRIOR_YEAR_REFUND_ACCOUNT", "02-01-01-22")  # 過年度支出
    # Money back in after its year closed (a refund reversed, a dispute won, after 31 May): 諸収入 雑入 過年度収入.
    PRIOR_YEAR_INCOME_ACCOUNT = os.environ.get("PRIOR_YEAR_INCOME_ACCOUNT", "21-05-04-01")
    # CP932 exports: characters CP932 cannot hold become CP932_SUBSTITUTE (〓, the geta mark), unless
    # CP932_SUBSTITUTIONS maps them to something better (e.g. "𠮷": "吉"); every replacement is reported.
    CP932_SUBSTITUTE = "〓"
    CP932_SUBSTITUTIONS: dict[str, str] = {}

    # Payments. The local default is localstripe on loopback (`make run` starts it);
    # production sets real keys and STRIPE_API_BASE="" to talk to Stripe itself.
    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", DEV_STRIPE_SECRET_KEY)
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", DEV_STRIPE_PUBLISHABLE_KEY)
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", DEV_STRIPE_API_BASE)
    STRIPE_JS_URL = os.environ.get(
        "STRIPE_JS_URL", f"{STRIPE_API_BASE}/js.stripe.com/v3/" if STRIPE_API_BASE else "https://js.stripe.com/v3/"
    )
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", DEV_STRIPE_WEBHOOK_SECRET)
    # Parameters localstripe rejects (description, 3-D Secure options, refund reason) go only to real Stripe.
    STRIPE_LIVE_PARAMS = not STRIPE_API_BASE
    # Authorise when the hold is made, capture when the booking is confirmed (see README).
    PAYMENT_CAPTURE_METHOD = os.environ.get("PAYMENT_CAPTURE_METHOD", "manual")
    PAYMENTS_ENABLED = os.environ.get("PAYMENTS_ENABLED", "1") == "1"
    # Refunds the provider could not take: retried after 60 s, doubling, at most 6 h apart, 8 attempts,
    # then a staff case. A refund in transit at the provider is asked about hourly if no event comes.
    REFUND_RETRY_SECONDS = _int("REFUND_RETRY_SECONDS", 60)
    REFUND_RETRY_MAX_SECONDS = _int("REFUND_RETRY_MAX_SECONDS", 6 * 3600)
    REFUND_MAX_ATTEMPTS = _int("REFUND_MAX_ATTEMPTS", 8)
    REFUND_POLL_SECONDS = _int("REFUND_POLL_SECONDS", 3600)
    # Webhooks: bodies above this are refused unread (413); signatures older than the tolerance are refused;
    # stored events are deleted after the retention (the provider stops redelivering after 3 days).
    WEBHOOK_MAX_BYTES = _int("WEBHOOK_MAX_BYTES", 256 * 1024)
    WEBHOOK_TOLERANCE_SECONDS = _int("WEBHOOK_TOLERANCE_SECONDS", 300)
    WEBHOOK_EVENT_RETENTION_DAYS = _int("WEBHOOK_EVENT_RETENTION_DAYS", 90)

    # Where residents reach the site; used for links in mail sent outside a request (jobs, webhooks).
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000")
