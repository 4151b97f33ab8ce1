"""Cashless checkout against localstripe: pay, settle, late payments, and a provider that is down."""
import threading
from datetime import date, time, timedelta

import icalendar
import pytest
from flask_babel import force_locale
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import IntegrityError

from reservations.extensions import db
from reservations.models import (
    AttentionCase,
    Booking,
    BookingState,
    LedgerEntry,
    Payment,
    PaymentState,
    ProviderObject,
    Receipt,
    Refund,
    RefundState,
    Room,
    User,
)
from reservations.payments import ProviderUnreachable, get_gateway
from reservations.services import cancellation, checkout
from reservations.services import refunds as refund_service
from reservations.services.availability import day_availability
from reservations.services.booking import place_hold
from reservations.services.errors import BookingError
from reservations.services.receipts import fiscal_year, issue_receipt
from reservations.services.rules import division_slot
from reservations.timeutil import at_tokyo, business_date
from tests.helpers import (
    DECLINED_CARD,
    THREE_D_SECURE_CARD,
    audit_actions,
    book,
    booking_day,
    count,
    fetch_intent,
    finish_3d_secure,
    intents_of,
    outbox,
    provider_down,
    refunds_at_provider,
    run_together,
)

pytestmark = pytest.mark.payments

FREE_DIVISIONS = [("MORNING", time(9), time(12), 0, 0), ("AFTERNOON", time(13), time(17), 0, 0)]


def pay_by_card(localstripe, booking, now, number="4242424242424242"):
    outcome, intent = checkout.pay(booking.payment, token=localstripe.card_token(number), now=now)
    db.session.commit()
    return outcome, intent


def start_3d_secure(localstripe, booking, now) -> str:
    """Pay with a card that needs 3-D Secure; the challenge is left open. Returns the intent id."""
    outcome, intent = pay_by_card(localstripe, booking, now, THREE_D_SECURE_CARD)
    assert outcome == "requires_action"
    return intent.id


# -- the happy path -----------------------------------------------------------------------------

