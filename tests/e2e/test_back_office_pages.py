"""The back-office pages get the resident pages' browser checks: axe-core (WCAG 2.0/2.1 A and AA, 0
violation nodes), in Japanese and English, at 360 and 1280 px, and no sideways scrolling at 320 px.

A back-office GET route that no step below shows fails `test_every_back_office_page_is_checked`,
as the resident tour's route-list test does for the resident side.
"""
import re

import pytest
from axe_playwright_python.base import AXE_SCRIPT

from reservations.extensions import db
from reservations.models import Role, Room
from tests.e2e import tour
from tests.e2e.conftest import LANGUAGE_PER_DATABASE
from tests.e2e.test_accessibility import axe, report
from tests.e2e.test_reflow import layout_problems
from tests.exemptions_helpers import exemption_kind_id, pending_exemption, pending_exemption_booking
from tests.groups_helpers import held_group
from tests.helpers import attention_case, counter_booking, movable_booking, suspension_for

pytestmark = pytest.mark.e2e

BACK_OFFICE = ("staff.", "admin.", "finance.")


@pytest.fixture
def office(room, resident, make_user):
    case = attention_case(resident, room)
    world = {"staff": make_user("staff@example.com", role=Role.STAFF, name="窓口 職員").get_id(),
             "admin": make_user("admin@example.com", role=Role.ADMIN, name="管理 者").get_id(),
             "finance": make_user("finance@example.com", role=Role.FINANCE, name="会計 係").get_id()}
    world["staff_id"] = int(world["staff"].split(":")[0])
    world.update(building_id=room.building_id, booking_id=case.booking_id, room_id=room.id)
    db.session.rollback()  # nothing left open in the test thread: on SQLite it would lock out the server
    return world


def _errors(page):
    page.goto("/admin/accounts/new")
    with page.expect_navigation():
        page.locator("main form [type=submit]").click()


def _first_division(room_id: int) -> int:
    division_id = db.session.get(Room, room_id).divisions[0].id
    db.session.rollback()  # nothing left open in the test thread (see `office`)
    return division_id


