"""Passwords are hashed with Argon2id (reservations/passwords.py) everywhere but in the suite's own TESTING apps.

tests/conftest.py names a one-round method for speed (TESTING_PASSWORD_HASH_METHOD); these tests prove
that it reaches only TESTING apps, that production and development hash with Argon2id at OWASP's parameters,
and that a hash made before (werkzeug's scrypt) still signs in and is replaced by the current method.
"""
import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from reservations import create_app
from reservations.models import Residency, User
from reservations.services import accounts
from tests.conftest import FAST_PASSWORD_HASH
from tests.test_config import PRODUCTION

# What Argon2id at OWASP's first recommended parameters writes before its salt: 19 MiB, 2 passes, 1 lane.
ARGON2_METHOD = "$argon2id$v=19$m=19456,t=2,p=1"


def _method(password_hash: str) -> str:
    if password_hash.startswith("$argon2"):
        return "$".join(password_hash.split("$")[:4])
    return password_hash.split("$")[0]


def _hashes(app) -> dict[str, str]:
    with app.app_context():
        user = User(email="x@example.com", name="x", residency=Residency.RESIDENT)
        user.set_password("correct horse")
        # What sign-up stores: it hashes before it looks the address up, so no database is needed.
        signed_up = accounts.hash_password("correct horse")
        dummy = accounts._dummy_hash(accounts.current_method())
        assert user.check_password("correct horse") and not user.check_password("wrong horse")
    return {"set_password": _method(user.password_hash), "sign_up": _method(signed_up), "dummy": _method(dummy)}


@pytest.mark.parametrize("mode", ["production", "development"])
def test_apps_that_are_not_testing_hash_with_argon2id_whatever_the_setting(mode, tmp_path):
    settings = PRODUCTION if mode == "production" else {"APP_ENV": "development"}
    app = create_app({**settings, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
                      "TESTING_PASSWORD_HASH_METHOD": FAST_PASSWORD_HASH})
    assert not app.testing

    assert _hashes(app) == dict.fromkeys(["set_password", "sign_up", "dummy"], ARGON2_METHOD)


def test_the_suites_apps_hash_with_the_cheap_method(app):
    """Else the suite silently goes back to spending minutes hashing."""
    assert app.testing
    assert _hashes(app) == dict.fromkeys(["set_password", "sign_up", "dummy"], FAST_PASSWORD_HASH)
    assert check_password_hash(generate_password_hash("p", FAST_PASSWORD_HASH), "p")


@pytest.mark.parametrize("mode", ["production", "development"])
def test_an_older_scrypt_hash_signs_in_and_is_replaced_by_argon2id(mode, tmp_path):
    settings = PRODUCTION if mode == "production" else {"APP_ENV": "development"}
    app = create_app({**settings, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'unused.sqlite3'}"})
    old = generate_password_hash("correct horse")  # what accounts made before: werkzeug's scrypt
    assert old.startswith("scrypt:")
    with app.app_context():
        assert accounts.verify_password(old, "correct horse") and not accounts.verify_password(old, "wrong horse")
        assert accounts.needs_rehash(old)
        new = accounts.hash_password("correct horse")
        assert _method(new) == ARGON2_METHOD and not accounts.needs_rehash(new)
        assert accounts.verify_password(new, "correct horse") and not accounts.verify_password(new, "wrong horse")
        assert not accounts.verify_password("$argon2id$v=19$not-a-hash", "correct horse")  # never a 500


def test_signing_in_replaces_a_hash_of_an_older_method(app, client, resident):
    from reservations.extensions import db

    resident.password_hash = generate_password_hash("correct horse")  # scrypt, as before Argon2id
    db.session.commit()

    response = client.post("/account/login", data={"email": resident.email, "password": "correct horse"})

    assert response.status_code == 302
    db.session.refresh(resident)
    assert _method(resident.password_hash) == FAST_PASSWORD_HASH  # this TESTING app's current method
    assert resident.check_password("correct horse") and not accounts.needs_rehash(resident.password_hash)
