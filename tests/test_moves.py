"""Moving a booking (services/moves.py): one transaction under the room locks, priced today, a paid fee
carried over within one fiscal year and building, and nothing changed when the new slot is taken."""
from datetime import UTC, date, datetime, time, timedelta
from html import unescape

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import (
    AuditEntry,
    Booking,
    BookingState,
    Building,
    LedgerEntry,
    Receipt,
    Refund,
    RefundState,
    Role,
)
from reservations.services import checkout, counter, moves
from reservations.services.booking import place_hold
from reservations.services.deadline import payment_deadline
from reservations.services.errors import BookingError
from reservations.services.rules import division_slot
from reservations.timeutil import at_tokyo
from tests.helpers import audit_actions, book, booking_day, charge_id, count, fetch_intent, refunds_at_provider

CHEAP = [("MORNING", time(9), time(12), 2000, 2000), ("AFTERNOON", time(13), time(17), 2400, 2400)]


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


@pytest.fixture
def cheap(make_room):
    """A room of the same building that costs less: MORNING 2,000 yen."""
    return make_room("会議室", divisions=CHEAP)


def moved_entry(booking_id: int) -> dict:
    return db.session.scalar(select(AuditEntry.data).where(
        AuditEntry.subject == "booking", AuditEntry.subject_id == booking_id, AuditEntry.action == "moved"))


def ledger() -> list[tuple[str, int]]:
    return [(e.kind, e.amount) for e in db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.id))]


@pytest.mark.payments
def test_a_move_up_into_an_overlapping_slot_of_the_same_room_takes_the_difference_in_cash(
        app, localstripe, paid, room, staff, now):
    """MORNING (2,800, paid by card) to MORNING + AFTERNOON (6,400): the old booking steps aside first."""
    slot = division_slot(room, booking_day(), ["MORNING", "AFTERNOON"])

    result = moves.move_booking(paid, room, slot, staff=staff, method="cash", now=now)
    db.session.commit()

    old, new = paid, result.new
    assert old.state == BookingState.CANCELLED and old.price == 2800  # its own price never changes
    assert ("confirmed->cancelled", f"moved to #{new.id}") in audit_actions("booking", old.id)
    assert new.state == BookingState.CONFIRMED and new.price == 6400 and new.user_id == old.user_id
    assert new.price_detail["moved_from"] == old.id and new.price_detail["carried_over"] == 2800
    assert (result.carried_over, result.due, result.refunded) == (2800, 3600, 0)
    assert new.payment.provider == "cash" and new.payment.captured_amount == 3600
    receipt = db.session.scalar(select(Receipt).where(Receipt.booking_id == new.id))
    assert (receipt.amount, receipt.method) == (3600, "cash")
    assert old.payment.refunded_amount == 0 and count(Refund) == 0
    assert ledger() == [("capture", 2800), ("capture", 3600)]
    for booking in (old, new):
        entry = moved_entry(booking.id)
        assert entry["before"]["booking_id"] == old.id and entry["after"]["booking_id"] == new.id
        assert (entry["before"]["price"], entry["after"]["price"]) == (2800, 6400)
        assert entry["after"]["start_at"] == slot.start_at.isoformat()
        assert entry["after"]["end_at"] == slot.end_at.isoformat() and entry["method"] == "cash"


@pytest.mark.payments
def test_a_move_up_paid_online_by_the_deadline_asks_the_card_for_the_difference_only(
        app, localstripe, paid, room, staff, now):
    slot = division_slot(room, booking_day(), ["EVENING"])  # 3,600

    result = moves.move_booking(paid, room, slot, staff=staff, method="online", now=now)
    db.session.commit()

    new = result.new
    assert new.state == BookingState.HELD and new.pay_mode == "deadline"
    assert new.hold_expires_at == payment_deadline(room, slot.start_at)
    assert new.price == 3600 and new.payment.provider == "stripe" and new.payment.amount == 800
    assert paid.state == BookingState.CANCELLED and count(Refund) == 0

    assert checkout.pay(new.payment, token=localstripe.card_token(), now=now)[0] == "confirmed"
    db.session.commit()
    assert new.state == BookingState.CONFIRMED and new.payment.captured_amount == 800
    assert fetch_intent(localstripe, new.payment.intent_id)["amount"] == 800
    assert ledger() == [("capture", 2800), ("capture", 800)]


@pytest.mark.payments
def test_the_receipt_of_a_difference_paid_online_is_for_the_difference(app, localstripe, paid, room, staff, now):
    new = moves.move_booking(paid, room, division_slot(room, booking_day(), ["EVENING"]), staff=staff,
                             method="online", now=now).new
    db.session.commit()
    checkout.pay(new.payment, token=localstripe.card_token(), now=now)
    db.session.commit()
    assert db.session.scalar(select(Receipt.amount).where(Receipt.booking_id == new.id)) == 800


