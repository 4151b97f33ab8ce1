"""Configuration that fails safe: the mode comes from APP_ENV, and production refuses development values.

The suite itself runs with APP_ENV=test (tests/conftest.py); these tests build
production and development apps explicitly.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask import session
from flask.sessions import SecureCookieSessionInterface
from flask_login import login_user

import config
from config import ConfigError
from reservations import create_app
from reservations.extensions import db
from reservations.models import Role, User

ROOT = Path(__file__).resolve().parent.parent
HOST = "yoyaku.example.jp"
HTTPS = f"https://{HOST}"

# What a real deployment sets (values of the right shape, none of them a development default).
PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "p3Jk8s0V-2qLw9xYtR7mNc4BfH6dZa1E_uGoTiKyQeWl",
    "STRIPE_SECRET_KEY": "sk_live_51HxYzAbCdEfGhIjKlMnOp",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_51HxYzAbCdEfGhIjKlMnOp",
    "STRIPE_WEBHOOK_SECRET": "whsec_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "STRIPE_API_BASE": "",
    "STRIPE_JS_URL": "https://js.stripe.com/v3/",
    "PUBLIC_BASE_URL": HTTPS,
    "TRUSTED_HOSTS": [HOST],
    "MAIL_BACKEND": "smtp",
    "MAIL_FROM": "施設予約 <yoyaku@city.example.jp>",
    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
    "ISSUER_NAME": "目黒区 施設予約",
    "ISSUER_NAME_EN": "Meguro City Facility Reservations",
}


@pytest.fixture
def unused_database(tmp_path) -> str:
    """Refused apps never open their database; one that starts opens this empty file."""
    return f"sqlite:///{tmp_path / 'unused.sqlite3'}"


def production(database: str, **overrides):
    return create_app({**PRODUCTION, "SQLALCHEMY_DATABASE_URI": database, **overrides})


@pytest.fixture
def production_app(backend, database_urls):
    """A properly configured production app on the test database of `backend`."""
    app = production(database_urls[backend])
    yield app
    with app.app_context():
        db.engine.dispose()


def refusal(database: str, **overrides) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        production(database, **overrides)
    return refused.value


# --- the mode --------------------------------------------------------------------


def test_with_app_env_unset_the_mode_is_production(monkeypatch):
    monkeypatch.delenv("APP_ENV")
    assert config.app_env() == "production"
    monkeypatch.setenv("APP_ENV", "")
    assert config.app_env() == "production"


def test_the_suite_runs_in_test_mode(app):
    assert os.environ["APP_ENV"] == "test"
    assert app.config["APP_ENV"] == "test"


@pytest.mark.parametrize("env", ["prod", "staging", "Production", "dev"])
def test_an_unknown_mode_is_refused_by_name(monkeypatch, unused_database, env):
    monkeypatch.setenv("APP_ENV", env)
    with pytest.raises(ConfigError, match=f"APP_ENV={env!r} is not a mode") as refused:
        create_app({"SQLALCHEMY_DATABASE_URI": unused_database})
    assert set(refused.value.problems) == {"APP_ENV"}


def test_development_keeps_its_defaults_so_make_run_works(unused_database):
    app = create_app({"APP_ENV": "development", "SQLALCHEMY_DATABASE_URI": unused_database})
    assert app.config["SECRET_KEY"] == config.DEV_SECRET_KEY
    assert app.config["STRIPE_SECRET_KEY"] == config.DEV_STRIPE_SECRET_KEY
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_a_bare_gunicorn_is_production_and_refuses_naming_what_to_set():
    """`gunicorn wsgi:app` with nothing set: the worker refuses to boot and gunicorn stops."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "1",
                             "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Refusing to start in production mode" in result.stderr
    for name in ("SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET",
                 "STRIPE_API_BASE", "PUBLIC_BASE_URL", "TRUSTED_HOSTS", "DATABASE_URL"):
        assert f"  {name}: " in result.stderr, name


def test_wsgi_starts_in_production_when_everything_is_set(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
           **{name: value for name, value in PRODUCTION.items() if isinstance(value, str)},
           "TRUSTED_HOSTS": f"{HOST}, .{HOST}", "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}"}
    del env["APP_ENV"]  # production is the default
    code = "from wsgi import app; c = app.config; print(c['APP_ENV'], c['TRUSTED_HOSTS'], c['SESSION_COOKIE_SECURE'])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"production ['{HOST}', '.{HOST}'] True"


