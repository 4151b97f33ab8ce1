"""The counter in a browser: staff block a division from the building's day and see it there; staff book a
walk-in who pays cash and print the receipt. Selectors are ids and numbers, so any language would do."""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import Booking, Receipt, Role
from tests.e2e import tour
from tests.e2e.test_back_office_pages import sign_in_as
from tests.helpers import booking_day

pytestmark = pytest.mark.e2e


@pytest.fixture
def counter_world(room, make_user):
    staff = make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")
    world = {"staff": staff.get_id(), "building_id": room.building_id, "room_id": room.id, "day": booking_day()}
    db.session.rollback()  # nothing left open in the test thread: on SQLite it would lock out the server
    return world


def open_from_the_day(page, world, endpoint_path: str, division: str) -> None:
    """Follow the day view's link from the free cell; navigate by URL if the day view has none."""
    page.goto(f"/staff/buildings/{world['building_id']}/day?date={world['day'].isoformat()}")
    link = page.locator(f'a[href^="{endpoint_path}"][href*="division={division}"]')
    if link.count():
        with page.expect_navigation():
            link.first.click()
    else:
        page.goto(f"{endpoint_path}?room_id={world['room_id']}&date={world['day'].isoformat()}&division={division}")
    assert page.url.split("?")[0].endswith(endpoint_path)


def test_staff_block_a_division_from_the_day_view_and_see_it_there(browser, live_server, app, counter_world,
                                                                   db_read):
    visit = tour.Visit(browser, live_server, lang="ja", width=1280)
    page = visit.page
    try:
        sign_in_as(visit, app, counter_world["staff"], "ja")
        open_from_the_day(page, counter_world, "/staff/blocks/new", "EVENING")
        expect(page.locator("#divisions-2")).to_be_checked()  # EVENING, from the cell
        page.fill("#note", "区の行事（公用）")
        with page.expect_navigation():
            page.locator("main form [type=submit]").click()
        day = counter_world["day"].isoformat()
        assert page.url.endswith(f"/staff/buildings/{counter_world['building_id']}/day?date={day}")
        block_id = db_read(lambda: db.session.scalar(select(Booking.id).where(Booking.kind == "block")))
        entry = page.locator(f'a.entry[href="/staff/bookings/{block_id}"]')
        expect(entry).to_be_visible()
        expect(entry).to_contain_text("区の行事（公用）")
        assert visit.script_errors == [], visit.script_errors
    finally:
        visit.close()


def test_staff_book_a_walk_in_paying_cash_and_print_the_receipt(browser, live_server, app, counter_world, db_read):
    visit = tour.Visit(browser, live_server, lang="ja", width=1280)
    page = visit.page
    try:
        sign_in_as(visit, app, counter_world["staff"], "ja")
        open_from_the_day(page, counter_world, "/staff/counter/new", "MORNING")
        page.check("#customer-0")  # a walk-in
        page.fill("#name", "窓口 太郎")
        page.fill("#name_kana", "マドグチ タロウ")
        page.fill("#phone", "03-1234-5678")
        page.check("#method-0")  # cash
        with page.expect_navigation():
            page.locator("form.counter-form [type=submit]").click()
        number, amount, booking_id = _receipt(db_read)
        assert page.url.endswith(f"/staff/bookings/{booking_id}/receipt")
        expect(page.locator(".receipt-number")).to_have_text(number)
        expect(page.locator(".receipt-amount strong")).to_have_text("¥2,800")
        expect(page.locator(".payer-name")).to_contain_text("窓口 太郎")

        page.emulate_media(media="print")
        for chrome in ("header.site", ".crumbs", "[data-print]"):
            assert not page.locator(chrome).first.is_visible(), chrome
        expect(page.locator(".receipt-number")).to_be_visible()
        expect(page.locator(".receipt-amount")).to_be_visible()
        pdf = page.pdf(prefer_css_page_size=True)
        assert amount == 2800
    finally:
        visit.close()
    boxes = [(float(w), float(h)) for w, h in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)]
    assert boxes and all(round(w) == 595 and round(h) == 842 for w, h in boxes), boxes  # A4 portrait, in points
    assert len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf)) == 1  # the receipt alone, on one page


def _receipt(db_read) -> tuple[str, int, int]:
    def read():
        receipt = db.session.scalar(select(Receipt))
        return receipt.number, receipt.amount, receipt.booking_id

    return db_read(read)