@pytest.mark.payments
def test_a_move_down_refunds_the_difference_from_the_card(app, localstripe, paid, cheap, staff, now):
    result = moves.move_booking(paid, cheap, division_slot(cheap, booking_day(), ["MORNING"]), staff=staff, now=now)
    db.session.commit()

    new, payment = result.new, paid.payment
    assert new.state == BookingState.CONFIRMED and new.room_id == cheap.id and new.price == 2000
    assert new.price_detail["carried_over"] == 2000 and new.payment is None
    [refund] = result.refunds
    assert (refund.amount, refund.reason, refund.partial, refund.payment_id) == (800, "move", True, payment.id)
    assert refund.state == RefundState.SUCCEEDED and payment.refunded_amount == 800
    assert [r["amount"] for r in refunds_at_provider(localstripe, charge_id(fetch_intent(localstripe,
                                                                                        payment.intent_id)))] == [800]
    assert ledger() == [("capture", 2800), ("refund", -800)]
    assert db.session.scalar(select(Receipt).where(Receipt.booking_id == new.id)) is None


@pytest.mark.payments
def test_a_booking_moved_twice_still_counts_the_fee_carried_over_the_first_time(
        app, localstripe, paid, room, cheap, staff, now):
    """2,800 by card, then 3,600 more in cash (6,400), then down to 2,000: 4,400 back, the cash first."""
    day = booking_day()
    up = moves.move_booking(paid, room, division_slot(room, day, ["MORNING", "AFTERNOON"]), staff=staff,
                            method="cash", now=now).new
    db.session.commit()
    assert [(p.id, amount) for p, amount in moves.paid_sources(up)] == [(up.payment.id, 3600), (paid.payment.id, 2800)]

    result = moves.move_booking(up, cheap, division_slot(cheap, day, ["MORNING"]), staff=staff, now=now)
    db.session.commit()

    assert (result.paid, result.carried_over, result.refunded) == (6400, 2000, 4400)
    assert [(r.payment_id, r.amount) for r in result.refunds] == [(up.payment.id, 3600), (paid.payment.id, 800)]
    assert up.payment.refundable == 0 and paid.payment.refundable == 2000
    assert [(p.id, amount) for p, amount in moves.paid_sources(result.new)] == [(paid.payment.id, 2000)]


@pytest.mark.payments
def test_a_move_into_a_taken_slot_is_refused_and_changes_nothing(app, localstripe, paid, cheap, make_user, staff,
                                                                 now):
    other = book(make_user(), cheap, ("MORNING",), now=now)  # a live hold of someone else
    entries = count(AuditEntry)

    with pytest.raises(BookingError) as err:
        moves.move_booking(paid, cheap, division_slot(cheap, booking_day(), ["MORNING"]), staff=staff, now=now)
    db.session.rollback()

    assert err.value.code == "slot_taken"
    assert db.session.get(Booking, paid.id).state == BookingState.CONFIRMED
    assert db.session.get(Booking, other.id).state == BookingState.HELD
    assert count(Booking) == 2 and count(Refund) == 0 and count(AuditEntry) == entries
    assert paid.payment.refunded_amount == 0 and ledger() == [("capture", 2800)]
    assert refunds_at_provider(localstripe, charge_id(fetch_intent(localstripe, paid.payment.intent_id))) == []


def test_a_fee_is_not_carried_into_another_fiscal_year(app, room, make_room, resident, staff):
    """31 March (FY2026) to 1 April (FY2027): the cash paid is refunded in full and the new slot paid anew."""
    now = datetime(2027, 3, 1, 1, 0, tzinfo=UTC)
    old = place_hold(resident, room, division_slot(room, date(2027, 3, 31), ["MORNING"]), now=now, actor=staff,
                     channel="counter")
    counter.record_counter_payment(old, "cash", old.price, staff=staff, now=now)
    db.session.commit()
    april = division_slot(room, date(2027, 4, 1), ["MORNING"])
    elsewhere = make_room("別館の部屋")
    elsewhere.building = Building(name="別館", name_kana="ベッカン", name_en="Annex")
    db.session.commit()
    march = division_slot(room, date(2027, 3, 30), ["EVENING"])
    assert moves.carries_over(old, room, march) and not moves.carries_over(old, elsewhere, march)
    assert not moves.carries_over(old, room, april)

    result = moves.move_booking(old, room, april, staff=staff, method="cash", now=now)
    db.session.commit()

    new = result.new
    assert (result.carried_over, result.due, result.refunded) == (0, 2800, 2800)
    assert new.price_detail["carried_over"] == 0 and new.state == BookingState.CONFIRMED
    [refund] = result.refunds
    assert (refund.amount, refund.reason, refund.state) == (2800, "move", RefundState.SUCCEEDED)
    assert old.payment.refunded_amount == 2800 and new.payment.captured_amount == 2800
    assert ledger() == [("capture", 2800), ("capture", 2800), ("refund", -2800)]


