"""What a screen reader meets on the resident pages: the month calendar, form errors, the hold countdown,
the phone's header menu, and a receipt on paper.

The calendar is asserted through Playwright's ARIA snapshot, which is the accessibility tree Chromium
hands to a screen reader, not the HTML: a name lost to aria-hidden or a table that is not one shows here.
"""
import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from reservations.extensions import db
from reservations.models import Closure, ClosureKind
from tests.helpers import book, booking_day

pytestmark = pytest.mark.e2e

WEEKDAYS_JA = "月火水木金土日"  # Monday first, as date.weekday() counts
WEEKDAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
             "October", "November", "December"]


def log_in(page: Page, email: str, *, english: bool = False) -> None:
    page.goto("/account/login")
    if english:
        page.get_by_role("button", name="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
    page.locator("#email").fill(email)
    page.locator("#password").fill("correct horse")
    page.locator("form[action$='/account/login'] [type=submit]").click()
    expect(page.locator("form[action$='/account/logout']")).to_be_attached()


def said_ja(day, state: str) -> str:
    return f"{day.month}月{day.day}日（{WEEKDAYS_JA[day.weekday()]}）{state}"


def said_en(day, state: str) -> str:
    return f"{WEEKDAYS_EN[day.weekday()]} {day.day} {MONTHS_EN[day.month - 1]}, {state}"


@pytest.fixture
def month_of_states(room, make_user):
    """A room whose month holds a partly booked day, a fully booked day, a closed day and a free day."""
    partly = booking_day()
    full = partly + timedelta(days=1)
    closed = partly + timedelta(days=2)
    free = partly + timedelta(days=3)
    assert len({d.month for d in (partly, full, closed, free)}) == 1 or pytest.skip("the days straddle a month end")
    book(make_user(), room, day=partly)
    book(make_user(), room, ("MORNING", "AFTERNOON", "EVENING"), day=full)
    room.closures.append(Closure(kind=ClosureKind.PERIOD, start_date=closed, end_date=closed, reason="点検"))
    db.session.commit()
    room_id = room.id
    db.session.rollback()  # no transaction left open in the test thread: on SQLite it would lock out the server
    return room_id, partly, full, closed, free


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_month_calendar_is_a_table_whose_cells_say_their_date_and_state(page, month_of_states, lang):
    room_id, partly, full, closed, free = month_of_states
    if lang == "en":
        page.goto("/")
        page.get_by_role("button", name="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
    page.goto(f"/rooms/{room_id}?month={partly.strftime('%Y-%m')}")
    calendar = page.locator("table.calendar")
    said = said_ja if lang == "ja" else said_en
    month = f"{partly.year}年{partly.month}月" if lang == "ja" else f"{MONTHS_EN[partly.month - 1]} {partly.year}"
    days = ["日曜日", "月曜日", "火曜日", "水曜日", "木曜日", "金曜日", "土曜日"] if lang == "ja" else (
        ["Sunday"] + WEEKDAYS_EN[:6])
    headers = "\n".join(f"      - columnheader \"{d}\"" for d in days)
    # A table named by its caption, with a row of column headers that say the whole weekday.
    expect(calendar).to_match_aria_snapshot(f"""
- table "{month}":
  - caption: {month}
  - rowgroup:
    - row:
{headers}
""")
    states = {"ja": ("一部空き", "満室", "休館（点検）", "空き"),
              "en": ("partly free", "full", "closed (点検)", "free")}[lang]
    # A day that can be booked is a link named by its date and state; a full or closed day is a cell that says so.
    expect(calendar.locator(f'td[data-date="{partly.isoformat()}"]')).to_match_aria_snapshot(f"""
- cell "{said(partly, states[0])}":
  - link "{said(partly, states[0])}"
""")
    expect(calendar.locator(f'td[data-date="{full.isoformat()}"]')).to_match_aria_snapshot(
        f'- cell "{said(full, states[1])}"')
    expect(calendar.locator(f'td[data-date="{closed.isoformat()}"]')).to_match_aria_snapshot(
        f'- cell "{said(closed, states[2])}"')
    expect(calendar.locator(f'td[data-date="{free.isoformat()}"]')).to_match_aria_snapshot(f"""
- cell "{said(free, states[3])}":
  - link "{said(free, states[3])}"
""")
    assert calendar.locator(f'td[data-date="{full.isoformat()}"] a').count() == 0


def test_form_errors_are_tied_to_their_fields_and_summarised_with_the_focus_on_the_summary(page):
    page.goto("/")
    page.get_by_role("button", name="English").click()
    page.goto("/account/signup")
    page.locator("#email").fill("not an address")
    page.locator("#password").fill("short")
    page.get_by_role("button", name="Create account").click()

    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_have_attribute("role", "alert")
    expect(summary.get_by_role("heading")).to_have_text("Please check what you entered")
    links = summary.get_by_role("link")
    assert links.count() >= 3  # name, email and password at least
    for i in range(links.count()):
        target = links.nth(i).get_attribute("href")
        field = page.locator(target)
        expect(field).to_have_attribute("aria-invalid", "true")
        error_id = f"{target[1:]}-error"
        expect(field).to_have_attribute("aria-describedby", re.compile(rf"(^|\s){error_id}($|\s)"))
        # The error the field is described by says what the summary says about it.
        assert page.locator(f"#{error_id}").inner_text() in links.nth(i).inner_text()
    # Following a link in the summary puts the keyboard in the field.
    links.first.press("Enter")
    expect(page.locator(links.first.get_attribute("href"))).to_be_focused()


@pytest.fixture
def held(room, resident, localstripe):
    booking_id = book(resident, room).id
    db.session.rollback()  # see month_of_states
    return booking_id


def test_the_hold_countdown_is_announced_politely_a_few_times_not_every_second(page, held):
    page.clock.install()  # the page's clock, moved on below instead of waiting ten minutes
    log_in(page, "resident@example.com", english=True)
    page.goto(f"/bookings/{held}/pay")
    countdown = page.locator("#hold-countdown")
    expect(countdown).to_have_text(re.compile(r"^(10:00|9:[0-5]\d)$"))
    expect(countdown).to_have_attribute("role", "timer")  # a timer is not live: the ticks are not read out
    announcer = page.locator("#hold-announce")
    expect(announcer).to_have_attribute("aria-live", "polite")
    page.evaluate("""() => {
        window.said = []; window.ticks = 0;
        new MutationObserver(() => window.said.push(document.getElementById('hold-announce').textContent))
            .observe(document.getElementById('hold-announce'), {childList: true, characterData: true, subtree: true});
        new MutationObserver(() => { window.ticks += 1; })
            .observe(document.getElementById('hold-countdown'), {childList: true, characterData: true, subtree: true});
    }""")

    page.clock.run_for("05:30")  # every second's timer runs
    expect(countdown).to_have_text(re.compile(r"^4:[0-5]\d$"))
    assert page.evaluate("window.said") == ["5 minutes left to pay."]
    page.clock.run_for("04:40")
    expect(countdown).to_have_text("0:00")
    said = [text for text in page.evaluate("window.said") if text]
    assert said == ["5 minutes left to pay.", "2 minutes left to pay.", "One minute left to pay."]
    assert page.evaluate("window.ticks") > 500  # the screen showed every second meanwhile
    # The end of the hold is an alert of its own.
    expect(page.locator("#pay-errors")).to_contain_text("Your hold on this slot has run out.")


PHONE_HEADER = {"ja": ("メニュー", "施設予約", "予約一覧", "English"),
                "en": ("Menu", "Facility reservations", "My bookings", "日本語")}


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_on_a_phone_the_header_is_one_row_and_its_links_open_behind_the_menu_button(page, resident, lang):
    menu_name, brand_name, mine_name, switch_name = PHONE_HEADER[lang]
    page.set_viewport_size({"width": 360, "height": 740})
    log_in(page, "resident@example.com", english=lang == "en")
    header = page.locator("header.site")
    menu = page.get_by_role("button", name=menu_name)
    brand = page.get_by_role("link", name=brand_name)
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("link", name=mine_name)).to_be_hidden()
    # One row: the brand, the language switch and the menu side by side.
    assert header.bounding_box()["height"] < 2 * brand.bounding_box()["height"]
    for control in (page.get_by_role("button", name=switch_name), menu):
        assert abs(control.bounding_box()["y"] - brand.bounding_box()["y"]) < brand.bounding_box()["height"]

    menu.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("link", name=mine_name)).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name=mine_name)).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(menu).to_be_focused()

    # On a wide screen there is no menu button: the links are in the header.
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(menu).to_be_hidden()
    expect(page.get_by_role("link", name=mine_name)).to_be_visible()


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_receipt_prints_on_one_a4_page_with_nothing_of_the_site_around_it(page, paid, lang):
    booking_id = paid.id
    db.session.rollback()  # see month_of_states
    log_in(page, "resident@example.com", english=lang == "en")
    page.goto(f"/bookings/{booking_id}/receipt")
    expect(page.locator(".receipt")).to_be_visible()
    page.emulate_media(media="print")
    for chrome in ("header.site", ".crumbs", ".actions", "#help-title"):
        for element in page.locator(chrome).all():
            expect(element).to_be_hidden()
    expect(page.locator(".receipt-amount")).to_contain_text("¥2,800")
    # A4 at 15 mm margins leaves 180 mm (680 CSS px) of width: the receipt fits inside it.
    page.set_viewport_size({"width": 680, "height": 962})
    box = page.locator(".receipt").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 680
    pdf = page.pdf(prefer_css_page_size=True)
    assert pdf.startswith(b"%PDF") and pdf_pages(pdf) == 1
