"""Keyboard only: a resident signs in, searches, books and pays without the mouse (issue 7).

The browser is driven by key presses alone (Tab, Shift+Tab, Enter, Space, arrow
keys, and typing into the field that has focus): never click, fill, check,
select_option or focus(). Focus moves by pressing Tab until the element wanted
has it, with a cap so that a missing or unreachable control fails the test
rather than looping. At every stop the focus must be visible: site.css's
:focus-visible rule draws a 3px outline (and a dark ring as box-shadow), which
Chromium applies to keyboard focus only, hence the real key presses. On every
page Shift+Tab must lead back to where focus came from at least once, so nothing
on the way is a keyboard trap.
"""
import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from reservations.extensions import db
from reservations.models import Booking, BookingState, PaymentState, Receipt
from reservations.timeutil import business_date, now_utc
from tests.e2e.conftest import CSP_LISTENER, TIMEOUT_MS

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
VIEWPORTS = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone360")]
CARD = "4242424242424242"  # typed without spaces: localstripe's number field jumps on at 16 characters
MAX_TABS = 80  # more than any page here needs (the room page: header, crumbs, fee table, up to 31 days)

# What has focus, described for the assertions and for a readable failure. Each element gets a number
# (in a WeakMap: the page's DOM is not touched), so a stop can be told apart from the one before it.
FOCUS_STATE = """(selector) => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  window.__kbIds = window.__kbIds || new WeakMap();
  window.__kbNext = (window.__kbNext || 0) + 1;
  if (!window.__kbIds.has(el)) window.__kbIds.set(el, window.__kbNext);
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  const attrs = ['id', 'name', 'type', 'href', 'placeholder', 'value']
    .filter((a) => el.hasAttribute(a)).map((a) => `${a}=${el.getAttribute(a)}`);
  const text = (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 50);
  return {
    id: window.__kbIds.get(el),
    what: `<${el.tagName.toLowerCase()} ${attrs.join(' ')}>${text}`,
    wanted: selector ? el.matches(selector) : false,
    focus: el.matches(':focus'),
    focusVisible: el.matches(':focus-visible'),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth) || 0,
    boxShadow: style.boxShadow,
    inViewport: box.width > 0 && box.height > 0 && box.bottom > 0 && box.right > 0
      && box.top < window.innerHeight && box.left < window.innerWidth,
  };
}"""


@dataclass
class Stop:
    id: int
    what: str


class Keyboard:
    """Tab through a page like a keyboard user, checking every focus stop on the way."""

    def __init__(self, page: Page):
        self.page = page
        self.stops: list[str] = []  # every stop, for the failure message
        self.pages: set[str] = set()  # the pages tabbed through ...
        self.untrapped: set[str] = set()  # ... and those where Shift+Tab was seen to lead back

    @property
    def here(self) -> str:
        return self.page.url.split("#")[0]

    def state(self, selector: str | None = None) -> dict | None:
        return self.page.evaluate(FOCUS_STATE, selector)

    def assert_visible(self, state: dict) -> None:
        where = f"{state['what']} on {self.page.url}"
        if not state["focus"]:  # document.activeElement, yet not :focus: a part of the control has it
            where += (" (the focus is on a part inside the control, such as a date input's calendar button,"
                      " where neither :focus nor :focus-visible match the input)")
        assert state["outlineStyle"] != "none" and state["outlineWidth"] >= 2, (
            f"no visible focus outline ({state['outlineStyle']} {state['outlineWidth']}px, box-shadow "
            f"{state['boxShadow']}, :focus-visible {state['focusVisible']}): {where}")
        assert state["inViewport"], f"the focused element is not in the viewport: {where}"

    def tab_to(self, selector: str, *, limit: int = MAX_TABS) -> int:
        """Press Tab until the focused element matches `selector`; returns the presses it took.

        Every element focused on the way must show its focus. When focus moved past at least one
        other element, Shift+Tab must return to that element and Tab come back (no trap).
        """
        self.page.wait_for_load_state()  # the style sheet and scripts of a page just opened are in
        self.pages.add(self.here)
        state = self.state(selector)
        if state is not None and state["wanted"]:
            self.assert_visible(state)
            return 0
        previous: Stop | None = None
        for presses in range(1, limit + 1):
            if state is not None:
                previous = Stop(state["id"], state["what"])
            self.page.keyboard.press("Tab")
            state = self.state(selector)
            assert state is not None, f"Tab left focus on the page body (after {self.stops[-3:]}) on {self.page.url}"
            self.stops.append(state["what"])
            self.assert_visible(state)
            if state["wanted"]:
                if previous is not None:
                    self.assert_not_trapped(state, previous)
                return presses
        raise AssertionError(f"{selector} not reached in {limit} Tab presses on {self.page.url}; "
                             f"the last stops: {self.stops[-8:]}")

    def assert_not_trapped(self, here: dict, previous: Stop) -> None:
        self.page.keyboard.press("Shift+Tab")
        back = self.state()
        assert back is not None and back["id"] == previous.id, (
            f"Shift+Tab from {here['what']} went to {back and back['what']}, not back to {previous.what}")
        self.assert_visible(back)
        self.page.keyboard.press("Tab")
        again = self.state()
        assert again is not None and again["id"] == here["id"], (
            f"Tab after Shift+Tab went to {again and again['what']}, not back to {here['what']}")
        self.untrapped.add(self.here)

    def assert_no_trap_anywhere(self) -> None:
        assert self.pages <= self.untrapped, f"no Shift+Tab check on {sorted(self.pages - self.untrapped)}"

    def activate(self, selector: str, key: str = "Enter") -> None:
        """Tab to the element and press Enter (or Space) on it."""
        self.tab_to(selector)
        self.page.keyboard.press(key)

    def type_into(self, selector: str, text: str) -> None:
        self.tab_to(selector)
        self.page.keyboard.type(text)
        expect(self.page.locator(selector)).to_have_value(text)


