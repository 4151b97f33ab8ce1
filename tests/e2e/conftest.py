"""Browser tests: the real app served on a loopback port, driven by Chromium through Playwright.

The app is the top conftest's `app` (so every browser test runs on SQLite and on
PostgreSQL, each built by the migrations), with CSRF on as in production and
payments through localstripe, whose webhooks reach the served app. The test
thread shares the database with the server's threads: read through `db_read`,
which ends its transaction at once (on SQLite an open transaction holds the
write lock that the server needs).
"""
import threading
from datetime import timedelta

import pytest
from flask import request, request_finished
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from reservations.extensions import db
from reservations.services import rules
from reservations.timeutil import business_date, now_utc

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
# The page walks that scan every page (axe, reflow) run on both databases and in both languages, one language
# per database: each database serves every page and each language is scanned whole, in half the time of all
# four pairs (the walks are most of the suite's time on a 2-core machine; see README, Tests).
LANGUAGE_PER_DATABASE = [("sqlite", "ja"), ("postgresql", "en")]
CSP_LISTENER = """document.addEventListener('securitypolicyviolation', (e) => console.error(
  'Content Security Policy violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline')));"""


@pytest.fixture
def app_config(app_config, localstripe):
    return {**app_config, **localstripe.config, "WTF_CSRF_ENABLED": True}  # a real browser sends tokens


class _InFlight:
    """WSGI middleware that counts requests being served, so shutdown can wait for them."""

    def __init__(self, app):
        self.app = app
        self.active = 0
        self.idle = threading.Condition()

    def __call__(self, environ, start_response):
        with self.idle:
            self.active += 1
        try:
            body = self.app(environ, start_response)
            try:
                return list(body)  # buffered: the count covers the whole response
            finally:
                if hasattr(body, "close"):
                    body.close()  # as a WSGI server must (static files are open until then)
        finally:
            with self.idle:
                self.active -= 1
                self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.active == 0, timeout=timeout)


@pytest.fixture
def live_server(app, localstripe):
    """The app on a free loopback port, in a background thread, with localstripe's webhooks pointed at it."""
    counted = _InFlight(app)
    server = make_server("127.0.0.1", 0, counted, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = url
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    localstripe.register_webhook(f"{url}/webhooks/stripe")
    try:
        yield url
    finally:
        server.shutdown()
        thread.join(timeout=10)
        # A webhook may still be settling a payment: let it finish before the tables are emptied.
        assert counted.wait_idle(timeout=30), "a request was still running after 30 s"
        server.server_close()


class Webhooks:
    """The provider's webhook calls the served app answered, as (status, JSON), to wait on without sleeping."""

    def __init__(self):
        self.answers: list[tuple[int, dict]] = []
        self._changed = threading.Condition()

    def record(self, sender, response, **extra):
        if request.path == "/webhooks/stripe":
            with self._changed:
                self.answers.append((response.status_code, response.get_json(silent=True) or {}))
                self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = 15) -> list[tuple[int, dict]]:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.answers), timeout=timeout), self.answers
            return list(self.answers)


@pytest.fixture
def webhooks(app):
    hooks = Webhooks()
    request_finished.connect(hooks.record, app)
    yield hooks
    request_finished.disconnect(hooks.record, app)


@pytest.fixture
def db_read(app):
    """Run a query in the test thread and end its transaction at once; returns what it returned.

    Return plain values: rows are detached afterwards, so touching one later raises
    DetachedInstanceError rather than quietly opening a transaction that blocks the server.
    """

    def read(fn):
        db.session.rollback()
        try:
            return fn()
        finally:
            db.session.expunge_all()
            db.session.rollback()

    return read


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh phone-sized browser profile; fails the test if the page throws a script error."""
    context = browser.new_context(viewport=PHONE, locale="ja-JP", timezone_id="Asia/Tokyo", base_url=live_server)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    # Whatever the Content-Security-Policy blocks: the page's own event, and Chromium's console line.
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    script_errors: list[str] = []
    csp_violations: list[str] = []
    page.on("pageerror", lambda exc: script_errors.append(str(exc)))
    page.on("console", lambda msg: csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield page
    context.close()
    assert script_errors == [], script_errors
    assert csp_violations == [], csp_violations


@pytest.fixture
def day():
    """A day 10 to 20 days ahead, open for booking online."""
    today = business_date(now_utc())
    return next(d for d in (today + timedelta(days=n) for n in range(10, 21)) if not rules.is_year_end(d))


def type_card(page, number: str) -> None:
    """localstripe's card Element (Stripe's iframe in production): plain inputs named by their placeholders."""
    card = page.locator("#card-element")
    card.get_by_placeholder("number", exact=True).press_sequentially(number)
    card.get_by_placeholder("exp_month").fill("12")
    card.get_by_placeholder("exp_year").fill("30")
    card.get_by_placeholder("cvc").fill("123")
    card.get_by_placeholder("postal_code").fill("1040061")
