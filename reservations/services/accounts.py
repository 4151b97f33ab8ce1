"""Accounts: sign up, verify the address, log in, reset or change a password, keep a profile.

Services flush; the caller (a request) commits, then sends any mail.

Nobody learns from us whether an address has an account: sign-up and reset
answer the same and do the same work (hash, sign, render) either way; only the
mail, which goes to the address's owner, says what happened.
"""
import hashlib
from dataclasses import dataclass
from functools import cache

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..i18n import lazy_gettext as _l
from ..models import Residency, User, record
from ..passwords import current_method, hash_password, needs_rehash, verify_password
from ..timeutil import now_utc

MIN_PASSWORD_LENGTH = 10
RESET_SALT = "account.password-reset"
VERIFY_SALT = "account.email-verify"  # its own salt: a reset token never verifies an address, nor the reverse

MESSAGES = {
    "password_too_short": _l("Use at least %(min)d characters for your password.", min=MIN_PASSWORD_LENGTH),
    "bad_credentials": _l("The email address or password is not correct."),
    "invalid_residency": _l("Choose where you live, work or study."),
    "invalid_locale": _l("Choose a language we offer."),
    "reset_expired": _l("This password reset link has expired. Please ask for a new one."),
    "reset_invalid": _l("This password reset link is not valid or has already been used. Please ask for a new one."),
    "verify_expired": _l("This confirmation link has expired. Log in and ask for a new one."),
    "verify_invalid": _l("This confirmation link is not valid. Log in and ask for a new one."),
    "wrong_password": _l("Your current password is not correct."),
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
class SignUp:
    """What the caller needs to mail the outcome of a sign-up, once the request has been committed.

    `created` is False when the address already had an account: the caller answers
    exactly as for a new one and mails the owner about the attempt instead.
    """

    user: User
    created: bool
    verify_token: str


@dataclass(frozen=True)
class PasswordReset:
    """What the caller needs to mail a reset link, once the request has been committed.

    `user` is None for an address nobody registered: the token is built all the
    same (for nobody), so that both cases take the same work, and is never sent.
    """

    user: User | None
    token: str


def normalise_email(email: str) -> str:
    """Emails are stored and compared lowercased, so one address is one account."""
    return email.strip().lower()


def find_user_by_email(email: str) -> User | None:
    # Stored lowercased (a CHECK says so), so the unique index on email serves this without lower().
    return db.session.scalars(select(User).where(User.email == normalise_email(email))).one_or_none()


def sign_up(*, name: str, email: str, password: str, residency: str, phone: str | None = None,
            locale: str | None = None) -> SignUp:
    """Create a resident account, not yet verified; if the address is taken, change nothing.

    Either way the password is hashed and a verification token signed, so the
    answer takes the same work; the caller must answer both alike.
    """
    email = normalise_email(email)
    _check_password(password)
    _check_residency(residency)
    if locale is not None:
        _check_locale(locale)
    password_hash = hash_password(password)
    existing = find_user_by_email(email)
    if existing is None:
        user = User(name=name.strip(), email=email, residency=residency, phone=phone or None, locale=locale,
                    password_hash=password_hash)
        try:
            # A concurrent sign-up with the same address loses at the unique constraint.
            with db.session.begin_nested():
                db.session.add(user)
        except IntegrityError:
            existing = find_user_by_email(email)
            if existing is None:  # not the address after all: let it surface
                raise
        else:
            record("user", user.id, "signed_up", actor_id=user.id, residency=str(residency))
            db.session.flush()
            return SignUp(user=user, created=True, verify_token=email_verification_token(user))
    record("user", existing.id, "signup_attempted")
    db.session.flush()
    return SignUp(user=existing, created=False, verify_token=email_verification_token(existing))


def email_verification_token(user: User) -> str:
    """A signed link token proving that whoever holds it reads `user`'s mail; expires after EMAIL_VERIFY_MAX_AGE."""
    return _serializer(VERIFY_SALT).dumps({"uid": user.id, "email": user.email})


def verify_email(token: str, *, now=None) -> User:
    """Mark the address of the token's user as verified; following the link again changes nothing."""
    try:
        payload = _serializer(VERIFY_SALT).loads(token, max_age=current_app.config["EMAIL_VERIFY_MAX_AGE"])
    except SignatureExpired:
        raise AccountError("verify_expired") from None
    except BadSignature:
        raise AccountError("verify_invalid") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("uid"), int):
        raise AccountError("verify_invalid")
    user = db.session.get(User, payload["uid"])
    if user is None or payload.get("email") != user.email:
        raise AccountError("verify_invalid")
    if user.email_verified_at is None:
        user.email_verified_at = now or now_utc()
        record("user", user.id, "email_verified", actor_id=user.id)
        db.session.flush()
    return user


