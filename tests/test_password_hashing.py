"""Passwords are hashed with werkzeug's default (scrypt) everywhere but in the suite's own TESTING apps.

tests/conftest.py names a one-round method for speed (TESTING_PASSWORD_HASH_METHOD); these tests prove
that it reaches only TESTING apps, and that production and development hash as werkzeug does by default.
"""
import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from reservations import create_app
from reservations.models import Residency, User
from reservations.services import accounts
from tests.conftest import FAST_PASSWORD_HASH
from tests.test_config import PRODUCTION

# What werkzeug writes by default, e.g. "scrypt:32768:8:1": the part of the hash before the salt.
DEFAULT_METHOD = generate_password_hash("x").split("$")[0]


def _method(password_hash: str) -> str:
    return password_hash.split("$")[0]


def test_werkzeugs_default_is_scrypt():
    assert DEFAULT_METHOD.startswith("scrypt:")


def _hashes(app) -> dict[str, str]:
    with app.app_context():
        user = User(email="x@example.com", name="x", residency=Residency.RESIDENT)
        user.set_password("correct horse")
        # What sign-up stores: it hashes before it looks the address up, so no database is needed.
        signed_up = accounts.generate_password_hash("correct horse", **accounts.password_hash_options())
        dummy = accounts._dummy_hash(**accounts.password_hash_options())
        assert user.check_password("correct horse") and not user.check_password("wrong horse")
    return {"set_password": _method(user.password_hash), "sign_up": _method(signed_up), "dummy": _method(dummy)}


@pytest.mark.parametrize("mode", ["production", "development"])
def test_apps_that_are_not_testing_hash_with_werkzeugs_default_whatever_the_setting(mode, tmp_path):
    settings = PRODUCTION if mode == "production" else {"APP_ENV": "development"}
    app = create_app({**settings, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
                      "TESTING_PASSWORD_HASH_METHOD": FAST_PASSWORD_HASH})
    assert not app.testing

    assert _hashes(app) == dict.fromkeys(["set_password", "sign_up", "dummy"], DEFAULT_METHOD)


def test_the_suites_apps_hash_with_the_cheap_method(app):
    """Else the suite silently goes back to spending minutes in scrypt."""
    assert app.testing
    assert _hashes(app) == dict.fromkeys(["set_password", "sign_up", "dummy"], FAST_PASSWORD_HASH)
    assert check_password_hash(generate_password_hash("p", FAST_PASSWORD_HASH), "p")