def header_control(page: Page, keys: Keyboard, selector: str) -> None:
    """Tab to a control in the site header; where the header folds its links behind a menu button
    (phones), open the menu with the keyboard first."""
    page.wait_for_load_state()  # site.js, at the end of the body, has folded the menu (or not)
    if not page.locator(selector).is_visible():
        toggle = 'header.site button[aria-expanded="false"]'
        keys.activate(toggle)
        expect(page.locator('header.site button[aria-expanded]')).to_have_attribute("aria-expanded", "true")
    keys.tab_to(selector)


@pytest.fixture
def new_page(browser, live_server):
    """Pages of fresh browser profiles at a given viewport; each fails the test on a script error or
    a Content-Security-Policy violation, as the `page` fixture does."""
    contexts = []
    problems: list[str] = []

    def make(viewport: dict) -> Page:
        context = browser.new_context(viewport=viewport, locale="ja-JP", timezone_id="Asia/Tokyo",
                                      base_url=live_server)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(CSP_LISTENER)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
        return page

    expect.set_options(timeout=TIMEOUT_MS)
    yield make
    for context in contexts:
        context.close()
    assert problems == [], problems


@pytest.fixture
def booker(make_user, room, db_read):
    """A confirmed resident (password 'correct horse') and the room's id."""
    user = make_user(name="山田 花子")
    return db_read(lambda: (user.email, room.id))


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_resident_books_and_pays_with_the_keyboard_alone(new_page, viewport, booker, day, db_read):
    email, room_id = booker
    page = new_page(viewport)
    keys = Keyboard(page)

    # The home page, in English (the header's language button), then the login link.
    page.goto("/")
    header_control(page, keys, 'header.site button[lang="en"]')
    page.keyboard.press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    header_control(page, keys, 'header.site a[href$="/account/login"]')
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    keys.type_into("#email", email)
    keys.type_into("#password", "correct horse")
    keys.activate('main form input[type="submit"]')
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator('header.site form[action$="/account/logout"] button')).to_be_attached()

    # The search form: a kind from the list (arrow keys), a number of people, a checkbox (Space), Search.
    keys.tab_to("#kind")
    expect(page.locator("#kind")).to_have_value("")
    for _ in range(5):  # Any kind, Hall, Music room: at most a few steps down
        if page.locator("#kind").input_value() == "music_room":
            break
        page.keyboard.press("ArrowDown")
    expect(page.locator("#kind")).to_have_value("music_room")
    keys.type_into("#capacity", "10")
    keys.tab_to("#online_only")
    page.keyboard.press("Space")
    expect(page.locator("#online_only")).to_be_checked()
    keys.activate('form.search button[type="submit"]')
    page.wait_for_url(re.compile(r"/\?.*kind=music_room"))
    expect(page.get_by_role("heading", name="1 room found")).to_be_visible()

    # The room from the results, then the day in the month calendar (the next month's, if it falls there).
    keys.activate(f"#room-{room_id} h3 a")
    page.wait_for_url(f"**/rooms/{room_id}")
    expect(page.get_by_role("heading", name="Availability")).to_be_visible()
    if day.month != business_date(now_utc()).month:
        keys.activate('.months a[rel="next"]')
        page.wait_for_url(re.compile(rf"/rooms/{room_id}\?month={day:%Y-%m}$"))
    keys.activate(f'table.calendar td[data-date="{day.isoformat()}"] a')
    page.wait_for_url(f"**/rooms/{room_id}/days/{day.isoformat()}#day")
    expect(page.locator("table.calendar td.chosen")).to_have_attribute("data-date", day.isoformat())

    # The morning division (Space ticks it), the price, the reservation.
    keys.tab_to("#unit-MORNING")
    page.keyboard.press("Space")
    expect(page.locator("#unit-MORNING")).to_be_checked()
    keys.activate('#day button[type="submit"]')
    expect(page.get_by_role("heading", name="Check your booking")).to_be_visible()
    keys.tab_to('form[action$="/book"] button[type="submit"]')
    expect(page.locator(":focus")).to_have_text("Reserve and pay ¥2,800")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/bookings/\d+/pay$"))
    booking_id = int(re.search(r"/bookings/(\d+)/pay$", page.url).group(1))

    # The card, typed field by field into localstripe's inputs (it moves focus on by itself when a
    # field is full; Tab takes it there when it does not), then the pay button.
    expect(page.locator("#pay-button")).to_be_enabled()  # pay.js has mounted the card form
    for placeholder, text in [("number", CARD), ("exp_month", "12"), ("exp_year", "30"), ("cvc", "123"),
                              ("postal_code", "1040061")]:
        keys.tab_to(f'#card-element input[placeholder="{placeholder}"]')
        page.keyboard.type(text)
        expect(page.locator(f'#card-element input[placeholder="{placeholder}"]')).to_have_value(text)
    keys.tab_to("#pay-button")
    expect(page.locator(":focus")).to_have_text("Pay ¥2,800")
    page.keyboard.press("Enter")

    page.wait_for_url(f"**/bookings/{booking_id}/receipt")
    number = db_read(lambda: db.session.query(Receipt).filter_by(booking_id=booking_id).one().number)
    expect(page.get_by_text("Thank you. Your booking is confirmed and paid.")).to_be_visible()
    expect(page.locator(".receipt-number")).to_have_text(number)
    expect(page.locator(".receipt-amount")).to_contain_text("¥2,800")

    def states():
        booking = db.session.get(Booking, booking_id)
        return booking.state, booking.payment.state, booking.payment.captured_amount

    assert db_read(states) == (BookingState.CONFIRMED, PaymentState.CAPTURED, 2800)
    # On the receipt too, the keyboard reaches the print button and focus shows.
    keys.tab_to("button[data-print]")
    keys.assert_no_trap_anywhere()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_first_tab_shows_the_skip_link_and_enter_skips_to_the_main_content(new_page, viewport, room, db_read):
    room_id = db_read(lambda: room.id)
    page = new_page(viewport)
    keys = Keyboard(page)
    page.goto(f"/rooms/{room_id}")
    skip = page.locator("a.skip")
    expect(skip).not_to_be_in_viewport()  # off-screen until it has focus

    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    keys.assert_visible(keys.state())
    expect(skip).to_be_in_viewport(ratio=1)  # all of it on the screen, not just a sliver

    page.keyboard.press("Enter")
    page.wait_for_url(f"**/rooms/{room_id}#main")
    # Scrolled to the main content (the page is long enough for main's top to reach the top of the screen).
    page.wait_for_function("Math.abs(document.getElementById('main').getBoundingClientRect().top) < 2")
    expect(page.locator("#main h1")).to_be_in_viewport()
    # The next Tab starts from the main content: the header's links are skipped.
    page.keyboard.press("Tab")
    focused = keys.state('#main *')
    assert focused is not None and focused["wanted"], f"the Tab after the skip link went to {focused}"
    keys.assert_visible(focused)
