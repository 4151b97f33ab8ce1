"""Password hashing: Argon2id with OWASP's first recommended parameters (19 MiB, 2 passes, 1 lane).

Werkzeug's default, scrypt with N=2^15, r=8, p=1, is below OWASP's own floor for scrypt (N=2^17) and cost
about 80 ms of CPU per sign-in here: 300 residents signing in just before a month opens at 09:00 spent more
CPU on it than on their bookings. Argon2id at OWASP's parameters costs about 20 ms and is memory-hard, the
password storage cheat sheet's first choice. Hashes made before (werkzeug's "scrypt:..." format) still verify,
and are replaced by an Argon2id hash at the next successful sign-in (`needs_rehash`).

Only a TESTING app may name a cheaper method (TESTING_PASSWORD_HASH_METHOD, a werkzeug method that
tests/conftest.py sets), so a suite that makes a thousand accounts does not spend minutes hashing. No environment
variable reaches it, and tests/test_password_hashing.py proves the other modes keep Argon2id.
"""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, has_app_context
from werkzeug.security import check_password_hash, generate_password_hash

ARGON2 = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
ARGON2_PREFIX = "$argon2"


def _testing_method() -> str | None:
    if has_app_context() and current_app.testing:
        return current_app.config.get("TESTING_PASSWORD_HASH_METHOD") or None
    return None


def current_method() -> str:
    """What hash_password uses now: "argon2id", or the TESTING app's werkzeug method."""
    return _testing_method() or "argon2id"


def hash_password(password: str) -> str:
    method = _testing_method()
    return generate_password_hash(password, method=method) if method else ARGON2.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` is the one `stored` was made from, whichever of our formats it is in."""
    if stored.startswith(ARGON2_PREFIX):
        try:
            return ARGON2.verify(stored, password)
        except (VerificationError, InvalidHashError):  # a mismatch is a VerificationError too
            return False
    return check_password_hash(stored, password)


def needs_rehash(stored: str) -> bool:
    """Whether `stored` is not what hash_password makes now (an older method, or older parameters)."""
    method = _testing_method()
    if method:
        return not stored.startswith(f"{method}$")
    return not stored.startswith(ARGON2_PREFIX) or ARGON2.check_needs_rehash(stored)
