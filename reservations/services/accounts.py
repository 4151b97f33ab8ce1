"""Accounts: sign up, log in, reset a forgotten password, keep a profile.

Services flush; the caller (a request) commits, then sends any mail.
"""
import hashlib
from dataclasses import dataclass
from functools import cache

from flask import current_app
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import Residency, User, record
from ..timeutil import now_utc

MIN_PASSWORD_LENGTH = 10
RESET_SALT = "account.password-reset"

MESSAGES = {
    "email_taken": _l("An account with this email address already exists. Log in, or reset your password."),
    "password_too_short": _l("Use at least %(min)d characters for your password.", min=MIN_PASSWORD_LENGTH),
    "bad_credentials": _l("The email address or password is not correct."),
    "invalid_residency": _l("Choose where you live, work or study."),
    "invalid_locale": _l("Choose a language we offer."),
    "reset_expired": _l("This password reset link has expired. Please ask for a new one."),
    "reset_invalid": _l("This password reset link is not valid or has already been used. Please ask for a new one."),
}


class AccountError(Exception):
    """A refusal with a message for people; `field` names the form field it belongs to, if any."""

    def __init__(self, code: str, *, field: str | None = None):
        super().__init__(code)
        self.code = code
        self.field = field

    @property
    def message(self) -> str:
        return str(MESSAGES.get(self.code, self.code))


@dataclass(frozen=True)
class PasswordReset:
    """What the caller needs to mail a reset link, once the request has been committed."""

    user: User
    token: str


def normalise_email(email: str) -> str:
    """Emails are stored and compared lowercased, so one address is one account."""
    return email.strip().lower()


def find_user_by_email(email: str) -> User | None:
    return db.session.scalars(select(User).where(func.lower(User.email) == normalise_email(email))).one_or_none()


def sign_up(*, name: str, email: str, password: str, residency: str, phone: str | None = None,
            locale: str | None = None) -> User:
    """Create a resident account; raises AccountError("email_taken") if the address is in use."""
    email = normalise_email(email)
    _check_password(password)
    _check_residency(residency)
    if locale is not None:
        _check_locale(locale)
    if find_user_by_email(email) is not None:
        raise AccountError("email_taken", field="email")
    user = User(name=name.strip(), email=email, residency=residency, phone=phone or None, locale=locale)
    user.set_password(password)
    try:
        # A concurrent sign-up with the same address loses at the unique constraint.
        with db.session.begin_nested():
            db.session.add(user)
    except IntegrityError:
        raise AccountError("email_taken", field="email") from None
    record("user", user.id, "signed_up", actor_id=user.id, residency=str(residency))
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> User:
    """The user with these credentials, or AccountError("bad_credentials") whichever part is wrong."""
    user = find_user_by_email(email)
    if user is None:
        # Spend the same time hashing as for a real account, so timing does not tell who is registered.
        check_password_hash(_dummy_hash(), password)
        raise AccountError("bad_credentials")
    if not user.check_password(password):
        raise AccountError("bad_credentials")
    return user


def request_password_reset(email: str) -> PasswordReset | None:
    """A reset token for a registered address, None otherwise.

    The caller must answer both cases the same way, so that nobody can learn
    who has an account, and must mail the link only after committing.
    """
    user = find_user_by_email(email)
    if user is None:
        return None
    return PasswordReset(user=user, token=_serializer().dumps({"uid": user.id, "pw": _password_fingerprint(user)}))


def check_reset_token(token: str) -> User:
    """The user a reset token was issued to, if it is still valid.

    A token carries a fingerprint of the password hash it was issued for, so it
    stops working as soon as the password changes: each link works once.
    """
    try:
        payload = _serializer().loads(token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE"])
    except SignatureExpired:
        raise AccountError("reset_expired") from None
    except BadSignature:
        raise AccountError("reset_invalid") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("uid"), int):
        raise AccountError("reset_invalid")
    user = db.session.get(User, payload["uid"])
    if user is None or payload.get("pw") != _password_fingerprint(user):
        raise AccountError("reset_invalid")
    return user


def reset_password(token: str, new_password: str) -> User:
    """Set a new password with a reset token; the token cannot be used again."""
    user = check_reset_token(token)
    _check_password(new_password, field="password")
    user.set_password(new_password)
    record("user", user.id, "password_reset", actor_id=user.id)
    db.session.flush()
    return user


def update_profile(user: User, *, name: str, phone: str | None, residency: str, locale: str | None) -> User:
    """Change what the user may change about themselves.

    Residency sets the fee multiplier of bookings made from now on; a booking
    already made keeps the price it was sold at.
    """
    _check_residency(residency)
    if locale is not None:
        _check_locale(locale)
    changes = {}
    for attr, value in (("name", name.strip()), ("phone", phone or None), ("residency", str(residency)),
                        ("locale", locale)):
        if getattr(user, attr) != value:
            changes[attr] = value
            setattr(user, attr, value)
    if "residency" in changes:
        record("user", user.id, "residency_changed", actor_id=user.id, residency=changes["residency"])
    db.session.flush()
    return user


def _check_password(password: str, *, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError("password_too_short", field=field)


def _check_residency(residency: str) -> None:
    if residency not in {r.value for r in Residency}:
        raise AccountError("invalid_residency", field="residency")


def _check_locale(locale: str) -> None:
    if locale not in current_app.config["LANGUAGES"]:
        raise AccountError("invalid_locale", field="locale")


def _password_fingerprint(user: User) -> str:
    # Changes whenever the password does (the hash is salted), and reveals nothing of the hash.
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


class _ClockSigner(TimestampSigner):
    """Timestamps from our own clock, so that expiry can be tested at its exact boundary."""

    def get_timestamp(self) -> int:
        return int(now_utc().timestamp())


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=RESET_SALT, signer=_ClockSigner)


@cache
def _dummy_hash() -> str:
    return generate_password_hash("not anyone's password")
