"""The tour: every page of the resident side, in each state worth checking, for the page-wide browser checks.

The accessibility scan (test_accessibility.py), the language checks (test_language.py)
and the reflow checks (test_reflow.py) walk the same tour, so a page added here is
checked by all three; test_accessibility.py's route-list test fails when a GET route
of the resident side is not in it (`COVERED`).

The data is made in the database by the test thread before the walk (`build_world`),
not by clicking; the walk itself only clicks where the page to check is the result of
a click (a form with errors, a declined card, 3-D Secure, a cancellation, a refused
request). Each step checks where it landed (the route and the status), so the
registry cannot claim a page the walk never showed.

Selectors are language-independent (ids, names, types), so one walk serves Japanese and English.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, time, timedelta

from playwright.sync_api import Browser, BrowserContext, Page, expect
from werkzeug.exceptions import MethodNotAllowed, NotFound

from reservations.extensions import db
from reservations.models import Building, Closure, Division, Letting, Residency, Room, RoomEquipment, User
from reservations.public.labels import hiragana
from reservations.services import accounts, checkout, deadline
from reservations.services.booking import reserve
from reservations.services.rules import hourly_slot, is_holiday, is_year_end
from reservations.timeutil import business_date, now_utc
from tests.e2e.conftest import CSP_LISTENER, TIMEOUT_MS, type_card
from tests.exemptions_helpers import tour_group_kind, tour_pending_booking
from tests.groups_helpers import tour_group
from tests.helpers import DECLINED_CARD, OK_CARD, THREE_D_SECURE_CARD, book, provider_down
from tests.lottery_resident_helpers import tour_rounds

PASSWORD = "correct horse battery"
PHONE_HEIGHT = 740  # a common Android phone: 360 × 740 CSS px
DESKTOP_HEIGHT = 800

# The settings the tour's tests add to app_config (each test module overrides the fixture with them).
SETTINGS = {
    # Four holds at once, one per state of the payment page: more than a resident may keep.
    "MAX_LIVE_HOLDS": 4,
    # And two bookings to be paid by a deadline, by the signed payment link (services/deadline.py).
    "MAX_ACTIVE_BOOKINGS": 7,
    # The stylesheet and scripts are cached for the walk instead of asked for again on every page
    # (a few hundred pages per run): the pages are the same, the run shorter.
    "SEND_FILE_MAX_AGE_DEFAULT": 3600,
}

# The resident whose pages are shown: a name in the page's own script (an English page shows a Latin-letter
# name, as an English-speaking resident types it; the Japanese check would count a Latin name as untranslated).
NAMES = {"ja": "山田 花子", "en": "Hanako Yamada"}

# Catalog data, as a ward's catalog has it: Japanese names with their readings, a Japanese address,
# a closure in the facility's own words; one room without an English name, one with.
CATALOG = {
    "building": "中央区立テスト会館",
    "building_kana": "チュウオウクリツテストカイカン",
    "address": "東京都中央区築地一丁目1番1号",
    "room": "音楽室",
    "room_kana": "オンガクシツ",
    "court": "テニスコートA",
    "court_kana": "テニスコートエー",
    "court_en": "Tennis court A",
    "closure_reason": "空調設備点検",
}
DIVISIONS = [
    ("MORNING", time(9), time(12), 2800, 2800),
    ("AFTERNOON", time(13), time(17), 3600, 3600),
    ("EVENING", time(18), time(21), 3600, 3600),
]


def catalog_texts() -> list[str]:
    """What the pages may show of the catalog: the strings, and the readings in hiragana too (as ruby prints them)."""
    texts = [v for k, v in CATALOG.items() if not k.endswith("_en")]
    readings = [hiragana(v) for k, v in CATALOG.items() if k.endswith("_kana")]
    return texts + readings


@dataclass
class World:
    """What build_world made, as plain values (the rows stay in the test thread's session no longer)."""

    app: object
    lang: str
    email: str
    user_key: str  # what Flask-Login keeps in the session for the resident
    room_id: int
    court_id: int
    day: date  # a plain weekday two weeks ahead, bookable
    other_day: date
    newcomer_token: str  # the mailed link of someone who signed up and has not followed it yet
    reset_token: str  # the resident's mailed link to set a new password
    verify_token: str = ""  # the resident's own confirmation link (the signed-in walk starts unconfirmed)
    bookings: dict[str, int] = field(default_factory=dict)
    pay_links: dict[str, str] = field(default_factory=dict)  # the signed payment links' tokens, by booking


def _booking_days() -> tuple[date, date]:
    days = []
    day = business_date(now_utc()) + timedelta(days=14)
    while len(days) < 2:
        if not is_holiday(day) and not is_year_end(day) and day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days[0], days[1]


def _catalog(day: date, other_day: date) -> tuple[Room, Room]:
    building = Building(name=CATALOG["building"], name_kana=CATALOG["building_kana"], name_en="",
                        address=CATALOG["address"])
    room = Room(building=building, name=CATALOG["room"], name_kana=CATALOG["room_kana"], name_en="",
                kind="music_room", capacity=30, letting=Letting.DIVISION, area_m2=52)
    for pos, (code, start, end, weekday_fee, holiday_fee) in enumerate(DIVISIONS):
        room.divisions.append(Division(code=code, position=pos, start_time=start, end_time=end,
                                       weekday_fee=weekday_fee, holiday_fee=holiday_fee))
    room.equipment.append(RoomEquipment(code="piano"))
    # A one-day closure in the facility's words, soon (so the calendar of this month or the next shows it).
    closed = business_date(now_utc()) + timedelta(days=3)
    while closed in (day, other_day):
        closed += timedelta(days=1)
    room.closures.append(Closure(kind="period", start_date=closed, end_date=closed, reason=CATALOG["closure_reason"]))
    court = Room(building=building, name=CATALOG["court"], name_kana=CATALOG["court_kana"], name_en=CATALOG["court_en"],
                 kind="court", capacity=4, letting=Letting.HOURLY, open_time=time(9), close_time=time(21),
                 min_minutes=60, max_minutes=180, step_minutes=60, weekday_hourly_fee=1000, holiday_hourly_fee=1500)
    db.session.add_all([room, court])
    return room, court


def build_world(app, localstripe, *, lang: str, bookings: bool = True) -> World:
    """The catalog, a newcomer, the resident and (for the signed-in walk) a booking in each state the pages show.

    Runs in the test thread, committing as it goes, and leaves no transaction open (the served
    app needs the SQLite write lock).
    """
    day, other_day = _booking_days()
    assert app.config["MAX_LIVE_HOLDS"] >= 4, "the tour's settings (tour.SETTINGS) are not in app_config"
    db.session.rollback()
    try:
        room, court = _catalog(day, other_day)
        email = f"hanako.{uuid.uuid4().hex[:6]}@example.com"
        user = User(email=email, name=NAMES[lang], residency=Residency.RESIDENT, locale=lang,
                    email_verified_at=now_utc())
        newcomer = User(email=f"new.{uuid.uuid4().hex[:6]}@example.com", name=NAMES[lang],
                        residency=Residency.RESIDENT, locale=lang)
        for person in (user, newcomer):
            person.set_password(PASSWORD)
        db.session.add_all([user, newcomer])
        db.session.commit()
        world = World(app=app, lang=lang, email=email, user_key=user.get_id(), room_id=room.id, court_id=court.id,
                      day=day, other_day=other_day, newcomer_token=accounts.email_verification_token(newcomer),
                      reset_token=accounts.request_password_reset(email).token)
        if bookings:
            paid = book(user, room, ("AFTERNOON",), day=other_day)
            assert checkout.pay(paid.payment, token=localstripe.card_token(OK_CARD))[0] == "confirmed"
            db.session.commit()
            world.bookings = {
                "paid": paid.id,
                "held": book(user, room, ("MORNING",), day=day).id,
                "declined": book(user, room, ("AFTERNOON",), day=day).id,
                "three_d_secure": book(user, room, ("EVENING",), day=day).id,
                "unavailable": book(user, room, ("MORNING",), day=other_day).id,
            }
            # Two bookings to be paid by a deadline (as at the counter), through the signed link: one to pay, one paid.
            by_link, by_link_paid = (
                reserve(user, court, hourly_slot(court, day, time(hour), 60), deadline=True) for hour in (10, 12))
            db.session.commit()
            assert checkout.pay(by_link_paid.payment, token=localstripe.card_token(OK_CARD))[0] == "confirmed"
            db.session.commit()
            world.pay_links = {"to pay": deadline.link_token(by_link), "paid": deadline.link_token(by_link_paid)}
            # The walk starts as a resident who has not confirmed the address yet (the verification page),
            # and confirms it by the mailed link.
            user.email_verified_at = None
            db.session.commit()
            world.verify_token = accounts.email_verification_token(user)
        return world
    finally:
        db.session.expunge_all()
        db.session.rollback()


# --- the browser ------------------------------------------------------------------------


class Visit:
    """One browser context (a browser set to one language, at one width) and what went wrong in it."""

    def __init__(self, browser: Browser, base_url: str, *, lang: str, width: int, height: int | None = None):
        self.context: BrowserContext = browser.new_context(
            viewport={"width": width, "height": height or (PHONE_HEIGHT if width < 640 else DESKTOP_HEIGHT)},
            locale={"ja": "ja-JP", "en": "en-GB"}[lang], timezone_id="Asia/Tokyo", base_url=base_url)
        self.base_url = base_url
        self.context.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        self.context.add_init_script(CSP_LISTENER)
        self.page: Page = self.context.new_page()
        self.script_errors: list[str] = []
        self.navigations: list[tuple[str, str, int]] = []  # (method, url, status) of the main frame's documents
        self.page.on("pageerror", lambda exc: self.script_errors.append(str(exc)))
        self.page.on("console", lambda msg: self.script_errors.append(msg.text)
                     if "Content Security Policy" in msg.text else None)
        self.page.on("response", self._record)

    def _record(self, response) -> None:
        request = response.request
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self.navigations.append((request.method, response.url, response.status))

    def close(self) -> None:
        self.context.close()


@dataclass(frozen=True)
class Step:
    name: str
    covers: str | None  # the route this step requests (None: no route, e.g. the 404 page)
    lands: str | None  # the route whose page is shown at the end
    status: int
    signed_in: bool | None  # None: in both walks
    run: Callable[[Page, World], None]


STEPS: list[Step] = []


def step(name: str, covers: str | None, *, lands: str | None = "", status: int = 200,
         signed_in: bool | None = None):
    def register(run):
        STEPS.append(Step(name, covers, covers if lands == "" else lands, status, signed_in, run))
        return run
    return register


def goto(path_of: Callable[[World], str]) -> Callable[[Page, World], None]:
    return lambda page, world: page.goto(path_of(world))


def steps_for(signed_in: bool) -> list[Step]:
    return [s for s in STEPS if s.signed_in in (None, signed_in)]


def page_names(signed_in: bool) -> list[str]:
    return [s.name for s in steps_for(signed_in)]


def _submit(page: Page) -> None:
    """Send the page's main form and wait for the page that answers."""
    with page.expect_navigation():
        page.locator("main form [type=submit]").last.click()


# --- the steps, in walking order ---------------------------------------------------------

step("home", "public.index")(goto(lambda w: "/"))


@step("verification mail page", "account.verification_mail", signed_in=True)
def _verification_page(page, world):
    page.goto("/account/verify")
    expect(page.locator("main form [type=submit]")).to_be_visible()  # the unconfirmed resident's form


# Following the mailed link: signed out it lands on the log-in page, signed in on the start page.
step("verify link result", "account.verify", lands="account.login", signed_in=False)(
    goto(lambda w: f"/account/verify/{w.newcomer_token}"))
step("verify link result", "account.verify", lands="public.index", signed_in=True)(
    goto(lambda w: f"/account/verify/{w.verify_token}"))
step("verify invalid link", "account.verify", status=400)(goto(lambda w: "/account/verify/not-a-token"))

step("search results", "public.index")(goto(lambda w: f"/?date={w.day.isoformat()}&capacity=2"))
step("room with its month calendar", "public.room")(goto(lambda w: f"/rooms/{w.room_id}"))
step("day view", "public.room_day")(goto(lambda w: f"/rooms/{w.room_id}/days/{w.day.isoformat()}"))
step("day view, let by the hour", "public.room_day")(goto(lambda w: f"/rooms/{w.court_id}/days/{w.day.isoformat()}"))

step("sign-up", "account.signup", signed_in=False)(goto(lambda w: "/account/signup"))


@step("sign-up with errors", "account.signup", status=422, signed_in=False)
def _signup_errors(page, world):
    page.goto("/account/signup")
    page.locator("#email").fill("not-an-address")
    page.locator("#password").fill("short")
    page.locator("#confirm").fill("other")
    _submit(page)


step("sign-up sent", "account.signup_sent", signed_in=False)(goto(lambda w: "/account/signup/sent"))
step("log-in", "account.login", signed_in=False)(goto(lambda w: "/account/login"))
step("password reset request", "account.reset_request")(goto(lambda w: "/account/reset"))
step("new password", "account.reset_password", signed_in=False)(goto(lambda w: f"/account/reset/{w.reset_token}"))
step("new password, invalid link", "account.reset_password", status=400, signed_in=False)(
    goto(lambda w: "/account/reset/not-a-token"))

step("booking review", "bookings.review", signed_in=True)(
    goto(lambda w: f"/rooms/{w.room_id}/book?date={w.other_day.isoformat()}&divisions=EVENING"))
step("payment", "bookings.pay_page", signed_in=True)(goto(lambda w: f"/bookings/{w.bookings['held']}/pay"))


@step("payment, card declined", "bookings.pay_page", signed_in=True)
def _declined(page, world):
    page.goto(f"/bookings/{world.bookings['declined']}/pay")
    type_card(page, DECLINED_CARD)
    page.locator("#pay-button").click()
    expect(page.locator("#pay-errors a")).to_be_visible()  # the message, and the way to another time
    expect(page.locator("#pay-button")).to_be_disabled()


@step("after 3-D Secure", "bookings.pay_page", lands="bookings.receipt", signed_in=True)
def _three_d_secure(page, world):
    booking_id = world.bookings["three_d_secure"]
    page.goto(f"/bookings/{booking_id}/pay")
    type_card(page, THREE_D_SECURE_CARD)
    page.locator("#pay-button").click()
    page.get_by_role("button", name="Complete authentication").click()  # localstripe's stand-in for the bank's page
    page.wait_for_url(f"**/bookings/{booking_id}/receipt")
    expect(page.locator(".flash.success")).to_be_visible()


step("receipt", "bookings.receipt", signed_in=True)(goto(lambda w: f"/bookings/{w.bookings['paid']}/receipt"))
step("booking detail, held", "bookings.detail", signed_in=True)(goto(lambda w: f"/bookings/{w.bookings['held']}"))
step("booking detail, confirmed, with the cancel form", "bookings.detail", signed_in=True)(
    goto(lambda w: f"/bookings/{w.bookings['paid']}"))


@step("booking detail, cancelled with a refund", "bookings.detail", signed_in=True)
def _cancelled(page, world):
    # There is no confirmation step: the detail page's form cancels, and the same page says what happened.
    page.goto(f"/bookings/{world.bookings['paid']}")
    with page.expect_navigation():
        page.locator("form[action$='/cancel'] [type=submit]").click()
    expect(page.locator(".payment .refunded")).to_be_visible()


step("my bookings", "bookings.mine", signed_in=True)(goto(lambda w: "/bookings"))

# Registered groups: the application form (and with errors) before the resident has a group, then the group
# (made in the database, active and inside its renewal window) on My groups and on its own page.
step("apply for a group", "groups.apply", signed_in=True)(goto(lambda w: "/groups/apply"))


@step("apply for a group with errors", "groups.apply", status=422, signed_in=True)
def _group_errors(page, world):
    page.goto("/groups/apply")
    _submit(page)


step("my groups", "groups.mine", signed_in=True)(
    goto(lambda w: (tour_group(int(w.user_key.split(":")[0]), w.lang), "/groups/")[1]))
step("a group's page", "groups.detail", signed_in=True)(
    goto(lambda w: f"/groups/{tour_group(int(w.user_key.split(':')[0]), w.lang)}"))

# Exemptions (減免): the review booking for the group with a reduction, and a booking whose exemption waits for
# staff on its page and in My bookings (made in the database).
step("booking review, for a group with an exemption", "bookings.review", signed_in=True)(
    goto(lambda w: f"/rooms/{w.room_id}/book?date={w.other_day.isoformat()}&divisions=EVENING"
                   f"&book_as={tour_group(int(w.user_key.split(':')[0]), w.lang)}&exemption={tour_group_kind()}"))
step("booking detail, exemption pending", "bookings.detail", signed_in=True)(
    goto(lambda w: f"/bookings/{tour_pending_booking(int(w.user_key.split(':')[0]), w.court_id, w.other_day)}"))
step("my bookings, an exemption pending", "bookings.mine", signed_in=True)(
    goto(lambda w: (tour_pending_booking(int(w.user_key.split(":")[0]), w.court_id, w.other_day), "/bookings")[1]))

# The lottery (抽選): the rounds, a published round (the resident's entries marked once signed in) and an open one,
# the room's calendar in a month let by lottery, applying (and with errors), and My bookings' lottery section.
# The rounds are made in the database on first use (tests/lottery_resident_helpers.py).
step("lottery rounds", "lottery.index")(goto(lambda w: (tour_rounds(w), "/lottery/")[1]))
step("lottery round, published", "lottery.round_page")(goto(lambda w: f"/lottery/{tour_rounds(w)['published']}/"))
step("lottery round, open", "lottery.round_page")(goto(lambda w: f"/lottery/{tour_rounds(w)['open']}/"))
step("room calendar, a month let by lottery", "public.room")(
    goto(lambda w: f"/rooms/{w.room_id}?month={tour_rounds(w)['month']}"))
step("lottery application", "lottery.apply", signed_in=True)(
    goto(lambda w: f"/lottery/{tour_rounds(w)['open']}/apply"))


@step("lottery application with errors", "lottery.apply", status=422, signed_in=True)
def _lottery_errors(page, world):
    page.goto(f"/lottery/{tour_rounds(world)['open']}/apply")
    page.locator("#day").fill(tour_rounds(world)["open_day"])
    _submit(page)  # a day, but no division


step("my bookings, lottery applications", "bookings.mine", signed_in=True)(
    goto(lambda w: (tour_rounds(w), "/bookings")[1]))


@step("payment unavailable (503)", "bookings.pay_page", status=503, signed_in=True)
def _unavailable(page, world):
    with provider_down(world.app):
        page.goto(f"/bookings/{world.bookings['unavailable']}/pay")


step("payment by the signed link", "bookings.pay_by_link_page", signed_in=True)(
    goto(lambda w: f"/pay/{w.pay_links['to pay']}"))
step("payment by the signed link, paid", "bookings.pay_by_link_page", signed_in=True)(
    goto(lambda w: f"/pay/{w.pay_links['paid']}"))
step("payment link, invalid (404)", "bookings.pay_by_link_page", status=404)(goto(lambda w: "/pay/not-a-token"))
step("profile", "account.profile", signed_in=True)(goto(lambda w: "/account/profile"))


@step("profile with errors", "account.profile", status=422, signed_in=True)
def _profile_errors(page, world):
    page.goto("/account/profile")
    page.locator("#phone").fill("not a phone")
    page.locator("#name").fill("")
    with page.expect_navigation():
        page.locator("form[action$='/account/profile'] [type=submit]").click()


step("not found (404)", None, status=404)(goto(lambda w: "/no-such-page"))


@step("too many requests (429)", "account.reset_request", status=429)
def _too_many(page, world):
    """A real refusal: the per-address reset limit lowered for this app (limits.py reads it per request)."""
    config = world.app.config
    saved = config["RATELIMIT_RESET"]
    config["RATELIMIT_RESET"] = "1 per hour"
    try:
        page.goto("/account/reset")
        for _ in range(3):  # the first is answered, the second refused
            page.locator("#email").fill("nobody@example.com")
            with page.expect_navigation() as answer:
                page.locator("main form [type=submit]").click()
            if answer.value.status == 429:
                return
    finally:
        config["RATELIMIT_RESET"] = saved


# --- the registry and the walk -------------------------------------------------------------

COVERED: dict[str, list[str]] = {}
for _step in STEPS:
    for _endpoint in {_step.covers, _step.lands} - {None}:
        COVERED.setdefault(_endpoint, []).append(_step.name)


def _endpoint(app, method: str, url: str) -> str | None:
    path = re.sub(r"^https?://[^/]+", "", url).split("#")[0]
    path, _, query = path.partition("?")
    try:
        endpoint, _args = app.url_map.bind("localhost").match(path, method=method, query_args=query)
    except (NotFound, MethodNotAllowed):
        return None
    return endpoint


def sign_in(visit: Visit, world: World, *, signed_in: bool) -> None:
    """Set the browser's session as the language switch and the log-in form leave it (both are pages of
    the tour, shown and checked there): a session cookie signed with the app's own key, in the world's
    language, and signed in as its resident or not."""
    session = {"lang": world.lang}
    if signed_in:
        session.update(_user_id=world.user_key, _fresh=True)
    set_session(visit, world.app, session)


def set_session(visit: Visit, app, session: dict) -> None:
    """Give the browser a session cookie holding `session`, signed with the app's own key."""
    value = app.session_interface.get_signing_serializer(app).dumps(session)
    visit.context.clear_cookies()
    visit.context.add_cookies([{"name": app.config["SESSION_COOKIE_NAME"], "value": value,
                                "url": visit.base_url, "httpOnly": True, "sameSite": "Lax"}])


def walk(visit: Visit, world: World, check: Callable[[str, Page], None], *, signed_in: bool) -> list[str]:
    """Show each page of the signed-in or the signed-out walk and call check(name, page) on it; returns the
    names checked. The signed-in walk needs a world built with its bookings, and runs once per world.

    Fails at once when a step does not land where it says (a wrong route or status means the
    registry would lie), and at the end on any script error or Content-Security-Policy violation.
    """
    assert world.bookings or not signed_in, "the signed-in walk shows bookings: build_world(bookings=True)"
    sign_in(visit, world, signed_in=signed_in)
    page = visit.page
    names = []
    for s in steps_for(signed_in):
        visit.navigations.clear()
        s.run(page, world)
        page.wait_for_load_state()
        assert visit.navigations, f"{s.name}: no page was loaded"
        first, last = visit.navigations[0], visit.navigations[-1]
        where = f"{s.name}: requested {first[1]} ({first[2]}), shown {last[1]} ({last[2]})"
        assert _endpoint(world.app, first[0], first[1]) == s.covers, where
        assert _endpoint(world.app, last[0], last[1]) == s.lands and last[2] == s.status, where
        expect(page.locator("html")).to_have_attribute("lang", world.lang)
        check(s.name, page)
        names.append(s.name)
    assert visit.script_errors == [], visit.script_errors
    return names


class AxeSummary:
    """What the axe scans of this run saw, for the line tests/conftest.py prints at the end.

    Under xdist each worker counts its own scans and hands them to the controller, which adds them up
    (tests/conftest.py: pytest_sessionfinish on a worker, pytest_testnodedown on the controller)."""

    def __init__(self):
        self.scans = self.violations = 0
        self.pages: set[tuple[str, bool]] = set()
        self.combinations: dict[str, set] = {"languages": set(), "widths": set(), "databases": set()}

    def record(self, name: str, signed_in: bool, lang: str, width: int, backend: str, violations: int) -> None:
        self.scans += 1
        self.violations += violations
        self.pages.add((name, signed_in))
        for key, value in zip(self.combinations, (lang, width, backend), strict=True):
            self.combinations[key].add(value)

    def to_dict(self) -> dict:
        """Plain lists and numbers, as an xdist worker sends them to the controller (workeroutput)."""
        return {"scans": self.scans, "violations": self.violations, "pages": sorted(self.pages),
                "combinations": {k: sorted(v, key=str) for k, v in self.combinations.items()}}

    def merge(self, figures: dict) -> None:
        """Add what another process (an xdist worker) counted: `to_dict()` of its summary."""
        self.scans += figures["scans"]
        self.violations += figures["violations"]
        self.pages.update((name, signed_in) for name, signed_in in figures["pages"])
        for key, values in figures["combinations"].items():
            self.combinations[key].update(values)

    def line(self) -> str:
        signed_in = sum(1 for _, s in self.pages if s)
        factors = ", ".join(f"{len(v)} {k}" for k, v in self.combinations.items())
        return (f"axe: {self.scans} page scans ({len(self.pages)} pages: {len(self.pages) - signed_in} signed out, "
                f"{signed_in} signed in; in {factors}, one language per database), {self.violations} violation nodes")


AXE_SUMMARY = AxeSummary()
