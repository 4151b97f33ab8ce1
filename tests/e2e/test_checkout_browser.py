"""A resident pays for a booking in Chromium: Stripe.js (localstripe's) in the page, pay.js, the real app.

Each scenario starts from the sign-up form, so the session, the CSRF token in
pay.js's header and the flash after the JSON call are the real ones.
"""
import re
import uuid
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from reservations.extensions import db
from reservations.models import Booking, BookingState, LedgerEntry, PaymentState, Receipt
from reservations.payments import get_gateway
from reservations.services import expiry
from tests.e2e.conftest import type_card
from tests.helpers import outbox

pytestmark = pytest.mark.e2e

GOOD = "4242424242424242"
DECLINED = "4000000000000341"
THREE_D_SECURE = "4000002500003155"
PASSWORD = "correct horse battery"


@pytest.fixture
def room_id(room, db_read):
    return db_read(lambda: room.id)


def sign_up(page: Page, app) -> str:
    """Switch the site to English (the assertions read English), create an account, confirm its address
    by following the link in the mail (no hold before that), and log in."""
    page.goto("/")
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("button", name="Menu").click()  # a phone: the header's links are behind it
    page.get_by_role("link", name="Sign up").click()
    email = f"r{uuid.uuid4().hex[:8]}@example.com"
    page.get_by_label("Name", exact=True).fill("山田 花子")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_label("Where do you live, work or study?").select_option("resident")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()

    [mail] = [m for m in outbox(app) if m["To"] == email]  # written before the page above was answered
    link = re.search(r"^\S+/account/verify/\S+$", mail.get_body(("plain",)).get_content(), re.M).group(0)
    assert link.startswith(app.config["PUBLIC_BASE_URL"] + "/")  # the live server's address, never a request's
    page.goto(link)
    expect(page.get_by_text("Your email address is confirmed. You can now book.")).to_be_visible()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("form[action$='/account/logout']")).to_be_attached()  # behind the menu on a phone
    return email


def hold_morning(page: Page, room_id: int, day) -> int:
    """Choose the morning division of `day` and reserve it; returns the booking id from the payment page's URL."""
    page.goto(f"/rooms/{room_id}/days/{day.isoformat()}")
    page.get_by_role("checkbox", name=re.compile(r"^Morning")).check()
    page.get_by_role("button", name="Check price and book").click()
    expect(page.get_by_role("heading", name="Check your booking")).to_be_visible()
    page.get_by_role("button", name="Reserve and pay ¥2,800").click()
    page.wait_for_url(re.compile(r"/bookings/\d+/pay$"))
    expect(page.get_by_role("heading", name="Pay by card")).to_be_visible()
    return int(re.search(r"/bookings/(\d+)/pay$", page.url).group(1))


def pay_button(page: Page):
    return page.get_by_role("button", name="Pay ¥2,800")


def states(booking_id: int) -> tuple[str, str, int]:
    """The booking's state, its payment's state and what was captured (call through db_read)."""
    booking = db.session.get(Booking, booking_id)
    return booking.state, booking.payment.state, booking.payment.captured_amount


def expect_morning(page: Page, room_id: int, day, status: str) -> None:
    page.goto(f"/rooms/{room_id}/days/{day.isoformat()}")
    expect(page.locator("li.unit", has=page.locator("#unit-MORNING")).locator(".status")).to_have_text(status)


def test_a_resident_signs_up_books_pays_and_gets_the_receipt(page, app, room_id, day, db_read, webhooks):
    sign_up(page, app)
    booking_id = hold_morning(page, room_id, day)

    expect(page.locator(".amount-due")).to_contain_text("¥2,800")
    expect(page.locator("#hold-countdown")).to_have_text(re.compile(r"^(10:00|9:[0-5]\d)$"))
    expect(pay_button(page)).to_be_enabled()
    type_card(page, GOOD)
    pay_button(page).click()

    page.wait_for_url(f"**/bookings/{booking_id}/receipt")
    number = db_read(lambda: db.session.query(Receipt).filter_by(booking_id=booking_id).one().number)
    expect(page.get_by_text("Thank you. Your booking is confirmed and paid.")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("領収書"))).to_be_visible()
    expect(page.locator(".receipt-number")).to_have_text(number)
    expect(page.locator(".receipt-amount")).to_contain_text("¥2,800")
    expect(page.locator(".payer-name")).to_have_text("山田 花子")
    expect(page.get_by_role("button", name="Print this receipt")).to_be_visible()
    page.emulate_media(media="print")  # printed, the receipt stands alone
    expect(page.locator("header.site")).to_be_hidden()
    expect(page.get_by_role("button", name="Print this receipt")).to_be_hidden()
    expect(page.get_by_text("Thank you. Your booking is confirmed and paid.")).to_be_hidden()
    expect(page.locator(".receipt-number")).to_be_visible()
    page.emulate_media(media="screen")

    page.get_by_role("link", name=f"Booking {booking_id}").first.click()
    expect(page.locator(".state-banner")).to_contain_text("Confirmed")
    expect(page.locator(".payment .paid")).to_have_text("¥2,800")
    expect(page.get_by_role("link", name=f"Receipt {number}")).to_be_visible()
    assert db_read(lambda: states(booking_id)) == (BookingState.CONFIRMED, PaymentState.CAPTURED, 2800)
    # The provider's own word arrives later by webhook: it finds the booking settled and changes nothing.
    webhooks.wait_for(lambda answers: any(body.get("outcome") == "confirmed" for _, body in answers))
    assert db_read(lambda: db.session.query(LedgerEntry).count()) == 1