# --- production refuses development values, each by name -------------------------

REFUSED = [
    ("SECRET_KEY", {"SECRET_KEY": None}),
    ("SECRET_KEY", {"SECRET_KEY": ""}),
    ("SECRET_KEY", {"SECRET_KEY": config.DEV_SECRET_KEY}),
    ("SECRET_KEY", {"SECRET_KEY": "x7Lp2" * 6 + "a"}),  # 31 characters
    ("STRIPE_SECRET_KEY", {"STRIPE_SECRET_KEY": None}),
    ("STRIPE_SECRET_KEY", {"STRIPE_SECRET_KEY": config.DEV_STRIPE_SECRET_KEY}),
    ("STRIPE_SECRET_KEY", {"STRIPE_SECRET_KEY": "sk_test_localstripe_2"}),
    ("STRIPE_SECRET_KEY", {"STRIPE_SECRET_KEY": "not-a-stripe-key"}),
    ("STRIPE_PUBLISHABLE_KEY", {"STRIPE_PUBLISHABLE_KEY": ""}),
    ("STRIPE_PUBLISHABLE_KEY", {"STRIPE_PUBLISHABLE_KEY": config.DEV_STRIPE_PUBLISHABLE_KEY}),
    ("STRIPE_PUBLISHABLE_KEY", {"STRIPE_PUBLISHABLE_KEY": "pk_test_51HxYzAbCdEfGhIjKlMnOp"}),  # live secret key
    ("STRIPE_WEBHOOK_SECRET", {"STRIPE_WEBHOOK_SECRET": None}),
    ("STRIPE_WEBHOOK_SECRET", {"STRIPE_WEBHOOK_SECRET": config.DEV_STRIPE_WEBHOOK_SECRET}),
    ("STRIPE_WEBHOOK_SECRET", {"STRIPE_WEBHOOK_SECRET": "whsec_test_localstripe"}),
    ("STRIPE_API_BASE", {"STRIPE_API_BASE": config.DEV_STRIPE_API_BASE}),
    ("STRIPE_API_BASE", {"STRIPE_API_BASE": "https://localhost:8420"}),
    ("STRIPE_API_BASE", {"STRIPE_API_BASE": "https://[::1]:8420"}),
    ("STRIPE_API_BASE", {"STRIPE_API_BASE": "http://stripe-proxy.example.jp"}),
    ("STRIPE_JS_URL", {"STRIPE_JS_URL": f"{config.DEV_STRIPE_API_BASE}/js.stripe.com/v3/"}),
    ("PUBLIC_BASE_URL", {"PUBLIC_BASE_URL": None}),
    ("PUBLIC_BASE_URL", {"PUBLIC_BASE_URL": f"http://{HOST}"}),
    ("PUBLIC_BASE_URL", {"PUBLIC_BASE_URL": "https://127.0.0.1:5000", "TRUSTED_HOSTS": ["127.0.0.1"]}),
    ("TRUSTED_HOSTS", {"TRUSTED_HOSTS": None}),
    ("TRUSTED_HOSTS", {"TRUSTED_HOSTS": []}),
    ("TRUSTED_HOSTS", {"TRUSTED_HOSTS": ["other.example.jp"]}),
    ("DATABASE_URL", {"SQLALCHEMY_DATABASE_URI": config.database_url(None)}),
    ("MAIL_BACKEND", {"MAIL_BACKEND": "outbox"}),
    ("MAIL_FROM", {"MAIL_FROM": config.DEV_MAIL_FROM}),
    ("RATELIMIT_STORAGE_URI", {"RATELIMIT_STORAGE_URI": "memory://"}),
    ("RATELIMIT_ENABLED", {"RATELIMIT_ENABLED": False}),
    ("FLASK_DEBUG", {"DEBUG": True}),
    ("SESSION_COOKIE_SECURE", {"SESSION_COOKIE_SECURE": False}),
    ("ISSUER_NAME", {"ISSUER_NAME": config.DEMO_ISSUER_NAME}),
    ("ISSUER_NAME_EN", {"ISSUER_NAME_EN": "REPLACE_ME"}),
]