def test_staff_move_a_booking_from_its_page(app, client, english, login_as, room, resident, staff):
    """The page: no method for an amount due is refused with the reason; with one, the move is made."""
    now = datetime.now(UTC)
    day = booking_day()
    old = place_hold(resident, room, division_slot(room, day, ["MORNING"]), now=now, actor=staff, channel="counter")
    counter.record_counter_payment(old, "cash", old.price, staff=staff, now=now)
    db.session.commit()
    old_id = old.id
    login_as(staff)

    page = unescape(client.get(f"/staff/bookings/{old_id}").get_data(as_text=True))
    assert f"/staff/bookings/{old_id}/move" in page and "Move to another time or room" in page
    page = unescape(client.get(f"/staff/bookings/{old_id}/move").get_data(as_text=True))
    assert 'value="AFTERNOON"' in page and "This booking" in page  # its own division is not "taken"

    data = {"room_id": room.id, "date": day.isoformat(), "divisions": ["AFTERNOON"]}
    refused = client.post(f"/staff/bookings/{old_id}/move", data=data)
    assert refused.status_code == 422
    assert "Choose how the amount due is paid." in unescape(refused.get_data(as_text=True))
    db.session.rollback()
    assert db.session.get(Booking, old_id).state == BookingState.CONFIRMED and count(Booking) == 1

    moved = client.post(f"/staff/bookings/{old_id}/move", data={**data, "method": "terminal", "slip_number": "T-42"})
    assert moved.status_code == 302
    db.session.rollback()
    new = db.session.scalars(select(Booking).where(Booking.id != old_id)).one()
    assert moved.headers["Location"].endswith(f"/staff/bookings/{new.id}")
    assert new.start_at == at_tokyo(day, time(13)) and new.payment.slip_number == "T-42"
    assert new.payment.captured_amount == 800  # 3,600 less the 2,800 carried over
    shown = unescape(client.get(moved.headers["Location"]).get_data(as_text=True))
    assert f"the new booking is number {new.id}" in shown and "¥800 was taken at the counter" in shown


@pytest.mark.payments
def test_cancelling_a_moved_booking_for_the_ward_refunds_the_fee_carried_over_too(
        app, localstripe, paid, cheap, staff, now):
    from reservations.services.cancellation import cancel_for_ward_reason

    new = moves.move_booking(paid, cheap, division_slot(cheap, booking_day(), ["MORNING"]), staff=staff,
                             now=now).new  # 2,800 paid, 800 refunded by the move, 2,000 carried over
    db.session.commit()
    assert new.payment is None

    cancel_for_ward_reason(new, staff, "closure", now=now)
    db.session.commit()

    assert new.state == BookingState.CANCELLED
    assert paid.payment.refunded_amount == 2800 and paid.payment.refundable == 0
    assert sorted(r.amount for r in db.session.scalars(select(Refund))) == [800, 2000]
    assert ledger() == [("capture", 2800), ("refund", -800), ("refund", -2000)]


@pytest.mark.payments
def test_a_resident_cancelling_a_moved_booking_gets_the_carried_fee_back_by_the_policy(
        app, localstripe, paid, cheap, resident, staff, now):
    from reservations.services.cancellation import cancel_booking

    new = moves.move_booking(paid, cheap, division_slot(cheap, booking_day(), ["MORNING"]), staff=staff,
                             now=now).new
    db.session.commit()

    cancel_booking(new, resident, now=now)  # about two weeks ahead: the policy gives it all back
    db.session.commit()

    assert new.state == BookingState.CANCELLED and paid.payment.refundable == 0
    assert ledger()[-1] == ("refund", -2000)


@pytest.mark.payments
def test_a_difference_left_unpaid_at_its_deadline_cancels_the_move_and_refunds_the_fee_paid_before(
        app, localstripe, paid, room, staff, now):
    from reservations.models import AttentionCase
    from reservations.services import expiry

    new = moves.move_booking(paid, room, division_slot(room, booking_day(), ["EVENING"]), staff=staff,
                             method="online", now=now).new  # 800 more to pay by the deadline
    db.session.commit()

    expiry.release_expired_holds(now=new.hold_expires_at + timedelta(minutes=1))
    db.session.expire_all()

    assert new.state == BookingState.CANCELLED
    assert paid.payment.refunded_amount == 2800  # the fee paid before the move, all of it
    assert ledger() == [("capture", 2800), ("refund", -2800)]
    assert "moved_difference_unpaid" in db.session.scalars(select(AttentionCase.reason)).all()