def authenticate(email: str, password: str) -> User:
    """The user with these credentials, or AccountError("bad_credentials") whichever part is wrong."""
    user = find_user_by_email(email)
    if user is None:
        # Spend the same time hashing as for a real account, so timing does not tell who is registered.
        verify_password(_dummy_hash(current_method()), password)
        raise AccountError("bad_credentials")
    if not user.check_password(password):
        raise AccountError("bad_credentials")
    if needs_rehash(user.password_hash):  # made by an older method: replaced now that we know the password
        user.password_hash = hash_password(password)
        db.session.flush()
    return user


def request_password_reset(email: str) -> PasswordReset:
    """A reset token for the address; `user` is None if nobody registered it.

    Both cases do the same work (look-up, fingerprint, signature), and the
    caller renders the mail for both and sends it only to a registered address,
    so neither the answer nor its time tells who has an account. Mail the link
    only after committing.
    """
    user = find_user_by_email(email)
    fingerprint = _password_fingerprint(user.password_hash if user is not None else _dummy_hash(current_method()))
    token = _serializer(RESET_SALT).dumps({"uid": user.id if user is not None else 0, "pw": fingerprint})
    return PasswordReset(user=user, token=token)


def check_reset_token(token: str) -> User:
    """The user a reset token was issued to, if it is still valid.

    A token carries a fingerprint of the password hash it was issued for, so it
    stops working as soon as the password changes: each link works once.
    """
    try:
        payload = _serializer(RESET_SALT).loads(token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE"])
    except SignatureExpired:
        raise AccountError("reset_expired") from None
    except BadSignature:
        raise AccountError("reset_invalid") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("uid"), int):
        raise AccountError("reset_invalid")
    user = db.session.get(User, payload["uid"])
    if user is None or payload.get("pw") != _password_fingerprint(user.password_hash):
        raise AccountError("reset_invalid")
    return user


def reset_password(token: str, new_password: str) -> User:
    """Set a new password with a reset token; the token cannot be used again, and every session ends."""
    user = check_reset_token(token)
    _check_password(new_password, field="password")
    user.set_password(new_password)
    _revoke_sessions(user)
    record("user", user.id, "password_reset", actor_id=user.id, session_version=user.session_version)
    db.session.flush()
    return user


def change_password(user: User, *, current_password: str, new_password: str) -> User:
    """Change the password of a signed-in user who knows the current one; every other session ends.

    The caller logs the current browser in again (its cookie carries the old session version).
    """
    if not user.check_password(current_password):
        raise AccountError("wrong_password", field="current_password")
    _check_password(new_password, field="password")
    user.set_password(new_password)
    _revoke_sessions(user)
    record("user", user.id, "password_changed", actor_id=user.id, session_version=user.session_version)
    db.session.flush()
    return user


def log_out_everywhere(user: User) -> None:
    """Logging out ends every session of the user, not just this browser's: a copied cookie dies with it."""
    _revoke_sessions(user)
    record("user", user.id, "logged_out", actor_id=user.id, session_version=user.session_version)
    db.session.flush()


def _revoke_sessions(user: User) -> None:
    # Every cookie names the version it was issued under (User.get_id); the loader refuses older ones.
    user.session_version = (user.session_version or 1) + 1


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


def _password_fingerprint(password_hash: str) -> str:
    # Changes whenever the password does (the hash is salted), and reveals nothing of the hash.
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


class _ClockSigner(TimestampSigner):
    """Timestamps from our own clock, so that expiry can be tested at its exact boundary."""

    def get_timestamp(self) -> int:
        return int(now_utc().timestamp())


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt, signer=_ClockSigner)


@cache
def _dummy_hash(method: str) -> str:
    """A hash made as hash_password makes them now (`method` is what it uses: the cache key)."""
    return hash_password("not anyone's password")