def _closure_over_a_booking(page, w):
    """A closure on the day of the office's booking: saved only with a decision on it, so the page asks (422)."""
    page.goto(f"/staff/rooms/{w['room_id']}/closures")
    page.check("input[name=kind][value=period]")
    page.fill("#start_date", "2027-02-10")
    page.fill("#end_date", "2027-02-10")
    page.fill("#reason", "設備点検")
    with page.expect_navigation():
        page.locator("main form[novalidate] [type=submit]").click()


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
    ("a room's week", "staff", "staff.room_week",
     lambda page, w: page.goto(f"/staff/rooms/{w['room_id']}/week?start=2027-02-08")),
    ("export bookings", "staff", "staff.export",
     lambda page, w: page.goto(f"/staff/buildings/{w['building_id']}/export")),
    ("export bookings with errors", "staff", "staff.export",
     lambda page, w: page.goto(f"/staff/buildings/{w['building_id']}/export?from=2027-03-02&to=2027-03-01&format=csv")),
    ("resolved cases", "staff", "staff.attention_history", lambda page, w: page.goto("/staff/attention/history")),
    ("audit trail", "staff", "staff.audit_search", lambda page, w: page.goto("/staff/audit")),
    ("accounts", "admin", "admin.accounts", lambda page, w: page.goto("/admin/accounts")),
    ("new account", "admin", "admin.new_account", lambda page, w: page.goto("/admin/accounts/new")),
    ("new account with errors", "admin", "admin.new_account", lambda page, w: _errors(page)),
    ("an account's role and buildings", "admin", "admin.account",
     lambda page, w: page.goto(f"/admin/accounts/{w['staff_id']}")),
    ("a building's setup", "staff", "staff.building_setup",
     lambda page, w: page.goto(f"/staff/buildings/{w['building_id']}/setup")),
    ("new room", "staff", "staff.room_new",
     lambda page, w: page.goto(f"/staff/buildings/{w['building_id']}/rooms/new")),
    ("a room's setup", "staff", "staff.room_setup", lambda page, w: page.goto(f"/staff/rooms/{w['room_id']}/setup")),
    ("how a room's time is let", "staff", "staff.room_letting",
     lambda page, w: page.goto(f"/staff/rooms/{w['room_id']}/letting")),
    ("a room's divisions", "staff", "staff.room_divisions",
     lambda page, w: page.goto(f"/staff/rooms/{w['room_id']}/divisions")),
    ("a division", "staff", "staff.division_edit",
     lambda page, w: page.goto(f"/staff/divisions/{_first_division(w['room_id'])}")),
    ("a room's closures", "staff", "staff.room_closures",
     lambda page, w: page.goto(f"/staff/rooms/{w['room_id']}/closures")),
    ("a closure over a booking, decisions asked (errors)", "staff", "staff.room_closures",
     lambda page, w: _closure_over_a_booking(page, w)),
    ("a room's booking rules", "staff", "staff.room_rules",
     lambda page, w: page.goto(f"/staff/rooms/{w['room_id']}/rules")),
    ("a room's refund policy", "staff", "staff.room_refunds",
     lambda page, w: page.goto(f"/staff/rooms/{w['room_id']}/refunds")),
    ("new building", "admin", "admin.building_new", lambda page, w: page.goto("/admin/buildings/new")),
    ("move a booking", "staff", "staff.move",
     lambda page, w: page.goto(f"/staff/bookings/{movable_booking(w['booking_id'])}/move")),
    ("move a booking with errors", "staff", "staff.move", lambda page, w: _move_errors(page, w)),
    ("suspended for no-shows", "staff", "staff.suspensions",
     lambda page, w: (suspension_for(w["booking_id"]), page.goto("/staff/suspensions"))),
    ("registered groups", "staff", "staff.group_list", lambda page, w: (held_group(), page.goto("/staff/groups/"))),
    ("a group held for review, with its findings", "staff", "staff.group_detail",
     lambda page, w: page.goto(f"/staff/groups/{held_group()}")),
    ("exemptions waiting for a decision", "staff", "staff.exemptions_list",
     lambda page, w: (pending_exemption(w["booking_id"]), page.goto("/staff/exemptions/"))),
    ("a booking with an exemption waiting", "staff", "staff.booking",
     lambda page, w: page.goto(f"/staff/bookings/{pending_exemption_booking(w['booking_id'])}")),
    ("exemption kinds", "staff", "staff.exemption_kinds",
     lambda page, w: (exemption_kind_id(), page.goto("/staff/exemptions/kinds"))),
    ("new exemption kind", "admin", "admin.exemption_kind_new",
     lambda page, w: page.goto("/admin/exemptions/kinds/new")),
    ("new exemption kind with errors", "admin", "admin.exemption_kind_new", lambda page, w: _kind_errors(page)),
    ("an exemption kind", "admin", "admin.exemption_kind_edit",
     lambda page, w: page.goto(f"/admin/exemptions/kinds/{exemption_kind_id()}")),
    ("counter: choose a room", "staff", "staff.counter_new", lambda page, w: page.goto("/staff/counter/new")),
    ("counter: book on someone's behalf", "staff", "staff.counter_new",
     lambda page, w: page.goto(f"/staff/counter/new?room_id={w['room_id']}&date=2027-02-15&division=MORNING")),
    ("counter: book with errors", "staff", "staff.counter_new", lambda page, w: _counter_errors(page, w)),
    ("counter: block time", "staff", "staff.block_new",
     lambda page, w: page.goto(f"/staff/blocks/new?room_id={w['room_id']}&date=2027-02-15&division=AFTERNOON")),
    ("counter: a receipt to print", "staff", "staff.counter_receipt",
     lambda page, w: page.goto(f"/staff/bookings/{counter_booking(w['booking_id'], w['staff_id'], 'cash')}/receipt")),
    ("counter: a receipt with an exemption (full fee, reduction, amount received)", "staff", "staff.counter_receipt",
     lambda page, w: page.goto(f"/staff/bookings/{_exempted(w)}/receipt")),
    ("counter: a cancellation notice to print", "staff", "staff.cancellation_notice",
     lambda page, w: page.goto(
         f"/staff/bookings/{counter_booking(w['booking_id'], w['staff_id'], 'cancelled')}/notice")),
    ("counter: a payment link to print", "staff", "staff.payment_slip",
     lambda page, w: page.goto(
         f"/staff/bookings/{counter_booking(w['booking_id'], w['staff_id'], 'online')}/payment-slip")),
    ("finance", "finance", "finance.index", lambda page, w: page.goto("/finance/")),
    ("daily close", "finance", "finance.close_sheet",
     lambda page, w: page.goto(f"/finance/close?date={_ledger_day(w)}")),
    ("daily close in the closing period (two fiscal years)", "finance", "finance.close_sheet",
     lambda page, w: page.goto("/finance/close?date=2027-04-10")),
    ("daily close with reductions (exemptions)", "finance", "finance.close_sheet",
     lambda page, w: (_exempted(w), page.goto("/finance/close?date=2026-11-12"))),
    ("daily close with errors", "finance", "finance.close_sheet",
     lambda page, w: page.goto("/finance/close?date=2027-02-30")),
    ("monthly summary", "finance", "finance.monthly",
     lambda page, w: page.goto(f"/finance/monthly?month={_ledger_day(w)[:7]}")),
    ("monthly summary with errors", "finance", "finance.monthly",
     lambda page, w: page.goto("/finance/monthly?month=2026-13")),
    ("export the ledger", "finance", "finance.export", lambda page, w: page.goto("/finance/export")),
    ("export the ledger: rows checked, CP932 replacements listed", "finance", "finance.export",
     lambda page, w: page.goto(_export_checked(w))),
    ("export the ledger with errors", "finance", "finance.export_download",
     lambda page, w: page.goto("/finance/export/download?from=2027-03-02&to=2027-03-01&format=csv")),
    ("finance dashboard", "finance", "finance.dashboard",
     lambda page, w: (_dashboard_figures(w), page.goto("/finance/dashboard"))),
    ("finance dashboard of one building", "finance", "finance.dashboard",
     lambda page, w: (_dashboard_figures(w),
                      page.goto(f"/finance/dashboard?month=2027-03&building={w['building_id']}"))),
    ("finance dashboard with errors", "finance", "finance.dashboard",
     lambda page, w: page.goto("/finance/dashboard?month=2027-13&fy=abc")),
    ("reconciliation with Stripe", "finance", "finance.reconcile_page",
     lambda page, w: (_reconciled(w), page.goto("/finance/reconcile"))),
    ("reconciliation with errors", "finance", "finance.reconcile_page", lambda page, w: _reconcile_errors(page)),
    ("lottery rounds", "staff", "staff.lottery_rounds", lambda page, w: (_lottery(w), page.goto("/staff/lottery/"))),
    ("new lottery round: rooms and month", "staff", "staff.lottery_new",
     lambda page, w: page.goto("/staff/lottery/new")),
    ("new lottery round: dates and caps", "staff", "staff.lottery_new",
     lambda page, w: page.goto(f"/staff/lottery/new?room={w['room_id']}&month=2027-09")),
    ("new lottery round with errors", "staff", "staff.lottery_new", lambda page, w: _lottery_round_errors(page, w)),
    ("a room's lottery rule", "staff", "staff.lottery_rule",
     lambda page, w: page.goto(f"/staff/lottery/rules/{w['room_id']}")),
    ("a published lottery round: wins, verification, history", "staff", "staff.lottery_round",
     lambda page, w: page.goto(f"/staff/lottery/{_lottery(w)['published']}/")),
    ("a lottery round's applications", "staff", "staff.lottery_applications",
     lambda page, w: page.goto(f"/staff/lottery/{_lottery(w)['published']}/applications")),
    ("an open lottery round's dates and caps", "staff", "staff.lottery_edit",
     lambda page, w: page.goto(f"/staff/lottery/{_lottery(w)['open']}/edit")),
    ("a lottery application at the counter", "staff", "staff.lottery_apply",
     lambda page, w: page.goto(f"/staff/lottery/{_lottery(w)['open']}/apply?q=resident"
                               f"&user_id={_lottery(w)['resident']}")),
]


