"""Blocks: staff keep a room for maintenance or official use, under the same overlap rule as bookings."""
from datetime import time, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from reservations.extensions import db
from reservations.models import AuditEntry, Booking, BookingState, LedgerEntry, Refund, RefundState, Role
from reservations.services import availability, blocks, counter
from reservations.services.booking import reserve
from reservations.services.errors import BookingError
from reservations.services.rules import division_slot
from tests.helpers import booking_day, charge_id, count, fetch_intent, outbox, refunds_at_provider


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


def paid_in_cash(staff, room, user, codes=("MORNING",), *, now) -> Booking:
    made = counter.book_on_behalf(staff, room, division_slot(room, booking_day(), list(codes)), method="cash",
                                  user=user, now=now)
    db.session.commit()
    return made.booking


def morning_and_afternoon(room):
    return division_slot(room, booking_day(), ["MORNING", "AFTERNOON"])


def test_a_block_over_a_booking_is_refused_and_nothing_changes(app, client, english, login_as, staff, room,
                                                               resident, now):
    booking = paid_in_cash(staff, room, resident, now=now)
    before = (count(AuditEntry), count(Refund), count(LedgerEntry), len(outbox(app)))
    with pytest.raises(BookingError) as refused:
        blocks.place_block(staff, room, morning_and_afternoon(room), note="空調点検", now=now)
    assert refused.value.code == "block_over_bookings" and refused.value.details["bookings"] == [booking.id]
    db.session.rollback()
    assert db.session.get(Booking, booking.id).state == BookingState.CONFIRMED
    assert count(Booking, Booking.kind == "block") == 0
    assert (count(AuditEntry), count(Refund), count(LedgerEntry), len(outbox(app))) == before
    # The page says so, and names the booking in the way.
    login_as(staff)
    day = booking_day().isoformat()
    response = client.post(f"/staff/blocks/new?room_id={room.id}&date={day}&division=MORNING",
                           data={"date": day, "divisions": ["MORNING", "AFTERNOON"], "note": "空調点検"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Bookings overlap this time." in html and f'href="/staff/bookings/{booking.id}"' in html
    assert count(Booking, Booking.kind == "block") == 0


@pytest.mark.payments
def test_a_block_that_cancels_the_bookings_in_the_way_refunds_them_in_full_and_tells_them(
        app, localstripe, paid, staff, room, resident, now):
    resident.locale = "en"  # the notices are read in English below
    other = paid_in_cash(staff, room, resident, ("AFTERNOON",), now=now)
    block = blocks.place_block(staff, room, morning_and_afternoon(room), note="緊急点検", cancel_hits=True, now=now)
    db.session.commit()
    assert (block.kind, block.state, block.price, block.user_id, block.channel, block.note) == (
        "block", BookingState.CONFIRMED, 0, staff.id, "counter", "緊急点検")
    assert block.division_codes == "MORNING,AFTERNOON" and block.hold_expires_at is None
    for hit in (paid, other):
        db.session.refresh(hit)
        assert hit.state == BookingState.CANCELLED
        assert [(r.amount, r.reason) for r in hit.payment.refunds] == [(hit.price, "ward")]  # 100 %
    # The card's refund went through the provider; the cash one was paid out at the counter.
    intent = fetch_intent(localstripe, paid.payment.intent_id)
    assert sum(r["amount"] for r in refunds_at_provider(localstripe, charge_id(intent))) == 2800
    assert other.payment.refunds[0].state == RefundState.SUCCEEDED
    notices = [m for m in outbox(app) if m["Subject"] == "Your booking has been cancelled by the facility"]
    assert len(notices) == 2 and {m["To"] for m in notices} == {resident.email}
    assert any("¥3,600" in m.get_content() and "cash" in m.get_content() for m in notices)
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "booking",
                                                       AuditEntry.subject_id == block.id,
                                                       AuditEntry.action == "blocked"))
    assert audit.actor_id == staff.id and audit.data["cancelled"] == [paid.id, other.id]


def test_a_block_occupies_its_slot_for_residents_and_is_not_in_staffs_own_bookings(
        app, client, login_as, staff, room, resident, now):
    slot = division_slot(room, booking_day(), ["MORNING"])
    block = blocks.place_block(staff, room, slot, note="公用", now=now)
    db.session.commit()
    with pytest.raises(BookingError) as refused:
        reserve(resident, room, slot, now=now)
    assert refused.value.code == "slot_taken"
    db.session.rollback()
    units = {u.code: u.status for u in availability.day_availability(room, slot.day, now=now).units}
    assert units == {"MORNING": "taken", "AFTERNOON": "free", "EVENING": "free"}
    login_as(staff)
    mine = client.get("/bookings").get_data(as_text=True)
    assert f"/bookings/{block.id}" not in mine
    # Another block over it is refused too (never cancelled as if it were a booking).
    with pytest.raises(BookingError) as again:
        blocks.place_block(staff, room, slot, note="二重", cancel_hits=True, now=now)
    assert again.value.code == "block_over_block"


def test_the_database_itself_refuses_an_overlapping_block(app, staff, room, resident, now):
    booking = paid_in_cash(staff, room, resident, now=now)
    db.session.add(Booking(user_id=staff.id, room_id=room.id, kind="block", state=BookingState.CONFIRMED,
                           start_at=booking.start_at + timedelta(hours=1), end_at=booking.end_at + timedelta(hours=2),
                           price=0, residency="resident", channel="counter", note="直接"))
    with pytest.raises(DBAPIError) as refused:
        db.session.flush()
    assert "booking_overlap" in str(refused.value) or "ex_bookings_no_overlap" in str(refused.value)
    db.session.rollback()
    assert count(Booking, Booking.kind == "block") == 0


def test_staff_block_a_division_from_the_page_and_see_it_on_the_day(app, client, english, login_as, staff, room):
    login_as(staff)
    day = booking_day().isoformat()
    url = f"/staff/blocks/new?room_id={room.id}&date={day}&division=EVENING"
    page = client.get(url)
    assert page.status_code == 200 and 'checked id="divisions-2"' in page.get_data(as_text=True)
    response = client.post(url, data={"date": day, "divisions": ["EVENING"], "note": "区の行事"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/staff/buildings/{room.building_id}/day?date={day}"
    block = db.session.scalar(select(Booking).where(Booking.kind == "block"))
    assert block.division_codes == "EVENING"
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f'href="/staff/bookings/{block.id}"' in html


def test_a_block_of_an_hourly_room_may_be_longer_than_a_booking(app, staff, make_hourly_room, now):
    court = make_hourly_room()
    slot = blocks.block_slot(court, booking_day(), start=time(9), minutes=6 * 60)  # bookings: at most 3 h
    block = blocks.place_block(staff, court, slot, note="コート整備", now=now)
    assert block.end_at - block.start_at == timedelta(hours=6)
    with pytest.raises(BookingError) as outside:
        blocks.block_slot(court, booking_day(), start=time(18), minutes=4 * 60)
    assert outside.value.code == "outside_hours"


def test_staff_of_another_building_cannot_block(app, make_user, room, now):
    from reservations.models import Building

    other = Building(name="別の会館", name_kana="ベツノカイカン", name_en="Other Hall")
    elsewhere = make_user("elsewhere@example.com", role=Role.STAFF, buildings=[other])
    with pytest.raises(BookingError) as refused:
        blocks.place_block(elsewhere, room, division_slot(room, booking_day(), ["MORNING"]), note="x", now=now)
    assert refused.value.code == "staff_only"
