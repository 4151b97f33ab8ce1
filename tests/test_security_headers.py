"""HTTP hardening: security headers on every response, cookie attributes, and the body size limit."""
import re
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine

from reservations.extensions import db
from reservations.timeutil import now_utc
from tests.helpers import booking_day
from tests.test_config import HOST, HTTPS, production

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LOCALSTRIPE_JS = "http://127.0.0.1:8420/js.stripe.com/v3/"
HARDENING = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "STRIPE_JS_URL": LOCALSTRIPE_JS}


def csp(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    return {name: sources for name, *sources in (part.split() for part in policy.split(";"))}


def assert_hardened(response) -> None:
    for name, value in HARDENING.items():
        assert response.headers.get(name) == value, name
    assert csp(response)["frame-ancestors"] == ["'none'"]


# --- every response ----------------------------------------------------------------

RESPONSES = {
    "page": ("GET", "/", {}, 200),
    "login form": ("GET", "/account/login", {}, 200),
    "not found": ("GET", "/no/such/page", {}, 404),
    "wrong method": ("GET", "/webhooks/stripe", {}, 405),
    "redirect": ("POST", "/lang/en", {}, 302),
    "static file": ("GET", "/static/pay.js", {}, 200),
    "webhook JSON": ("POST", "/webhooks/stripe", {"json": {"id": "evt_1"}, "headers": {"Stripe-Signature": "t=1,v1=0"}},
                     400),
}


@pytest.mark.parametrize("kind", RESPONSES)
def test_every_kind_of_response_carries_the_security_headers(client, kind):
    method, path, kwargs, status = RESPONSES[kind]
    with client.open(path, method=method, **kwargs) as response:
        assert response.status_code == status
        assert_hardened(response)
        assert "Strict-Transport-Security" not in response.headers  # plain http


def test_the_webhook_answers_json_with_the_headers(client):
    response = client.post("/webhooks/stripe", data=b"{}", content_type="application/json",
                           headers={"Stripe-Signature": "t=1,v1=0"})
    assert response.status_code == 400 and response.is_json
    assert_hardened(response)


def test_a_server_error_carries_the_security_headers(app, client):
    def boom():
        raise RuntimeError("a bug")

    app.add_url_rule("/_boom", "boom", boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer 500 as production does, instead of raising into the test
    response = client.get("/_boom")
    assert response.status_code == 500
    assert_hardened(response)


# --- the content security policy ---------------------------------------------------


def test_the_policy_allows_only_this_site_and_the_configured_stripe_js(client):
    policy = csp(client.get("/"))
    stripe = "http://127.0.0.1:8420"  # localstripe serves Stripe.js, answers its calls and runs 3-D Secure
    assert policy == {
        "default-src": ["'self'"],
        "script-src": ["'self'", stripe],
        "connect-src": ["'self'", stripe],
        "frame-src": [stripe],
        "img-src": ["'self'", "data:"],
        "style-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    assert not any("unsafe" in source or source == "*" for sources in policy.values() for source in sources)


def test_with_real_stripe_the_policy_allows_stripe_js_its_api_and_the_3d_secure_frames(backend, database_urls):
    app = production(database_urls[backend])
    try:
        policy = csp(app.test_client().get("/", base_url=HTTPS))
    finally:
        with app.app_context():
            db.engine.dispose()
    assert policy["script-src"] == ["'self'", "https://js.stripe.com", "https://*.js.stripe.com"]
    assert policy["connect-src"] == ["'self'", "https://api.stripe.com"]
    assert policy["frame-src"] == ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["default-src"] == ["'self'"]


class TestThePaymentPage:
    @pytest.fixture
    def app_config(self, app_config, localstripe):
        return {**app_config, **localstripe.config}

    def test_its_scripts_and_stripe_frames_are_all_allowed(self, client, resident, login_as, room, localstripe):
        login_as(resident)
        reserved = client.post(f"/rooms/{room.id}/book", data={
            "date": booking_day().isoformat(), "divisions": "MORNING", "expected_price": "2800"})
        assert re.fullmatch(r"/bookings/\d+/pay", reserved.headers["Location"])
        page = client.get(reserved.headers["Location"])
        assert page.status_code == 200
        policy = csp(page)
        scripts = re.findall(r'<script src="([^"]+)"', page.text)
        assert scripts == [f"{localstripe.url}/js.stripe.com/v3/", "/static/pay.js", "/static/site.js"]
        assert policy["script-src"] == ["'self'", localstripe.url]
        assert policy["connect-src"] == ["'self'", localstripe.url]  # Stripe.js tokenises the card there
        assert policy["frame-src"] == [localstripe.url]
        assert_hardened(page)


def test_no_template_has_inline_script_or_style():
    """The policy has no 'unsafe-inline': a template with inline code would break in the browser."""
    offending = []
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for pattern in (r"<script(?![^>]*\ssrc=)[^>]*>", r"<style\b", r"\sstyle=", r"\son[a-z]+=", r"javascript:"):
            offending += [f"{template.relative_to(TEMPLATES)}: {m.group(0)}" for m in re.finditer(pattern, text, re.I)]
    assert offending == []


# --- HSTS: only over TLS ---------------------------------------------------------------


def test_hsts_is_sent_over_https_only(client):
    assert "Strict-Transport-Security" not in client.get("/").headers
    secure = client.get("/", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert_hardened(secure)
    by_scheme = client.get("/no/such/page", environ_overrides={"wsgi.url_scheme": "https"})
    assert by_scheme.status_code == 404 and "Strict-Transport-Security" in by_scheme.headers


def test_a_forwarded_proto_counts_only_behind_a_configured_proxy(client):
    forwarded = {"X-Forwarded-Proto": "https"}
    assert "Strict-Transport-Security" not in client.get("/", headers=forwarded).headers


class TestBehindOneProxy:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "PROXY_FIX_X_FORWARDED": 1}

    def test_its_forwarded_https_gets_hsts(self, client):
        response = client.get("/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        assert "Strict-Transport-Security" not in client.get("/").headers


# --- cookies ---------------------------------------------------------------------------


def session_cookie(response) -> list[str]:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return [part.strip() for part in cookies[0].split(";")]


def test_in_test_mode_the_session_cookie_is_httponly_and_lax_but_not_secure(client):
    attributes = session_cookie(client.get("/account/login"))  # the form's CSRF token starts a session
    assert "HttpOnly" in attributes and "SameSite=Lax" in attributes
    assert "Secure" not in attributes  # development and tests run on plain http


def test_in_production_the_session_cookie_is_secure_httponly_and_lax(backend, database_urls):
    app = production(database_urls[backend])
    try:
        response = app.test_client().get("/", base_url=HTTPS)  # the language switch's CSRF token starts a session
    finally:
        with app.app_context():
            db.engine.dispose()
    attributes = session_cookie(response)
    assert {"Secure", "HttpOnly", "SameSite=Lax"} <= set(attributes)
    assert not any(a.lower().startswith(("expires=", "max-age=")) for a in attributes)  # ends with the browser
    assert app.config["REMEMBER_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_HTTPONLY"]
    assert app.config["REMEMBER_COOKIE_SAMESITE"] == "Lax"
    assert HOST in app.config["TRUSTED_HOSTS"]


def test_a_session_cookie_is_honoured_for_seven_days_after_it_was_signed(app, client, login_as, resident):
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(days=7)
    signed_at = now_utc()
    with time_machine.travel(signed_at, tick=False):
        login_as(resident)
    with time_machine.travel(signed_at + timedelta(days=7, seconds=1), tick=False):
        stale = client.get("/account/profile")
    assert stale.status_code == 302 and stale.headers["Location"].startswith("/account/login")

    with time_machine.travel(signed_at, tick=False):
        login_as(resident)
    with time_machine.travel(signed_at + timedelta(days=7), tick=False):
        assert client.get("/account/profile").status_code == 200


# --- the body size limit ---------------------------------------------------------------

LIMIT = 1024 * 1024


def test_the_body_limit_is_one_mebibyte(app):
    assert app.config["MAX_CONTENT_LENGTH"] == LIMIT


def test_an_oversized_form_gets_413_with_a_clear_page(client, english):
    response = client.post("/account/login", data={"email": "a@example.com", "password": "x" * LIMIT})
    assert response.status_code == 413
    assert "What you sent is too large to accept." in response.text
    assert_hardened(response)


def test_an_oversized_form_gets_the_japanese_page_by_default(client):
    response = client.post("/account/login", data={"email": "a@example.com", "password": "x" * LIMIT})
    assert response.status_code == 413
    assert "送信された内容が大きすぎるため、受け付けられません。" in response.text


def test_an_oversized_webhook_gets_413(client):
    big = client.post("/webhooks/stripe", data=b" " * (LIMIT + 1), content_type="application/json",
                      headers={"Stripe-Signature": "t=1,v1=0"})
    assert big.status_code == 413 and big.is_json
    assert_hardened(big)


class TestWithCsrfAsInProduction:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WTF_CSRF_ENABLED": True}

    def test_an_oversized_json_call_gets_413_in_json_for_the_pay_page(self, client):
        """The pay page's fetch shows `message` in its alert; CSRF protection reads the body first."""
        response = client.post("/bookings/1/pay", data=b'{"token": "' + b"x" * LIMIT + b'"}',
                               content_type="application/json")
        assert response.status_code == 413
        assert response.get_json() == {"status": "error", "retry": False,
                                       "message": "送信された内容が大きすぎるため、受け付けられません。"}
        assert_hardened(response)

    def test_a_form_just_under_the_limit_is_read(self, client):
        body = {"email": "a@example.com", "password": "x" * (LIMIT - 200)}
        assert client.post("/account/login", data=body).status_code == 400  # read, and refused for its token