def _lottery(w) -> dict:
    """The office room's round for June 2027 taken to publication (the resident won both its choices) and its
    round for July 2027, open: made once (tests/lottery_helpers.py)."""
    from datetime import date

    from reservations.models import Booking
    from tests.lottery_helpers import open_round, published_round

    resident_id = db.session.get(Booking, w["booking_id"]).user_id
    made = {"published": published_round(w["room_id"], w["staff_id"], [resident_id]),
            "open": open_round(w["room_id"], w["staff_id"], date(2027, 7, 1)), "resident": resident_id}
    db.session.rollback()  # nothing left open in the test thread (see `office`)
    return made


def _lottery_round_errors(page, w):
    """A new round's dates sent with a negative cap and no tier: the page says what is wrong, with 422."""
    page.goto(f"/staff/lottery/new?room={w['room_id']}&month=2027-09")
    page.fill("#max_applications", "-1")
    page.fill("#tier_1_from", "")
    page.fill("#tier_2_from", "")
    with page.expect_navigation():
        page.locator("main form[method=post] [type=submit]").click()


def _reconciled(w) -> None:
    """A reconciliation run over 10 January 2027 with a payout (from a payout report, with a fee) and a
    difference: a card payment Stripe does not have, on the page's list of cases. Made once."""
    from datetime import UTC, date, datetime

    from sqlalchemy import select

    from reservations.models import Booking, ReconciliationRun
    from reservations.services.finance.reconcile import import_payout_report, reconcile
    from tests.helpers import ledger_booking

    if db.session.scalar(select(ReconciliationRun.id).limit(1)) is None:
        like, at = db.session.get(Booking, w["booking_id"]), datetime(2027, 1, 10, 3, 0, tzinfo=UTC)
        paid = ledger_booking(like.user, like.room, date(2027, 2, 19), at=at, method="card")
        ledger_booking(like.user, like.room, date(2027, 2, 19), at=at, amount=3600, method="card", code="AFTERNOON")
        import_payout_report((
            "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,source_id,"
            "automatic_payout_id,automatic_payout_effective_at_utc\r\n"
            f"txn_tour,2027-01-10 03:00:00,jpy,2800.00,101.00,2699.00,charge,ch_led_{paid.payment.id},po_tour,"
            "2027-01-12 15:00:00\r\n").encode())
        reconcile(date(2027, 1, 10), date(2027, 1, 10), fetch=False, trigger="cli")
        db.session.commit()
    db.session.rollback()  # nothing left open in the test thread (see `office`)