def test_a_declined_card_shows_the_error_and_frees_the_slot(page, app, room_id, day, db_read):
    sign_up(page, app)
    booking_id = hold_morning(page, room_id, day)
    type_card(page, DECLINED)

    pay_button(page).click()

    errors = page.locator("#pay-errors")
    expect(errors).to_have_attribute("role", "alert")
    expect(errors).to_contain_text("Your card was declined. Nothing was charged and the slot was released.")
    expect(pay_button(page)).to_be_disabled()
    assert db_read(lambda: states(booking_id)) == (BookingState.CANCELLED, PaymentState.FAILED, 0)
    errors.get_by_role("link", name="Choose another time").click()
    expect(page.locator("li.unit", has=page.locator("#unit-MORNING")).locator(".status")).to_have_text("Free")


@pytest.mark.parametrize("answer", ["Complete authentication", "Fail authentication"])
def test_a_3d_secure_card_is_confirmed_only_when_the_check_passes(page, app, room_id, day, db_read, answer):
    sign_up(page, app)
    booking_id = hold_morning(page, room_id, day)
    type_card(page, THREE_D_SECURE)

    pay_button(page).click()
    expect(page.get_by_text("Your card issuer asks you to confirm the payment.")).to_be_visible()
    expect(pay_button(page)).to_be_disabled()  # no second payment while the check is open
    page.get_by_role("button", name=answer).click()

    if answer == "Complete authentication":
        page.wait_for_url(f"**/bookings/{booking_id}/receipt")
        expect(page.locator(".receipt-number")).to_have_text(re.compile(r"^\d{4}-\d{6}$"))
        expected = (BookingState.CONFIRMED, PaymentState.CAPTURED, 2800)
    else:
        expect(page.locator("#pay-errors")).to_contain_text(
            "The card authentication (3-D Secure) failed. Nothing was charged.")
        expect(pay_button(page)).to_be_disabled()
        expected = (BookingState.CANCELLED, PaymentState.FAILED, 0)

    def outcome():
        booking = db.session.get(Booking, booking_id)
        payment = booking.payment
        return booking.state, payment.state, payment.captured_amount, payment.intent_id

    *ours, intent_id = db_read(outcome)
    provider = get_gateway().retrieve_intent(intent_id)
    # And what the provider says: captured when paid; when the check failed, no charge was ever made.
    if answer == "Complete authentication":
        assert (provider.status, provider.amount) == ("succeeded", 2800) and provider.charge_id
    else:
        assert provider.status == "canceled" and provider.charge_id is None
    assert tuple(ours) == expected


def test_an_abandoned_payment_page_frees_the_slot_when_the_hold_runs_out(page, app, room_id, day, db_read):
    sign_up(page, app)
    page.clock.install()  # the page's clock, moved on below instead of waiting ten minutes
    booking_id = hold_morning(page, room_id, day)
    expect(page.locator("#hold-countdown")).to_have_text(re.compile(r"^(10:00|9:[0-5]\d)$"))

    page.clock.fast_forward("05:00")
    expect(page.locator("#hold-countdown")).to_have_text(re.compile(r"^[45]:[0-5]\d$"))
    expect(pay_button(page)).to_be_enabled()
    page.clock.fast_forward("05:01")
    expect(page.locator("#hold-countdown")).to_have_text("0:00")
    expect(page.locator("#pay-errors")).to_contain_text("Your hold on this slot has run out.")
    expect(pay_button(page)).to_be_disabled()

    # The resident walked away. On the server's clock the hold is still live, so the slot stays taken ...
    expect_morning(page, room_id, day, "Taken")
    # ... and the expiry job, run as if it were just past the hold, releases it.
    expires = db_read(lambda: db.session.get(Booking, booking_id).hold_expires_at)
    counts = expiry.release_expired_holds(now=expires + timedelta(seconds=1))
    db.session.rollback()
    assert counts == {"released": 1}

    expect_morning(page, room_id, day, "Free")
    assert db_read(lambda: states(booking_id)) == (BookingState.EXPIRED, PaymentState.CANCELLED, 0)
    page.goto(f"/bookings/{booking_id}/pay")
    page.wait_for_url(f"**/bookings/{booking_id}")
    expect(page.get_by_text("Your hold on this slot has run out.")).to_be_visible()
    expect(page.locator(".state-banner")).to_contain_text("Expired")
