"""The back-office pages get the resident pages' browser checks: axe-core (WCAG 2.0/2.1 A and AA, 0
violation nodes), in Japanese and English, at 360 and 1280 px, and no sideways scrolling at 320 px.

A back-office GET route that no step below shows fails `test_every_back_office_page_is_checked`,
as the resident tour's route-list test does for the resident side.
"""
import re

import pytest
from axe_playwright_python.base import AXE_SCRIPT

from reservations.extensions import db
from reservations.models import Role
from tests.e2e import tour
from tests.e2e.test_accessibility import axe, report
from tests.e2e.test_reflow import layout_problems
from tests.helpers import attention_case

pytestmark = pytest.mark.e2e

BACK_OFFICE = ("staff.", "admin.")


@pytest.fixture
def office(room, resident, make_user):
    case = attention_case(resident, room)
    world = {"staff": make_user("staff@example.com", role=Role.STAFF, name="窓口 職員").get_id(),
             "admin": make_user("admin@example.com", role=Role.ADMIN, name="管理 者").get_id()}
    world["staff_id"] = int(world["staff"].split(":")[0])
    world.update(building_id=room.building_id, booking_id=case.booking_id, room_id=room.id)
    db.session.rollback()  # nothing left open in the test thread: on SQLite it would lock out the server
    return world


def _errors(page):
    page.goto("/admin/accounts/new")
    with page.expect_navigation():
        page.locator("main form [type=submit]").click()


# (name, who, the endpoint it shows, how to get there)
STEPS = [
    ("back office", "staff", "staff.index", lambda page, w: page.goto("/staff/")),
    ("a building's day", "staff", "staff.building_day",
     lambda page, w: page.goto(f"/staff/buildings/{w['building_id']}/day?date=2027-02-10")),
    ("a booking and its history", "staff", "staff.booking",
     lambda page, w: page.goto(f"/staff/bookings/{w['booking_id']}")),
    ("needs attention", "staff", "staff.attention_list", lambda page, w: page.goto("/staff/attention")),
    ("a room's calendar feed", "staff", "staff.room_feed",
     lambda page, w: page.goto(f"/staff/rooms/{w['room_id']}/feed")),
    ("accounts", "admin", "admin.accounts", lambda page, w: page.goto("/admin/accounts")),
    ("new account", "admin", "admin.new_account", lambda page, w: page.goto("/admin/accounts/new")),
    ("new account with errors", "admin", "admin.new_account", lambda page, w: _errors(page)),
    ("an account's role and buildings", "admin", "admin.account",
     lambda page, w: page.goto(f"/admin/accounts/{w['staff_id']}")),
]


def sign_in_as(visit, app, user_key: str, lang: str) -> None:
    tour.set_session(visit, app, {"lang": lang, "_user_id": user_key, "_fresh": True})


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_back_office_pages_pass_axe_and_reflow(browser, live_server, app, office, lang, capsys):
    found, problems, scans = [], [], 0
    visit = tour.Visit(browser, live_server, lang=lang, width=1280)
    visit.context.add_init_script(AXE_SCRIPT)
    try:
        for name, who, endpoint, run in STEPS:
            sign_in_as(visit, app, office[who], lang)
            for width in (360, 1280, 320):
                visit.page.set_viewport_size({"width": width, "height": 800})
                run(visit.page, office)
                visit.page.wait_for_load_state()
                assert visit.page.locator("html").get_attribute("lang") == lang
                # The step showed the page it names (an error page would pass axe too, and prove nothing).
                assert tour._endpoint(app, "GET", visit.page.url) == endpoint, (name, visit.page.url)
                assert visit.navigations[-1][2] == (422 if "errors" in name else 200), (name, visit.navigations[-1])
                if width == 320:
                    problems += layout_problems(visit.page, f"{name} ({lang}, 320 px)")
                else:
                    violations = axe(visit.page)
                    scans += 1
                    found.extend((f"{name} ({lang}, {width} px)", v) for v in violations)
        assert visit.script_errors == [], visit.script_errors
    finally:
        visit.close()
    with capsys.disabled():
        print(f"\nback office, {lang}: {scans} axe scans ({len(STEPS)} pages × 2 widths), "
              f"{sum(len(v['nodes']) for _, v in found)} violation nodes")
    assert not found, report(found)
    assert not problems, "\n".join(problems)


def test_every_back_office_page_is_checked(app):
    shown = {endpoint for _, _, endpoint, _ in STEPS}
    missing = [f"{r.endpoint} ({r.rule})" for r in app.url_map.iter_rules()
               if "GET" in r.methods and r.endpoint.startswith(BACK_OFFICE) and r.endpoint not in shown]
    assert not missing, "back-office GET routes no step of test_back_office_pages.py shows: " + ", ".join(missing)


def test_a_buildings_day_prints_on_one_landscape_a4_page_for_the_wall(browser, live_server, app, office,
                                                                      make_room, make_hourly_room):
    for name in ("第一会議室", "第二会議室", "和室"):
        make_room(name)
    make_hourly_room()  # twelve hours across
    db.session.rollback()
    visit = tour.Visit(browser, live_server, lang="ja", width=1280)
    try:
        sign_in_as(visit, app, office["staff"], "ja")
        visit.page.goto(f"/staff/buildings/{office['building_id']}/day?date=2027-02-10")
        visit.page.emulate_media(media="print")
        for chrome in ("header.site", ".crumbs", ".day-nav", "[data-print]"):
            assert not visit.page.locator(chrome).first.is_visible(), chrome
        assert visit.page.locator(".staff-grid tbody tr").count() == 5
        pdf = visit.page.pdf(prefer_css_page_size=True)
    finally:
        visit.close()
    boxes = [(float(w), float(h)) for w, h in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)]
    assert boxes and all(round(w) == 842 and round(h) == 595 for w, h in boxes), boxes  # A4 landscape, in points
    assert len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf)) == 1