def _reconcile_errors(page):
    """A period whose last day is before its first: the page says so, with 422."""
    page.goto("/finance/reconcile")
    page.fill("#run-first", "2027-03-02")
    page.fill("#run-last", "2027-03-01")
    with page.expect_navigation():
        page.locator("form[action='/finance/reconcile'] [type=submit]").click()


def _dashboard_figures(w) -> None:
    """Money in the dashboard's default period (the last 30 days) in the office's room, paid on 1-4 March 2027
    slots: cash, card, terminal and card, the last cancelled and refunded; written once, so that every chart
    of the dashboard is drawn."""
    from datetime import UTC, date, datetime, timedelta

    from sqlalchemy import select

    from reservations.models import AuditEntry, Booking
    from reservations.services.rules import division_slot
    from tests.helpers import ledger_booking, ledger_refund

    like = db.session.get(Booking, w["booking_id"])
    first = division_slot(like.room, date(2027, 3, 1), ["MORNING"])
    if db.session.scalar(select(Booking.id).where(Booking.room_id == like.room_id,
                                                  Booking.start_at == first.start_at)) is None:
        now = datetime.now(UTC)
        for n, method in enumerate(("cash", "card", "terminal", "card")):
            booking = ledger_booking(like.user, like.room, date(2027, 3, 1 + n), at=now - (n + 2) * timedelta(days=1),
                                     method=method)
        booking.state = "cancelled"
        db.session.add(AuditEntry(subject="booking", subject_id=booking.id, action="confirmed->cancelled",
                                  at=now - timedelta(days=1)))
        db.session.commit()
        ledger_refund(booking, 2800, at=now - timedelta(hours=19))
    db.session.rollback()  # nothing left open in the test thread (see `office`)


