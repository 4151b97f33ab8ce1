"""The lottery in Chromium (issue test 12): a resident applies with three ranked choices, staff close the round,
fix the public value, draw and publish it on its page, and the resident sees the wins in My bookings and pays one.

The served app runs on the real clock, so the round's window is open now; when the resident has applied, the
test moves the round's dates into the past (as ten days passing would), and each staff step is then due.
"""
import re
from datetime import time, timedelta

import pytest
from playwright.sync_api import Page, expect

from reservations.extensions import db
from reservations.models import Booking, BookingState, LotteryRound, PaymentState, Role, RoundState
from reservations.services.lottery import rounds
from reservations.timeutil import at_tokyo, business_date, now_utc, shift_months
from tests.conftest import weekday_on_or_after
from tests.e2e.conftest import type_card

pytestmark = pytest.mark.e2e

MONTH = shift_months(business_date(now_utc()).replace(day=1), 3)
DAY = weekday_on_or_after(MONTH.replace(day=8), 1)  # a Tuesday of the month let
CONFIRM = "I have checked the round: do this now. It cannot be undone."


def sign_in(page: Page, app, user_key: str) -> None:
    """The session the log-in form leaves (the form itself is tested elsewhere), in English."""
    value = app.session_interface.get_signing_serializer(app).dumps({"lang": "en", "_user_id": user_key,
                                                                      "_fresh": True})
    page.context.clear_cookies()
    page.context.add_cookies([{"name": app.config["SESSION_COOKIE_NAME"], "value": value,
                               "url": app.config["PUBLIC_BASE_URL"], "httpOnly": True, "sameSite": "Lax"}])


@pytest.fixture
def world(app, live_server, room, make_user, db_read):
    staff = make_user("lottery-staff@example.com", role=Role.STAFF, name="窓口 職員")
    resident = make_user("lottery-resident@example.com", name="抽選 花子")
    now = now_utc()
    round_ = rounds.create_round([room], MONTH, staff=staff, now=now, title="音楽室 抽選", overrides={
        "tier_windows": {1: now - timedelta(days=1), 2: now - timedelta(days=1)},
        "apply_until": at_tokyo(business_date(now) + timedelta(days=2), time(0)) - timedelta(microseconds=1),
        "draw_at": at_tokyo(business_date(now) + timedelta(days=3), time(9)),
        "publish_at": at_tokyo(business_date(now) + timedelta(days=3), time(12)),
        "pay_by": at_tokyo(business_date(now) + timedelta(days=12), time(23, 59)),
        "release_at": at_tokyo(business_date(now) + timedelta(days=13), time(9))})
    rounds.open_round(round_, staff=staff)
    db.session.commit()
    ids = {"round": round_.id, "key": round_.key, "room": room.id, "staff": staff.get_id(),
           "resident": resident.get_id()}
    db.session.rollback()
    return ids


def the_window_passes(round_id: int) -> None:
    """Ten days later in one step: applications closed, and the draw and publication due."""
    db.session.rollback()
    round_ = db.session.get(LotteryRound, round_id)
    now = now_utc()
    round_.apply_until, round_.draw_at, round_.publish_at = (now - timedelta(seconds=3), now - timedelta(seconds=2),
                                                             now - timedelta(seconds=1))
    db.session.commit()
    db.session.expunge_all()
    db.session.rollback()


def staff_step(page: Page, button: str) -> None:
    page.get_by_label(CONFIRM).check()
    page.get_by_role("button", name=button).click()
    page.wait_for_load_state()


def test_a_resident_applies_with_three_ranked_choices_staff_draw_and_publish_and_the_resident_pays_a_win(
        page, app, world, db_read):
    sign_in(page, app, world["resident"])
    for code in ("MORNING", "AFTERNOON", "EVENING"):
        page.goto(f"/lottery/{world['key']}/apply")
        page.get_by_label("Day of use").fill(DAY.isoformat())
        page.locator(f"#slot-{world['room']}-{code}").check()
        page.get_by_role("button", name="Apply", exact=True).click()
        page.wait_for_load_state()
    page.goto("/bookings")
    mine = page.locator("section.lottery-mine")
    expect(mine.get_by_role("heading", name="Lottery applications")).to_be_visible()
    expect(mine.locator(".lottery-application")).to_have_count(3)
    for rank in (1, 2, 3):
        expect(mine.locator(".card-title strong").nth(rank - 1)).to_have_text(f"Choice {rank}")

    the_window_passes(world["round"])
    sign_in(page, app, world["staff"])
    page.goto(f"/staff/lottery/{world['round']}/")
    staff_step(page, "Close and freeze the applications")
    page.get_by_label("Public value").fill("2026 第1等 123456")
    page.get_by_label("Where it was published").fill("宝くじ公式サイト、本日の当せん番号")
    staff_step(page, "Fix the public value")
    staff_step(page, "Run the draw")
    staff_step(page, "Publish the results")
    state, result_hash = db_read(lambda: (lambda r: (r.state, r.result_hash))(db.session.get(LotteryRound,
                                                                                             world["round"])))
    assert state == RoundState.PUBLISHED
    expect(page.get_by_text(result_hash).first).to_be_visible()

    sign_in(page, app, world["resident"])
    page.goto(f"/lottery/{world['key']}/")
    expect(page.get_by_text(result_hash).first).to_be_visible()
    page.goto("/bookings")
    expect(page.locator("section.lottery-mine li.lottery-application.status-won")).to_have_count(3)
    page.locator("section.lottery-mine").get_by_role("link", name=re.compile(r"^Pay: .*¥2,800")).click()
    page.wait_for_url(re.compile(r"/bookings/\d+/pay$"))
    booking_id = int(re.search(r"/bookings/(\d+)/pay$", page.url).group(1))
    type_card(page, "4242424242424242")
    page.get_by_role("button", name="Pay ¥2,800").click()
    page.wait_for_url(f"**/bookings/{booking_id}/receipt")

    booking = db_read(lambda: (lambda b: (b.state, b.payment.state, b.channel, b.division_codes))(
        db.session.get(Booking, booking_id)))
    assert booking == (BookingState.CONFIRMED, PaymentState.CAPTURED, "lottery", "MORNING")