def test_paying_a_hold_by_card_confirms_it_captures_the_price_and_mails_the_receipt(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    assert booking.state == BookingState.HELD
    assert payment.state == PaymentState.NEW and payment.amount == booking.price == 2800

    outcome, intent = pay_by_card(localstripe, booking, now)

    assert outcome == "confirmed"
    assert booking.state == BookingState.CONFIRMED
    assert payment.state == PaymentState.CAPTURED
    assert payment.captured_amount == booking.price and payment.refunded_amount == 0
    ledger = db.session.scalars(select(LedgerEntry)).all()
    assert [(e.kind, e.amount, e.payment_id) for e in ledger] == [("capture", 2800, payment.id)]

    at_provider = fetch_intent(localstripe, payment.intent_id)
    assert at_provider["status"] == "succeeded" and at_provider["capture_method"] == "manual"
    assert at_provider["amount"] == 2800 and isinstance(at_provider["amount"], int)
    assert at_provider["currency"] == "jpy"
    assert at_provider["metadata"] == {"booking_id": str(booking.id), "payment_id": str(payment.id),
                                       "payment_key": payment.idempotency_key}
    charge = intent.charge_id
    assert charge.startswith("ch_") and ledger[0].reference == charge
    mapped = {p.provider_id: (p.kind, p.payment_id) for p in db.session.scalars(select(ProviderObject))}
    assert mapped == {payment.intent_id: ("intent", payment.id), charge: ("charge", payment.id)}

    receipt = db.session.scalars(select(Receipt)).one()
    fy = fiscal_year(business_date(now))
    assert receipt.number == f"{fy}-000001"
    assert (receipt.booking_id, receipt.amount, receipt.payer_name) == (booking.id, 2800, resident.name)
    assert ("held->confirmed", "paid") in audit_actions("booking", booking.id)

    [mail] = outbox(app)
    assert mail["To"] == resident.email and receipt.number in mail["Subject"]
    [ics] = [part for part in mail.iter_attachments() if part.get_content_type() == "text/calendar"]
    assert ics.get_filename().endswith(".ics")
    [event] = icalendar.Calendar.from_ical(ics.get_content()).walk("VEVENT")
    assert event.decoded("dtstart") == booking.start_at
    assert event.decoded("dtend") == booking.end_at


def test_receipts_are_numbered_consecutively_within_the_fiscal_year(app, localstripe, room, make_user, now):
    first = book(make_user(), room, ("MORNING",), now=now)
    second = book(make_user(), room, ("AFTERNOON",), now=now)
    pay_by_card(localstripe, first, now)
    pay_by_card(localstripe, second, now)
    fy = fiscal_year(business_date(now))
    numbers = db.session.scalars(select(Receipt.serial).order_by(Receipt.booking_id)).all()
    assert numbers == [1, 2]
    assert [r.number for r in db.session.scalars(select(Receipt).order_by(Receipt.serial))] == [
        f"{fy}-000001", f"{fy}-000002"]


def test_the_fiscal_year_starts_on_1_april_in_tokyo():
    assert fiscal_year(date(2027, 3, 31)) == 2026
    assert fiscal_year(date(2027, 4, 1)) == 2027
    assert fiscal_year(date(2027, 1, 1)) == 2026
    assert fiscal_year(date(2026, 12, 31)) == 2026
    # 1 April begins at 15:00 UTC on 31 March.
    assert fiscal_year(business_date(at_tokyo(date(2027, 3, 31), time(23, 59)))) == 2026
    assert fiscal_year(business_date(at_tokyo(date(2027, 4, 1), time(0, 0)))) == 2027


def test_receipt_serials_start_again_at_one_on_1_april_tokyo_time(app, localstripe, room, make_user, now):
    bookings = [book(make_user(), room, (code,), now=now) for code in ("MORNING", "AFTERNOON", "EVENING")]
    last_minute = at_tokyo(date(2027, 3, 31), time(23, 59))
    new_year = at_tokyo(date(2027, 4, 1), time(0, 0))
    receipts = [issue_receipt(bookings[0], now=last_minute), issue_receipt(bookings[1], now=new_year),
                issue_receipt(bookings[2], now=new_year + timedelta(minutes=1))]
    db.session.commit()
    assert [r.number for r in receipts] == ["2026-000001", "2027-000001", "2027-000002"]
    assert issue_receipt(bookings[0]).number == "2026-000001"  # issued once


@pytest.mark.parametrize("pay_page_opened", [False, True])
def test_paying_after_the_hold_ran_out_is_refused_and_charges_nothing(
        app, localstripe, room, resident, now, pay_page_opened):
    booking = book(resident, room, now=now)
    if pay_page_opened:
        checkout.ensure_intent(booking.payment)
        db.session.commit()

    with pytest.raises(BookingError, match="hold_expired"):
        checkout.pay(booking.payment, token=localstripe.card_token(), now=booking.hold_expires_at)
    db.session.commit()

    intents = intents_of(localstripe, booking.payment.id)
    assert [i["status"] for i in intents] == (["requires_payment_method"] if pay_page_opened else [])
    assert booking.payment.captured_amount == 0 and count(LedgerEntry) == 0


def test_paying_again_after_a_late_payment_was_returned_says_so(app, localstripe, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    intent_id = start_3d_secure(localstripe, booking, now)
    assert finish_3d_secure(localstripe, intent_id, success=True).ok
    get_gateway().capture(intent_id, payment_key=booking.payment.idempotency_key)
    late = booking.hold_expires_at + timedelta(minutes=1)
    take_the_slot(room, make_user(), booking, late)
    assert checkout.settle(booking.payment, now=late) == "refunded"
    db.session.commit()

    assert checkout.pay(booking.payment, token=localstripe.card_token(), now=late) == ("refunded", None)
    db.session.commit()
    assert count(Refund) == 1 and count(Receipt) == 0


# -- 3-D Secure -------------------------------------------------------------------------------------

def test_a_card_passing_3d_secure_is_confirmed_when_the_page_comes_back(app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    intent_id = start_3d_secure(localstripe, booking, now)
    assert booking.state == BookingState.HELD and booking.payment.state == PaymentState.PENDING
    assert finish_3d_secure(localstripe, intent_id, success=True).ok

    assert checkout.settle(booking.payment, now=now) == "confirmed"
    db.session.commit()

    assert booking.state == BookingState.CONFIRMED and booking.payment.captured_amount == booking.price
    assert count(Receipt) == 1


def test_a_card_failing_3d_secure_charges_nothing_and_releases_the_slot(app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    intent_id = start_3d_secure(localstripe, booking, now)
    assert finish_3d_secure(localstripe, intent_id, success=False).ok

    assert checkout.settle(booking.payment, now=now) == "released"
    db.session.commit()

    assert booking.state == BookingState.CANCELLED and booking.payment.state == PaymentState.FAILED
    assert ("pending->failed", "authentication failed") in audit_actions("payment", booking.payment.id)
    assert fetch_intent(localstripe, intent_id)["status"] == "canceled"
    assert booking.payment.captured_amount == 0 and count(LedgerEntry) == 0


# -- a declined card ------------------------------------------------------------------------------

def test_a_declined_card_charges_nothing_and_frees_the_slot_for_others(
        app, localstripe, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    with pytest.raises(BookingError) as err:
        checkout.pay(payment, now=now, token=localstripe.card_token(DECLINED_CARD))
    db.session.commit()  # as the pay view does: the release is kept

    assert err.value.code == "card_declined"
    with force_locale("en"):
        assert "declined" in err.value.message and "Nothing was charged" in err.value.message
    assert booking.state == BookingState.CANCELLED and not booking.is_active(now)
    assert payment.state == PaymentState.FAILED and payment.failure_message
    assert payment.captured_amount == 0
    assert count(LedgerEntry) == 0 and count(Receipt) == 0
    assert fetch_intent(localstripe, payment.intent_id)["status"] == "canceled"
    assert day_availability(room, booking_day(), now=now).units[0].status == "free"
    other = place_hold(make_user(), room, division_slot(room, booking_day(), ["MORNING"]), now=now)
    db.session.commit()
    assert other.state == BookingState.HELD


# -- a double click ---------------------------------------------------------------------------------

def assert_paid_once(localstripe, booking):
    payment = booking.payment
    assert booking.state == BookingState.CONFIRMED and payment.state == PaymentState.CAPTURED
    assert count(LedgerEntry, LedgerEntry.kind == "capture") == 1
    assert count(Receipt) == 1
    assert [a for a, _ in audit_actions("booking", booking.id)].count("held->confirmed") == 1
    [intent] = intents_of(localstripe, payment.id)  # one intent: the one we captured
    assert intent["id"] == payment.intent_id and intent["status"] == "succeeded"


def test_paying_twice_in_a_row_captures_once(app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    token = localstripe.card_token()
    assert checkout.pay(booking.payment, token=token, now=now)[0] == "confirmed"
    db.session.commit()
    assert checkout.pay(booking.payment, token=token, now=now) == ("confirmed", None)
    db.session.commit()
    assert_paid_once(localstripe, booking)
    assert len(outbox(app)) == 1


def test_two_simultaneous_pay_requests_capture_once(app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    booking_id, payment_id = booking.id, booking.payment.id
    tokens = [localstripe.card_token(), localstripe.card_token()]
    db.session.rollback()  # end this thread's transaction before the race

    def click(n):
        return lambda: checkout.pay(db.session.get(Payment, payment_id), token=tokens[n], now=now)[0]

    results = run_together(app, click(0), click(1))

    assert results == ["confirmed", "confirmed"], results
    assert_paid_once(localstripe, db.session.get(Booking, booking_id))
    assert len(outbox(app)) == 1


# -- paid after the hold ran out ----------------------------------------------------------------------

def test_a_payment_after_the_hold_ran_out_confirms_while_the_slot_is_still_free(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    intent_id = start_3d_secure(localstripe, booking, now)
    assert finish_3d_secure(localstripe, intent_id, success=True).ok
    late = booking.hold_expires_at + timedelta(minutes=5)

    assert checkout.settle(booking.payment, now=late) == "confirmed"
    db.session.commit()

    assert booking.state == BookingState.CONFIRMED
    assert booking.payment.captured_amount == booking.price
    assert ("held->confirmed", "paid after the hold ran out") in audit_actions("booking", booking.id)
    assert fetch_intent(localstripe, intent_id)["status"] == "succeeded"
    assert count(AttentionCase) == 0


def take_the_slot(room, user, booking, now):
    """Another resident books the same slot once `booking`'s hold has run out."""
    other = place_hold(user, room, division_slot(room, booking_day(), ["MORNING"]), now=now)
    db.session.commit()
    return other


def test_a_payment_after_the_slot_was_taken_releases_the_authorisation_and_tells_resident_and_staff(
        app, localstripe, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    intent_id = start_3d_secure(localstripe, booking, now)
    late = booking.hold_expires_at + timedelta(minutes=1)
    other = take_the_slot(room, make_user(), booking, late)
    assert finish_3d_secure(localstripe, intent_id, success=True).ok  # the resident was slow

    assert checkout.settle(payment, now=late + timedelta(minutes=1)) == "refunded"
    db.session.commit()

    assert fetch_intent(localstripe, intent_id)["status"] == "canceled"  # the authorisation is released
    assert payment.state == PaymentState.CANCELLED and payment.captured_amount == 0
    assert count(LedgerEntry) == 0 and count(Refund) == 0 and count(Receipt) == 0
    assert booking.state == BookingState.EXPIRED and other.state == BookingState.HELD
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.booking_id, case.reason) == (booking.id, "paid_after_slot_taken")
    [mail] = outbox(app)
    assert mail["To"] == resident.email and "¥2,800" in mail.get_body().get_content()


def test_a_charge_captured_after_the_slot_was_taken_is_refunded_in_full(
        app, localstripe, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    intent_id = start_3d_secure(localstripe, booking, now)
    assert finish_3d_secure(localstripe, intent_id, success=True).ok
    # The capture went through but the request that sent it died before our commit.
    get_gateway().capture(intent_id, payment_key=payment.idempotency_key)
    late = booking.hold_expires_at + timedelta(minutes=1)
    take_the_slot(room, make_user(), booking, late)

    assert checkout.settle(payment, now=late + timedelta(minutes=1)) == "refunded"
    db.session.commit()

    [refund] = payment.refunds
    assert (refund.amount, refund.reason, refund.partial, refund.state) == (
        booking.price, "slot_taken", False, RefundState.SUCCEEDED)
    assert payment.state == PaymentState.CAPTURED
    assert payment.refunded_amount == payment.captured_amount == booking.price
    charge = db.session.scalar(select(ProviderObject.provider_id).where(ProviderObject.kind == "charge"))
    assert [r["id"] for r in refunds_at_provider(localstripe, charge)] == [refund.provider_refund_id]
    assert sorted(db.session.scalars(select(LedgerEntry.kind))) == ["capture", "refund"]
    assert booking.state == BookingState.EXPIRED and count(Receipt) == 0
    assert db.session.scalars(select(AttentionCase.reason)).all() == ["paid_after_slot_taken"]
    assert [m["To"] for m in outbox(app)] == [resident.email]


def test_settling_a_returned_late_payment_again_changes_nothing(app, localstripe, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    intent_id = start_3d_secure(localstripe, booking, now)
    assert finish_3d_secure(localstripe, intent_id, success=True).ok
    get_gateway().capture(intent_id, payment_key=payment.idempotency_key)
    late = booking.hold_expires_at + timedelta(minutes=1)
    other = take_the_slot(room, make_user(), booking, late)
    checkout.settle(payment, now=late)
    db.session.commit()
    # The other resident lets their hold run out: the slot is free again, but the money went back.
    free_again = other.hold_expires_at + timedelta(minutes=1)

    for when in (late, free_again):
        checkout.settle(payment, now=when)
        db.session.commit()

    assert booking.state == BookingState.EXPIRED
    assert count(Refund) == 1 and payment.refunded_amount == payment.captured_amount
    assert count(AttentionCase) == 1 and len(outbox(app)) == 1
    assert count(Receipt) == 0


def test_a_late_payment_confirms_when_the_slot_was_held_meanwhile_by_a_hold_that_also_ran_out(
        app, localstripe, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    intent_id = start_3d_secure(localstripe, booking, now)
    late = booking.hold_expires_at + timedelta(minutes=1)
    other = book(make_user(), room, now=late)  # reserved (a payment waiting), never paid
    assert finish_3d_secure(localstripe, intent_id, success=True).ok
    after_both = other.hold_expires_at + timedelta(minutes=1)

    assert checkout.settle(booking.payment, now=after_both) == "confirmed"
    db.session.commit()

    assert booking.state == BookingState.CONFIRMED and other.state == BookingState.EXPIRED
    assert booking.payment.captured_amount == booking.price
    # The other hold never reached its pay page: its payment goes with it (nothing stays "new").
    assert other.payment.state == PaymentState.CANCELLED
    assert ("new->cancelled", "retired by a late payment for the slot") in audit_actions("payment", other.payment.id)


# -- the provider cannot be reached -------------------------------------------------------------------

def test_paying_while_the_provider_is_unreachable_keeps_the_hold_and_works_once_it_is_back(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    token = localstripe.card_token()
    with provider_down(app):
        with pytest.raises(BookingError) as err:
            checkout.pay(payment, token=token, now=now)
        db.session.commit()
    assert err.value.code == "payment_unavailable"
    with force_locale("en"):
        assert "cannot be reached" in err.value.message and "Nothing was charged" in err.value.message
    assert booking.state == BookingState.HELD and booking.is_active(now)
    assert payment.state == PaymentState.NEW and payment.intent_id is None
    assert intents_of(localstripe, payment.id) == []

    assert pay_by_card(localstripe, booking, now)[0] == "confirmed"
    assert payment.captured_amount == booking.price


def test_a_provider_lost_between_the_intent_and_the_card_charges_nothing_and_keeps_the_hold(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    checkout.ensure_intent(payment)  # the pay page opened
    db.session.commit()
    token = localstripe.card_token()
    with provider_down(app):
        with pytest.raises(BookingError) as err:
            checkout.pay(payment, token=token, now=now)
        db.session.commit()
    assert err.value.code == "payment_unavailable"
    assert booking.state == BookingState.HELD and payment.state == PaymentState.PENDING
    assert fetch_intent(localstripe, payment.intent_id)["status"] == "requires_payment_method"

    assert checkout.pay(payment, token=token, now=now)[0] == "confirmed"
    db.session.commit()
    assert booking.state == BookingState.CONFIRMED and len(intents_of(localstripe, payment.id)) == 1


# -- free bookings ------------------------------------------------------------------------------------

def test_a_free_booking_is_confirmed_at_once_without_a_payment(app, localstripe, make_room, resident, now):
    room = make_room("和室", divisions=FREE_DIVISIONS)
    booking = book(resident, room, now=now)
    assert booking.price == 0
    assert booking.state == BookingState.CONFIRMED
    assert booking.payment is None and count(Payment) == 0
    assert ("held->confirmed", "free") in audit_actions("booking", booking.id)




def test_settling_with_a_booking_read_before_another_resident_retired_its_hold_returns_the_payment(
        app, localstripe, room, resident, make_user, now):
    booking = book(resident, room, now=now)
    payment = booking.payment
    room_id, other_id, day = room.id, make_user().id, booking_day()
    intent_id = start_3d_secure(localstripe, booking, now)
    assert finish_3d_secure(localstripe, intent_id, success=True).ok
    just_before = booking.hold_expires_at - timedelta(seconds=1)
    just_after = booking.hold_expires_at + timedelta(seconds=1)
    # The resident's page read the booking, still held, a moment before its hold ran out ...
    assert booking.state == BookingState.HELD
    db.session.expunge(booking)
    db.session.rollback()

    def take_the_lapsed_slot():  # ... and a moment after, another resident holds the slot.
        room = db.session.get(Room, room_id)
        slot = division_slot(room, day, ["MORNING"])
        return place_hold(db.session.get(User, other_id), room, slot, now=just_after).id

    [other_id] = run_together(app, take_the_lapsed_slot)
    db.session.add(booking)

    assert checkout.settle(payment, now=just_before) == "refunded"
    db.session.commit()

    assert booking.state == BookingState.EXPIRED and payment.state == PaymentState.CANCELLED
    assert fetch_intent(localstripe, intent_id)["status"] == "canceled"
    assert db.session.get(Booking, other_id).state == BookingState.HELD
    assert count(LedgerEntry) == 0 and count(AttentionCase) == 1


# -- idempotency keys ---------------------------------------------------------------------------------

def test_payments_whose_ids_collide_across_databases_get_different_idempotency_keys(
        app, localstripe, make_room, make_user, now):
    """Staging and live, or a restored backup, sharing one provider account reuse integer ids."""
    from tests.conftest import _empty_tables

    first = book(make_user(), make_room(), now=now)
    first_id, first_key = first.payment.id, first.payment.idempotency_key
    first_intent = checkout.ensure_intent(first.payment).id
    db.session.commit()
    db.session.expunge_all()
    _empty_tables()  # the other database: the same ids start again
    db.session.commit()

    second = book(make_user(), make_room(), now=now)
    second_intent = checkout.ensure_intent(second.payment).id
    db.session.commit()

    assert second.payment.id == first_id  # the integer ids collide ...
    assert second.payment.idempotency_key != first_key  # ... the keys do not
    assert second_intent != first_intent  # so the provider opened a new intent, not replayed the old one
    keys = {pi["metadata"]["payment_key"] for pi in intents_of(localstripe, first_id)}
    assert keys == {first_key, second.payment.idempotency_key}
    assert len(first_key) == 36 and len(set(map(len, keys))) == 1


def test_every_payment_and_refund_has_its_own_idempotency_key(app, localstripe, room, make_user, now):
    bookings = [book(make_user(), room, (code,), now=now) for code in ("MORNING", "AFTERNOON")]
    for booking in bookings:
        pay_by_card(localstripe, booking, now)
    refunds = [refund_service.refund(b.payment, 500, reason="staff") for b in bookings]
    db.session.commit()

    keys = [b.payment.idempotency_key for b in bookings] + [r.idempotency_key for r in refunds]
    assert len(set(keys)) == 4 and all(len(k) == 36 for k in keys)
    with pytest.raises(IntegrityError):
        db.session.execute(update(Refund).where(Refund.id == refunds[1].id).values(idempotency_key=keys[2]))
        db.session.flush()
    db.session.rollback()


# -- release() waits for the provider ---------------------------------------------------------------

class CancelUnreachable:
    """The real gateway, except that cancelling an intent cannot reach the provider."""

    def __init__(self, gateway):
        self._gateway = gateway
        self.cancels = 0

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def cancel(self, intent_id, **kwargs):
        self.cancels += 1
        raise ProviderUnreachable("The payment service cannot be reached.", code="unreachable")


def test_cancelling_a_hold_while_the_provider_cannot_cancel_its_intent_keeps_the_hold(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    checkout.ensure_intent(booking.payment)
    db.session.commit()
    app.extensions["payment_gateway"] = CancelUnreachable(get_gateway())

    with pytest.raises(BookingError) as err:
        cancellation.cancel_booking(booking, resident, now=now)
    db.session.rollback()
    app.extensions.pop("payment_gateway")

    assert err.value.code == "payment_unavailable"
    db.session.expire_all()
    assert booking.state == BookingState.HELD and booking.payment.state == PaymentState.PENDING
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "requires_payment_method"
    cancellation.cancel_booking(booking, resident, now=now)  # the provider answers again
    db.session.commit()
    assert booking.state == BookingState.CANCELLED
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "canceled"


def test_an_expired_hold_whose_intent_cannot_be_cancelled_stays_held_for_the_next_run(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    checkout.ensure_intent(booking.payment)
    db.session.commit()
    app.extensions["payment_gateway"] = CancelUnreachable(get_gateway())
    late = booking.hold_expires_at + timedelta(minutes=1)

    with pytest.raises(ProviderUnreachable):
        checkout.settle(booking.payment, now=late)
    db.session.rollback()
    app.extensions.pop("payment_gateway")

    db.session.expire_all()
    assert booking.state == BookingState.HELD and booking.payment.state == PaymentState.PENDING
    assert checkout.settle(booking.payment, now=late) == "released"
    db.session.commit()
    assert booking.state == BookingState.EXPIRED
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "canceled"


def test_a_declined_card_whose_intent_cannot_be_cancelled_keeps_the_hold_until_the_provider_answers(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    gateway = app.extensions["payment_gateway"] = CancelUnreachable(get_gateway())

    with pytest.raises(BookingError) as err:
        checkout.pay(booking.payment, token=localstripe.card_token(DECLINED_CARD), now=now)
    db.session.commit()  # as the pay view does
    app.extensions.pop("payment_gateway")

    assert gateway.cancels == 1 and err.value.code == "card_declined_hold_kept"
    with force_locale("en"):
        assert "another card" in err.value.message and "Nothing was charged" in err.value.message
    assert booking.state == BookingState.HELD and booking.payment.state == PaymentState.FAILED
    assert booking.hold_is_live(now)
    # (localstripe cannot confirm an intent again after a decline, so another card is not tried here.)
    # Once the provider answers, the hold is released and its intent cancelled, nothing charged.
    assert checkout.settle(booking.payment, now=booking.hold_expires_at) == "released"
    db.session.commit()
    assert booking.state == BookingState.EXPIRED and booking.payment.captured_amount == 0
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "canceled"


# -- a lapsed hold is retired once, whoever retires it ------------------------------------------------

class Pausing:
    """The real gateway, except that cancelling an intent first signals `reached` and waits for `go`."""

    def __init__(self, gateway, reached, go):
        self._gateway, self._reached, self._go = gateway, reached, go

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def cancel(self, intent_id, **kwargs):
        self._reached.set()
        assert self._go.wait(timeout=20), "the other side never got there"
        return self._gateway.cancel(intent_id, **kwargs)


def on_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def test_releasing_a_hold_that_a_booking_retires_meanwhile_expires_it_once(
        app, localstripe, room, resident, make_user, now):
    """settle() read the lapsed hold as held, then asked the provider to cancel its intent; meanwhile
    another resident's booking retired the hold. On PostgreSQL the interleaving is forced (the booking
    runs while the provider is asked); SQLite serialises the two writers, in either order."""
    lapsed = with_open_pay_page(book(resident, room, now=now), now)
    lapsed_id, payment_id, room_id, other_id = lapsed.id, lapsed.payment.id, room.id, make_user().id
    when = lapsed.hold_expires_at + timedelta(minutes=1)
    asked, retired = threading.Event(), threading.Event()
    if on_postgresql():
        app.extensions["payment_gateway"] = Pausing(get_gateway(), asked, retired)
    else:
        asked.set()
    db.session.rollback()

    def release():
        return checkout.settle(db.session.get(Payment, payment_id), now=when)

    def book_over_it():
        assert asked.wait(timeout=20)
        room_now = db.session.get(Room, room_id)
        booking = place_hold(db.session.get(User, other_id), room_now,
                             division_slot(room_now, booking_day(), ["MORNING"]), now=when)
        retired.set()  # flushed: the hold is retired and its row locked until we commit
        return booking.id

    try:
        released, new_id = run_together(app, release, book_over_it)
    finally:
        retired.set()
        app.extensions.pop("payment_gateway", None)

    assert released == "released" and isinstance(new_id, int), (released, new_id)
    assert [a for a, _ in audit_actions("booking", lapsed_id)] == ["held", "held->expired"]
    assert db.session.get(Booking, new_id).state == BookingState.HELD
    payment = db.session.get(Payment, payment_id)
    assert payment.state == PaymentState.CANCELLED
    assert fetch_intent(localstripe, payment.intent_id)["status"] == "canceled"


def with_open_pay_page(booking, now):
    checkout.ensure_intent(booking.payment, now=now)
    db.session.commit()
    return booking


def backend_pid() -> int:
    return db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def waiting_for_a_lock(pid: int) -> bool:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                            {"pid": pid}).scalar() is True


def test_a_late_payment_and_the_job_never_both_expire_the_same_lapsed_hold(
        app, localstripe, room, resident, make_user, now):
    """The job releases a lapsed hold (locked, not yet committed) while a late payment for the slot
    retires the lapsed holds over it. On PostgreSQL the job waits, before it commits, until the late
    payment has either read the hold or is waiting for its lock; SQLite serialises the two writers."""
    late_payer = book(resident, room, now=now)
    intent_id = start_3d_secure(localstripe, late_payer, now)
    assert finish_3d_secure(localstripe, intent_id, success=True).ok
    after_first = late_payer.hold_expires_at + timedelta(minutes=1)
    lapsed = with_open_pay_page(book(make_user(), room, now=after_first), after_first)  # took the slot, then lapsed
    when = lapsed.hold_expires_at + timedelta(minutes=1)
    lapsed_id, lapsed_payment, late_payment = lapsed.id, lapsed.payment.id, late_payer.payment.id
    locked, selected = threading.Event(), threading.Event()
    payer = {}
    db.session.rollback()

    def job_releases_the_lapsed_hold():
        if on_postgresql():
            def hold_the_commit(session):  # the hold is locked (and expired in memory), not yet committed
                locked.set()
                while not selected.is_set() and not ("pid" in payer and waiting_for_a_lock(payer["pid"])):
                    selected.wait(0.01)
            event.listen(db.session(), "before_commit", hold_the_commit, once=True)
        else:
            locked.set()
        return checkout.settle(db.session.get(Payment, lapsed_payment), now=when)

    def pay_late():
        if on_postgresql():
            payer["pid"] = backend_pid()
            ident = threading.get_ident()

            def seen(conn, cursor, statement, *args):
                if threading.get_ident() == ident and "hold_expires_at <=" in statement:
                    selected.set()
            event.listen(db.engine, "after_cursor_execute", seen)
        assert locked.wait(timeout=20)
        try:
            return checkout.settle(db.session.get(Payment, late_payment), now=when)
        finally:
            if on_postgresql():
                event.remove(db.engine, "after_cursor_execute", seen)

    released, confirmed = run_together(app, job_releases_the_lapsed_hold, pay_late)

    assert (released, confirmed) == ("released", "confirmed"), (released, confirmed)
    assert [a for a, _ in audit_actions("booking", lapsed_id)] == ["held", "held->expired"]
    assert db.session.get(Booking, late_payer.id).state == BookingState.CONFIRMED
    assert count(LedgerEntry, LedgerEntry.kind == "capture") == 1


# -- a retired hold's payment ---------------------------------------------------------------------------

def test_a_hold_retired_by_a_booking_before_its_pay_page_was_opened_cancels_its_payment(
        app, localstripe, room, resident, make_user, now):
    lapsed = book(resident, room, now=now)
    late = lapsed.hold_expires_at + timedelta(minutes=1)

    other = take_the_slot(room, make_user(), lapsed, late)

    assert lapsed.state == BookingState.EXPIRED and other.state == BookingState.HELD
    assert lapsed.payment.state == PaymentState.CANCELLED
    assert audit_actions("payment", lapsed.payment.id) == [
        ("created", ""), ("new->cancelled", "retired by an overlapping booking")]
    assert count(Payment, Payment.state == PaymentState.NEW, Payment.booking_id == lapsed.id) == 0
    # The resident comes back to the page: nothing to pay, nothing opened at the provider.
    with pytest.raises(BookingError, match="hold_expired"):
        checkout.ensure_intent(lapsed.payment, now=late)
    assert intents_of(localstripe, lapsed.payment.id) == []
