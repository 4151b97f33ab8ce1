"""Rate limits on the actions worth abusing: log-in, sign-up, reset, verification mail, reserve and pay.

Each action is limited twice, by the client's address and by the account it
aims at, and each decorator below applies both:

- per IP: one client cannot try many accounts (or make many of them);
- per account: many clients (a botnet, a rotating proxy) cannot gang up on one
  account, e.g. to guess its password or to flood its mailbox.

The limit strings are settings (config.py: RATELIMIT_<ACTION> per account,
RATELIMIT_<ACTION>_IP per address), read at each request so a test or a
deployment can change them. The counters live in RATELIMIT_STORAGE_URI: memory
by default (one process), Redis in production, so that every worker and every
host counts together. A refused request gets 429 (views.too_many_requests).

Behind a reverse proxy the client's address must be restored first (ProxyFix),
or every request counts against the proxy's own address.
"""
from collections.abc import Callable

from flask import current_app, request
from flask_limiter.util import get_remote_address
from flask_login import current_user

from .extensions import limiter
from .services.accounts import normalise_email


def _setting(name: str) -> Callable[[], str]:
    return lambda: current_app.config[name]


def _by_ip() -> str:
    return f"ip:{get_remote_address()}"


def _by_signed_in_user() -> str:
    return f"user:{current_user.id}" if current_user.is_authenticated else ""


def _by_submitted_email() -> str:
    # The address typed into the form, folded as the account look-up folds it, so that
    # "Taro@Example.com" and "taro@example.com" share one counter.
    email = request.form.get("email", "")
    return f"email:{normalise_email(email)}" if email.strip() else ""


def _limited(action: str, account_key: Callable[[], str], *, shared_scope: str | None = None):
    """A decorator applying RATELIMIT_<action>_IP by address and RATELIMIT_<action> by account, on POST.

    Put it below @login_required, so that a request bounced to the log-in page counts nothing.
    `shared_scope` makes several endpoints count against one budget (the two pay calls).
    """
    def make(limit_setting: str, key_func: Callable[[], str]):
        options = dict(key_func=key_func, methods=["POST"],
                       # No account to count against (no address given, not signed in): the per-IP limit still holds.
                       exempt_when=lambda: not key_func())
        if shared_scope:
            return limiter.shared_limit(_setting(limit_setting), scope=f"{shared_scope}:{limit_setting}", **options)
        return limiter.limit(_setting(limit_setting), **options)

    by_ip = make(f"RATELIMIT_{action}_IP", _by_ip)
    by_account = make(f"RATELIMIT_{action}", account_key)

    def decorate(view):
        return by_ip(by_account(view))

    return decorate


login = _limited("LOGIN", _by_submitted_email)
signup = _limited("SIGNUP", _by_submitted_email)
reset = _limited("RESET", _by_submitted_email)
verification_mail = _limited("VERIFY_RESEND", _by_signed_in_user)
reserve = _limited("RESERVE", _by_signed_in_user)
pay = _limited("PAY", _by_signed_in_user, shared_scope="pay")