@pytest.mark.parametrize(("name", "overrides"), REFUSED, ids=[f"{n}={list(o.values())[0]!r}" for n, o in REFUSED])
def test_production_refuses_a_missing_or_development_value_by_name(unused_database, name, overrides):
    refused = refusal(unused_database, **overrides)
    assert set(refused.problems) == {name}  # that one, and nothing else of the full configuration
    assert f"  {name}: " in str(refused)
    assert "Set these environment variables" in str(refused)


def test_production_with_every_default_names_every_variable(unused_database):
    defaults = {name: getattr(config.Config, name) for name in PRODUCTION if name != "APP_ENV"}
    defaults["TRUSTED_HOSTS"] = None
    refused = refusal(unused_database, **defaults, SQLALCHEMY_DATABASE_URI=config.database_url(None))
    assert set(refused.problems) == {
        "SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE",
        "STRIPE_JS_URL", "PUBLIC_BASE_URL", "TRUSTED_HOSTS", "DATABASE_URL", "MAIL_BACKEND", "MAIL_FROM",
        "RATELIMIT_STORAGE_URI", "ISSUER_NAME", "ISSUER_NAME_EN"}


def test_test_mode_accepts_development_values(unused_database):
    app = create_app({"SECRET_KEY": config.DEV_SECRET_KEY, "SQLALCHEMY_DATABASE_URI": unused_database})
    assert app.config["APP_ENV"] == "test"


# --- a properly configured production app -----------------------------------------


def test_a_full_production_config_starts_and_serves_its_host(production_app):
    response = production_app.test_client().get("/", base_url=HTTPS)
    assert response.status_code == 200
    assert production_app.config["SESSION_COOKIE_SECURE"] is True
    assert production_app.config["REMEMBER_COOKIE_SECURE"] is True


@pytest.mark.parametrize("host", ["attacker.invalid", f"{HOST}.attacker.invalid", "127.0.0.1"])
def test_production_answers_400_to_any_other_host(production_app, host):
    client = production_app.test_client()
    for response in (client.get("/", base_url=f"https://{host}"),
                     client.post("/account/reset", base_url=f"https://{host}", data={"email": "a@example.com"})):
        assert response.status_code == 400
        assert b"Facility reservations" not in response.data and "施設予約".encode() not in response.data
        assert response.headers["X-Frame-Options"] == "DENY"  # the refusal is hardened like any answer


def _forged_cookie(app, user_id: int) -> str:
    """What an attacker signs with the key that config.py publishes: the session of a logged-in user."""
    with app.test_request_context():
        login_user(db.session.get(User, user_id))
        payload = dict(session)
    return SecureCookieSessionInterface().get_signing_serializer(app).dumps(payload)


def test_a_cookie_forged_with_the_development_key_opens_nothing_in_production(app, make_user, production_app):
    admin_id = make_user("admin@example.com", role=Role.ADMIN).id
    db.session.rollback()  # the apps below read the database while this test waits
    development = create_app({"APP_ENV": "development", "SECRET_KEY": config.DEV_SECRET_KEY,
                              "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    forged = _forged_cookie(development, admin_id)
    try:
        # Against the development key the forgery works: that is the attack.
        opened = development.test_client(use_cookies=False).get("/staff/attention",
                                                                headers={"Cookie": f"session={forged}"})
        assert opened.status_code == 200
        assert "<h1>要対応</h1>".encode() in opened.data  # the staff page itself, not a log-in or error page

        client = production_app.test_client(use_cookies=False)  # only the Cookie header given
        # The same session signed with production's own key opens the page: only the key differs.
        genuine = client.get("/staff/attention", base_url=HTTPS,
                             headers={"Cookie": f"session={_forged_cookie(production_app, admin_id)}"})
        assert genuine.status_code == 200
        for path in ("/staff/attention", "/account/profile"):
            refused = client.get(path, base_url=HTTPS, headers={"Cookie": f"session={forged}"})
            assert refused.status_code == 302, path
            assert refused.headers["Location"].startswith("/account/login"), path
    finally:
        with development.app_context():
            db.engine.dispose()