def _export_checked(w) -> str:
    """The ledger export checked over November 2026: the rows of `_ledger_day` and one paid by 𠮷田 🏀, a name
    CP932 cannot hold, so that the page lists its replacements."""
    from datetime import UTC, date, datetime

    from sqlalchemy import select

    from reservations.models import Booking, User
    from tests.helpers import ledger_booking

    _ledger_day(w)
    if db.session.scalar(select(User.id).where(User.email == "astral@example.com")) is None:
        like = db.session.get(Booking, w["booking_id"])
        payer = User(email="astral@example.com", name="𠮷田 🏀", residency=like.user.residency, role=Role.RESIDENT)
        payer.set_password("correct horse")
        db.session.add(payer)
        db.session.flush()
        ledger_booking(payer, like.room, date(2027, 2, 18), at=datetime(2026, 11, 11, 1, 0, tzinfo=UTC),
                       method="card")
    db.session.rollback()  # nothing left open in the test thread (see `office`)
    return "/finance/export?from=2026-11-01&to=2026-11-30"


def _ledger_day(w) -> str:
    """10 November 2026, a past day (so its close form shows) with money on it: a cash and a card payment and a
    refund, written once through the ledger (tests/helpers.py). For the finance pages."""
    from datetime import UTC, date, datetime, timedelta

    from sqlalchemy import select

    from reservations.models import Booking, LedgerEntry
    from tests.helpers import ledger_booking, ledger_refund

    if db.session.scalar(select(LedgerEntry.id).limit(1)) is None:
        like, at = db.session.get(Booking, w["booking_id"]), datetime(2026, 11, 10, 1, 0, tzinfo=UTC)
        ledger_booking(like.user, like.room, date(2027, 2, 17), at=at, amount=2800)
        card = ledger_booking(like.user, like.room, date(2027, 2, 17), at=at, amount=3600, method="card",
                              code="AFTERNOON")
        ledger_refund(card, 1000, at=at + timedelta(hours=2))
    db.session.rollback()  # nothing left open in the test thread (see `office`)
    return "2026-11-10"


def _exempted(w) -> int:
    """A booking of the office's room on 22 February 2027 with a 50 % exemption (reduced at once), paid ¥1,400 in
    cash at the counter on 12 November 2026: its receipt shows the full fee and the reduction, and that day's
    close counts the reduction apart. Made once; returns the booking's id."""
    from datetime import UTC, date, datetime

    from sqlalchemy import select

    from reservations.models import Booking, Exemption, ExemptionKind, User
    from reservations.services import counter, exemptions
    from tests.helpers import calendar_booking

    if db.session.scalar(select(ExemptionKind.id).where(ExemptionKind.code == "TOUR50")) is None:
        kind = ExemptionKind(code="TOUR50", name_ja="福祉団体減免", name_en="Welfare groups", rate_pct=50,
                             legal_ground="条例第10条第2号", eligible="individual", needs_approval=False)
        db.session.add(kind)
        like, staff = db.session.get(Booking, w["booking_id"]), db.session.get(User, w["staff_id"])
        booking = calendar_booking(like.user, like.room, date(2027, 2, 22), price=2800)  # commits the kind too
        at = datetime(2026, 11, 12, 1, 0, tzinfo=UTC)
        exemptions.attach(booking, kind, actor=staff, now=at)
        counter.record_counter_payment(booking, "cash", booking.price, staff=staff, now=at)
        db.session.commit()
    booking_id = db.session.scalar(select(Exemption.booking_id).where(Exemption.code == "TOUR50"))
    db.session.rollback()  # nothing left open in the test thread (see `office`)
    return booking_id


def _kind_errors(page):
    """A new exemption kind sent with nothing filled in: the page says what is missing, with 422."""
    page.goto("/admin/exemptions/kinds/new")
    with page.expect_navigation():
        page.locator("main form [type=submit]").click()


def _counter_errors(page, w):
    """The counter's booking form sent with nothing filled in: the page says what is missing, with 422."""
    page.goto(f"/staff/counter/new?room_id={w['room_id']}&date=2027-02-15&division=MORNING")
    with page.expect_navigation():
        page.locator("form.counter-form [type=submit]").click()


def _move_errors(page, w):
    """The move form sent with no division chosen: the page says why, with 422."""
    page.goto(f"/staff/bookings/{movable_booking(w['booking_id'])}/move")
    with page.expect_navigation():
        page.locator("main form[method=post] [type=submit]").click()


def sign_in_as(visit, app, user_key: str, lang: str) -> None:
    tour.set_session(visit, app, {"lang": lang, "_user_id": user_key, "_fresh": True})


@pytest.mark.parametrize(("backend", "lang"), LANGUAGE_PER_DATABASE)
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
