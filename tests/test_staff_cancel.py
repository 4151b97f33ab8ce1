"""Staff cancel any booking with a reason: at the resident's request (the policy refunds) or for a ward
reason (the whole fee). A card refund goes through the provider, a cash one is paid out at the counter."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AuditEntry, Booking, BookingState, Building, LedgerEntry, RefundState, Role
from reservations.services import counter
from reservations.services.cancellation import cancel_by_staff
from reservations.services.errors import BookingError
from reservations.services.rules import division_slot
from tests.helpers import booking_day, charge_id, fetch_intent, outbox, refunds_at_provider


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


@pytest.fixture
def reader(resident):
    resident.locale = "en"  # the notices are read in English below
    db.session.commit()
    return resident


def paid_in_cash(staff, room, user=None, *, now, **walk_in) -> Booking:
    made = counter.book_on_behalf(staff, room, division_slot(room, booking_day(), ["MORNING"]), method="cash",
                                  user=user, now=now, **walk_in)
    db.session.commit()
    return made.booking


def notices(app, subject: str) -> list:
    return [m for m in outbox(app) if m["Subject"] == subject]


def test_at_the_residents_request_the_policy_refunds_and_cash_is_paid_out_at_the_counter(
        app, staff, room, reader, now):
    booking = paid_in_cash(staff, room, reader, now=now)
    # The music room's policy: 100 % until 7 days before the day of use, 50 % until 2 days before.
    five_days_before = booking.start_at - timedelta(days=5)
    refund = cancel_by_staff(booking, staff, "resident_request", "電話で依頼", now=five_days_before)
    db.session.commit()
    assert booking.state == BookingState.CANCELLED
    assert (refund.amount, refund.reason, refund.state, refund.provider_refund_id) == (
        1400, "policy", RefundState.SUCCEEDED, None)
    payment = booking.payment
    assert payment.refunded_amount == 1400
    ledger = db.session.scalars(select(LedgerEntry).where(LedgerEntry.payment_id == payment.id)
                                .order_by(LedgerEntry.id)).all()
    assert [(e.kind, e.amount) for e in ledger] == [("capture", 2800), ("refund", -1400)]
    assert ledger[1].reference == f"counter-refund-{refund.id}"
    mail = notices(app, "Your booking has been cancelled at your request")
    assert [m["To"] for m in mail] == [reader.email]
    assert "¥1,400 is refunded to you in cash at the counter." in mail[0].get_content()
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "booking",
                                                       AuditEntry.subject_id == booking.id,
                                                       AuditEntry.action == "cancelled by staff"))
    assert audit.actor_id == staff.id and audit.data["note"] == "電話で依頼" and audit.data["percent"] == 50


def test_a_ward_reason_refunds_the_whole_fee(app, staff, room, reader, now):
    booking = paid_in_cash(staff, room, reader, now=now)
    late = booking.start_at - timedelta(hours=3)  # past every tier of the policy: a resident would get nothing
    refund = cancel_by_staff(booking, staff, "closure", "漏水", now=late)
    db.session.commit()
    assert (refund.amount, refund.reason, booking.payment.refundable) == (2800, "ward", 0)
    assert db.session.scalar(select(LedgerEntry.amount).where(LedgerEntry.kind == "refund")) == -2800
    mail = notices(app, "Your booking has been cancelled by the facility")
    assert [m["To"] for m in mail] == [reader.email]
    assert "¥2,800 is refunded to you in cash at the counter." in mail[0].get_content()
    # At the resident's request it would be too late now.
    other = paid_in_cash(staff, room, reader, now=now)
    with pytest.raises(BookingError) as too_late:
        cancel_by_staff(other, staff, "resident_request", "遅い", now=other.start_at + timedelta(minutes=1))
    assert too_late.value.code == "cancel_deadline"


@pytest.mark.payments
def test_a_card_is_refunded_through_the_provider(app, localstripe, paid, staff, reader, now):
    refund = cancel_by_staff(paid, staff, "resident_request", "窓口で依頼", now=now)  # two weeks ahead: 100 %
    db.session.commit()
    assert refund.amount == 2800 and refund.provider_refund_id is not None
    intent = fetch_intent(localstripe, paid.payment.intent_id)
    at_provider = refunds_at_provider(localstripe, charge_id(intent))
    assert [(r["id"], r["amount"]) for r in at_provider] == [(refund.provider_refund_id, 2800)]
    mail = notices(app, "Your booking has been cancelled at your request")
    assert [m["To"] for m in mail] == [reader.email] and "refunded to your card" in mail[0].get_content()


def test_the_page_cancels_with_a_reason_and_a_walk_in_gets_a_printed_notice(
        app, client, english, login_as, staff, room, now):
    booking = paid_in_cash(staff, room, now=now, name="窓口 太郎", name_kana="マドグチ タロウ", phone="03-1234-5678")
    login_as(staff)
    page = client.get(f"/staff/bookings/{booking.id}").get_data(as_text=True)
    assert f'action="/staff/bookings/{booking.id}/cancel"' in page and f"/staff/bookings/{booking.id}/receipt" in page
    # Without a reason nothing happens.
    refused = client.post(f"/staff/bookings/{booking.id}/cancel", data={"cancel-kind": "ward", "cancel-note": ""})
    assert refused.status_code == 302 and db.session.get(Booking, booking.id).state == BookingState.CONFIRMED
    response = client.post(f"/staff/bookings/{booking.id}/cancel",
                           data={"cancel-kind": "ward", "cancel-note": "区の行事"})
    assert response.headers["Location"] == f"/staff/bookings/{booking.id}/notice"
    db.session.expire_all()
    assert db.session.get(Booking, booking.id).state == BookingState.CANCELLED
    assert outbox(app) == []  # a walk-in has no address: nothing is mailed
    notice = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Notice of cancellation" in notice and "窓口 太郎" in notice
    assert "¥2,800, paid back in cash at the counter." in notice and "the ward needs the room" in notice


def test_staff_of_another_building_cannot_cancel(app, client, make_user, login_as, staff, room, resident, now):
    booking = paid_in_cash(staff, room, resident, now=now)
    other = Building(name="別の会館", name_kana="ベツノカイカン", name_en="Other Hall")
    elsewhere = make_user("elsewhere@example.com", role=Role.STAFF, buildings=[other])
    with pytest.raises(BookingError) as refused:
        cancel_by_staff(booking, elsewhere, "ward", "x", now=now)
    assert refused.value.code == "staff_only"
    db.session.rollback()
    login_as(elsewhere)
    response = client.post(f"/staff/bookings/{booking.id}/cancel", data={"cancel-kind": "ward", "cancel-note": "x"})
    assert response.status_code == 404
    assert db.session.get(Booking, booking.id).state == BookingState.CONFIRMED
