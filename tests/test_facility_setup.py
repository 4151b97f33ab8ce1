"""Facility setup by staff: forms that refuse bad input and save nothing, divisions that never overlap,
prices that never touch a booking already made, closures and new opening hours that are saved only
with a decision on each booking they hit, the building scope, and before/after in the audit trail."""
from datetime import time, timedelta

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import (
    AttentionCase,
    AuditEntry,
    Booking,
    Building,
    Closure,
    Division,
    Refund,
    RefundTier,
    Role,
    Room,
)
from reservations.services import checkout, rules
from reservations.services.booking import reserve
from reservations.services.pricing import quote
from tests.helpers import book, booking_day, count, outbox, provider_down


@pytest.fixture
def staff(make_user, login_as, room):
    """A member of staff of the test building (the room's), signed in."""
    return login_as(make_user("staff@example.com", role=Role.STAFF, name="窓口 職員"))


def audit(subject: str, subject_id: int | None = None) -> list[AuditEntry]:
    where = [AuditEntry.subject == subject]
    if subject_id is not None:
        where.append(AuditEntry.subject_id == subject_id)
    return list(db.session.scalars(select(AuditEntry).where(*where).order_by(AuditEntry.id)))


def closure_form(day, **extra) -> dict:
    return {"kind": "period", "start_date": day.isoformat(), "end_date": day.isoformat(), "reason": "設備点検",
            **extra}


def test_bad_input_is_shown_field_by_field_and_nothing_is_saved(client, english, staff, room):
    building = room.building
    response = client.post(f"/staff/buildings/{building.id}/setup",
                           data={"name": "", "name_kana": "カ" * 201, "address": "x"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter the building's name." in page and "Use at most 200 characters." in page
    response = client.post(f"/staff/rooms/{room.id}/rules", data={
        "nonresident_multiplier_pct": "90", "window_months": "2", "window_open_day": "31", "window_open_time": "09:00",
        "close_hours_before": "24", "hold_minutes": "500", "payment_mode": "later", "deadline_days_before": "3",
        "deadline_time": "23:59", "reminder_days_before": "2"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter a percentage from 100 to 1000" in page
    assert "Enter a number from 1 to 28." in page and "Enter a number from 1 to 120." in page
    db.session.expire_all()
    assert db.session.get(Building, building.id).name == "テスト会館"
    saved = db.session.get(Room, room.id)
    assert (saved.nonresident_multiplier_pct, saved.window_open_day, saved.hold_minutes) == (150, 1, None)
    assert audit("building") == [] and audit("room") == []


def test_staff_edit_their_building_and_rooms_and_the_audit_keeps_before_and_after(client, english, staff, room):
    response = client.post(f"/staff/buildings/{room.building_id}/setup", data={
        "name": "テスト会館", "name_kana": "テストカイカン", "name_en": "Test Community Hall",
        "address": "東京都中央区1-1-1"})
    assert response.status_code == 302
    [entry] = audit("building", room.building_id)
    assert (entry.action, entry.actor_id) == ("updated", staff.id)
    assert entry.data["before"] == {"name_en": "Test Hall"}
    assert entry.data["after"] == {"name_en": "Test Community Hall"}

    response = client.post(f"/staff/buildings/{room.building_id}/rooms/new", data={
        "name": "第二会議室", "name_en": "Meeting room 2", "kind": "meeting_room", "capacity": "24", "active": "y"})
    new = db.session.scalar(select(Room).where(Room.name == "第二会議室"))
    assert response.status_code == 302 and new.building_id == room.building_id
    assert new.unbookable_reason() == "no divisions"  # not offered until its time and fees are set up
    assert audit("room", new.id)[0].data["after"]["capacity"] == 24

    client.post(f"/staff/rooms/{room.id}/rules", data={
        "nonresident_multiplier_pct": "200", "window_months": "3", "window_open_day": "10", "window_open_time": "10:00",
        "close_hours_before": "48", "max_active_per_user": "2", "hold_minutes": "15", "payment_mode": "deadline",
        "deadline_days_before": "5", "deadline_time": "17:00", "reminder_days_before": "1"})
    db.session.expire_all()
    saved = db.session.get(Room, room.id)
    assert (saved.nonresident_multiplier_pct, saved.max_active_per_user, saved.payment_mode,
            saved.deadline_time) == (200, 2, "deadline", time(17))
    [entry] = audit("room", room.id)
    assert entry.action == "rules changed" and entry.actor_id == staff.id
    assert entry.data["before"]["window_open_time"] == "09:00" and entry.data["after"]["window_open_time"] == "10:00"
    assert entry.data["before"]["hold_minutes"] is None and entry.data["after"]["hold_minutes"] == 15


def test_only_admin_add_a_building(client, english, login_as, make_user, staff):
    assert client.post("/admin/buildings/new", data={"name": "新しい会館"}).status_code == 403
    login_as(make_user("admin@example.com", role=Role.ADMIN))
    response = client.post("/admin/buildings/new", data={"name": "新しい会館", "name_en": "New Hall"})
    building = db.session.scalar(select(Building).where(Building.name == "新しい会館"))
    assert response.status_code == 302 and building is not None
    assert audit("building", building.id)[0].data == {"before": None, "after": {
        "name": "新しい会館", "name_kana": "", "name_en": "New Hall", "address": ""}}


def test_divisions_may_not_overlap_nor_end_before_they_start(client, english, staff, room):
    response = client.post(f"/staff/rooms/{room.id}/divisions", data={
        "code": "lunch", "start_time": "11:00", "end_time": "14:00", "weekday_fee": "1000", "holiday_fee": "1000"})
    assert response.status_code == 422
    assert "This overlaps the division MORNING (09:00–12:00)." in response.get_data(as_text=True)
    response = client.post(f"/staff/rooms/{room.id}/divisions", data={
        "code": "NIGHT", "start_time": "22:00", "end_time": "21:30", "weekday_fee": "1000", "holiday_fee": "1000"})
    assert "The end must be later than the start." in response.get_data(as_text=True)
    assert count(Division, Division.room_id == room.id) == 3 and audit("division") == []

    response = client.post(f"/staff/rooms/{room.id}/divisions", data={
        "code": "night", "start_time": "21:00", "end_time": "22:00", "weekday_fee": "1200", "holiday_fee": "1500"})
    assert response.status_code == 302
    db.session.expire_all()
    assert [d.code for d in db.session.get(Room, room.id).divisions] == ["MORNING", "AFTERNOON", "EVENING", "NIGHT"]
    [entry] = audit("division")
    assert entry.data["after"] == {"code": "NIGHT", "start_time": "21:00", "end_time": "22:00", "weekday_fee": 1200,
                                   "holiday_fee": 1500}


def test_a_price_change_never_alters_a_booking_already_made(client, english, staff, room, resident):
    booking = book(resident, room)  # payments off: confirmed at once, at 2,800 yen
    morning = room.divisions[0]
    response = client.post(f"/staff/divisions/{morning.id}", data={
        "code": "MORNING", "start_time": "09:00", "end_time": "12:00", "weekday_fee": "4000", "holiday_fee": "4500"})
    assert response.status_code == 302
    db.session.expire_all()
    booking = db.session.get(Booking, booking.id)
    assert booking.price == 2800 and booking.price_detail["lines"] == [{"item": "MORNING", "amount": 2800}]
    room = db.session.get(Room, room.id)
    assert quote(room, rules.division_slot(room, booking_day(), ["MORNING"]), "resident").total == 4000
    [entry] = audit("division", morning.id)
    assert entry.data["before"] == {"weekday_fee": 2800, "holiday_fee": 2800}
    assert entry.data["after"] == {"weekday_fee": 4000, "holiday_fee": 4500}
    # Its times, though, stay while a future booking uses it.
    response = client.post(f"/staff/divisions/{morning.id}", data={
        "code": "MORNING", "start_time": "08:00", "end_time": "12:00", "weekday_fee": "4000", "holiday_fee": "4500"})
    assert response.status_code == 422 and "Future bookings use this division (1)" in response.get_data(as_text=True)
    assert db.session.get(Division, morning.id).start_time == time(9)


def test_a_closure_over_a_booking_is_refused_without_a_decision_on_each(client, english, staff, room, resident,
                                                                        make_user):
    first = book(resident, room)
    second = book(make_user("other@example.com", name="佐藤 次郎"), room, ("AFTERNOON",))
    response = client.post(f"/staff/rooms/{room.id}/closures", data=closure_form(booking_day()))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Nothing is saved yet" in page and "山田 花子" in page and "佐藤 次郎" in page
    assert f'name="decision_{first.id}"' in page and f'name="decision_{second.id}"' in page
    # One decision given, the other not a decision at all: still refused, nothing saved.
    response = client.post(f"/staff/rooms/{room.id}/closures", data=closure_form(
        booking_day(), decisions_shown="1", **{f"decision_{first.id}": "cancel", f"decision_{second.id}": "maybe"}))
    assert response.status_code == 422
    assert "Not a valid choice" in response.get_data(as_text=True)
    db.session.expire_all()
    assert count(Closure) == 0 and count(AttentionCase) == 0 and audit("closure") == []
    assert {db.session.get(Booking, b.id).state for b in (first, second)} == {"confirmed"}
    # A closure on other days hits nothing and is saved at once.
    other_day = booking_day() + timedelta(days=1)
    assert client.post(f"/staff/rooms/{room.id}/closures", data=closure_form(other_day)).status_code == 302
    assert count(Closure) == 1


@pytest.mark.payments
def test_cancel_refunds_the_whole_fee_and_mails_a_notice(app, client, english, staff, room, paid, resident):
    resident.locale = "en"  # the notice is written in the resident's language
    db.session.commit()
    response = client.post(f"/staff/rooms/{room.id}/closures", data=closure_form(
        booking_day(), decisions_shown="1", **{f"decision_{paid.id}": "cancel"}))
    assert response.status_code == 302
    db.session.expire_all()
    booking = db.session.get(Booking, paid.id)
    assert booking.state == "cancelled"
    [refund] = db.session.scalars(select(Refund)).all()
    assert (refund.amount, refund.reason, refund.partial) == (2800, "ward", False)
    assert booking.payment.refunded_amount == booking.payment.captured_amount == 2800
    [mail] = [m for m in outbox(app) if "cancelled by the facility" in m["Subject"]]  # (the receipt came before)
    assert mail["To"] == "resident@example.com" and "2,800" in mail.get_content()
    [closure] = db.session.scalars(select(Closure)).all()
    [entry] = audit("closure", closure.id)
    assert entry.actor_id == staff.id and entry.data["hits"] == [paid.id]
    assert entry.data["before"] is None and entry.data["after"]["start_date"] == booking_day().isoformat()
    assert ("cancelled for a ward reason", staff.id) in [(e.action, e.actor_id) for e in audit("booking", paid.id)]


def test_keep_leaves_the_booking_confirmed_with_a_case_and_an_audit_entry(client, english, staff, room, resident):
    booking = book(resident, room)
    response = client.post(f"/staff/rooms/{room.id}/closures", data=closure_form(
        booking_day(), decisions_shown="1", **{f"decision_{booking.id}": "keep"}))
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Booking, booking.id).state == "confirmed"
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.reason, case.booking_id, case.building_id) == ("closure_kept", booking.id, room.building_id)
    assert ("kept over a closure", staff.id) in [(e.action, e.actor_id) for e in audit("booking", booking.id)]
    assert count(Closure) == 1


@pytest.mark.payments
def test_a_cancellation_that_fails_leaves_nothing_saved(app, client, english, staff, room, paid, make_user, now):
    """Decisions are all or nothing: the one that can fail (releasing an unpaid intent) runs before the refund
    of the paid booking, whose commit would otherwise make the closure stick without the other decision."""
    other = book(make_user("other@example.com"), room, ("AFTERNOON",), now=now)
    checkout.open_for_payment(other.payment, now=now)  # an intent the provider must cancel
    db.session.commit()
    with provider_down(app):
        response = client.post(f"/staff/rooms/{room.id}/closures", data=closure_form(
            booking_day(), decisions_shown="1", **{f"decision_{paid.id}": "cancel", f"decision_{other.id}": "cancel"}))
    assert response.status_code == 422
    assert f"Booking {other.id} could not be cancelled" in response.get_data(as_text=True)
    db.session.expire_all()
    assert count(Closure) == 0 and count(Refund) == 0 and audit("closure") == []
    assert db.session.get(Booking, paid.id).state == "confirmed" and db.session.get(Booking, other.id).state == "held"
    assert not [m for m in outbox(app) if "cancelled by the facility" in m["Subject"]]


def test_new_opening_hours_that_leave_out_a_booking_need_a_decision(client, english, staff, make_hourly_room,
                                                                     resident):
    court = make_hourly_room()
    late = reserve(resident, court, rules.hourly_slot(court, booking_day(), time(19), 120))
    db.session.commit()
    hours = {"letting": "hourly", "open_time": "09:00", "close_time": "18:00", "step_minutes": "60",
             "min_minutes": "60", "max_minutes": "180", "hourly_unit_minutes": "60", "weekday_hourly_fee": "1000",
             "holiday_hourly_fee": "1500"}
    response = client.post(f"/staff/rooms/{court.id}/letting", data=hours)
    assert response.status_code == 422 and f'name="decision_{late.id}"' in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Room, court.id).close_time == time(21) and audit("room") == []

    response = client.post(f"/staff/rooms/{court.id}/letting", data={**hours, f"decision_{late.id}": "keep"})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Room, court.id).close_time == time(18)
    assert db.session.get(Booking, late.id).state == "confirmed"
    assert db.session.scalar(select(AttentionCase.reason)) == "closure_kept"
    [entry] = audit("room", court.id)
    assert entry.data["before"] == {"close_time": "21:00"} and entry.data["after"] == {"close_time": "18:00"}


def test_refund_tiers_are_replaced_as_a_validated_set(client, english, staff, room):
    def tiers(*rows, policy="own"):
        data = {"policy": policy}
        for n, (count_, unit, percent) in enumerate(rows, start=1):
            data.update({f"tier_{n}_count": count_, f"tier_{n}_unit": unit, f"tier_{n}_percent": percent})
        return client.post(f"/staff/rooms/{room.id}/refunds", data=data)

    response = tiers(("7", "days", "100"), ("7", "days", "50"), ("2", "days", "150"))
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "Enter a number from 0 to 100." in page
    response = tiers(("7", "days", "100"), ("7", "days", "50"))
    assert response.status_code == 422 and "Two tiers have the same cut-off (7 days)" in response.get_data(as_text=True)
    assert count(RefundTier, RefundTier.room_id == room.id) == 0

    assert tiers(("7", "days", "100"), ("1", "months", "100")).status_code == 302
    assert tiers(("7", "days", "80")).status_code == 302  # the same cut-off again, another percentage
    db.session.expire_all()
    assert [(t.unit, t.count, t.percent) for t in db.session.get(Room, room.id).refund_tiers] == [("days", 7, 80)]
    assert tiers(policy="kind").status_code == 302  # back to the kind's default
    assert count(RefundTier, RefundTier.room_id == room.id) == 0
    entries = audit("refund_tier", room.id)
    assert [(e.data["before"], e.data["after"]) for e in entries] == [
        (None, [["days", 7, 100], ["months", 1, 100]]),
        ([["days", 7, 100], ["months", 1, 100]], [["days", 7, 80]]),
        ([["days", 7, 80]], None)]
    assert {e.actor_id for e in entries} == {staff.id}


def test_staff_of_another_building_get_404_and_change_nothing(client, english, login_as, make_user, room):
    other = Building(name="別の会館")
    db.session.add(other)
    db.session.commit()
    login_as(make_user("elsewhere@example.com", role=Role.STAFF, buildings=[other]))
    division = room.divisions[0]
    closure = Closure(room_id=room.id, kind="weekly", weekday=0, reason="定休日")
    db.session.add(closure)
    db.session.commit()
    pages = [f"/staff/buildings/{room.building_id}/setup", f"/staff/buildings/{room.building_id}/rooms/new",
             f"/staff/rooms/{room.id}/setup", f"/staff/rooms/{room.id}/letting", f"/staff/rooms/{room.id}/divisions",
             f"/staff/divisions/{division.id}", f"/staff/rooms/{room.id}/closures", f"/staff/rooms/{room.id}/rules",
             f"/staff/rooms/{room.id}/refunds"]
    for url in pages:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/staff/buildings/{room.building_id}/setup", data={"name": "乗っ取り"}).status_code == 404
    assert client.post(f"/staff/divisions/{division.id}", data={
        "code": "MORNING", "start_time": "09:00", "end_time": "12:00", "weekday_fee": "1", "holiday_fee": "1"}
    ).status_code == 404
    assert client.post(f"/staff/rooms/{room.id}/closures/remove", data={"item": str(closure.id)}).status_code == 404
    assert client.post(f"/staff/rooms/{room.id}/divisions/remove", data={"item": str(division.id)}).status_code == 404
    db.session.expire_all()
    assert db.session.get(Building, room.building_id).name == "テスト会館"
    assert db.session.get(Division, division.id).weekday_fee == 2800 and count(Closure) == 1
    # The building's own staff may remove it (the scope is all that stopped the other).
    login_as(make_user("here@example.com", role=Role.STAFF))
    assert client.post(f"/staff/rooms/{room.id}/closures/remove", data={"item": str(closure.id)}).status_code == 302
    assert count(Closure) == 0 and audit("closure", closure.id)[0].data["before"]["reason"] == "定休日"



def test_every_setup_page_opens_for_the_buildings_staff(client, english, staff, room, make_hourly_room):
    court = make_hourly_room()
    pages = [f"/staff/buildings/{room.building_id}/setup", f"/staff/buildings/{room.building_id}/rooms/new",
             f"/staff/rooms/{room.id}/setup", f"/staff/rooms/{court.id}/letting", f"/staff/rooms/{room.id}/divisions",
             f"/staff/divisions/{room.divisions[0].id}", f"/staff/rooms/{room.id}/closures",
             f"/staff/rooms/{room.id}/rules", f"/staff/rooms/{room.id}/refunds"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
    page = client.get(f"/staff/rooms/{room.id}/refunds").get_data(as_text=True)
    assert "one tier of 0% refunds nothing" in page and 'value="100"' in page  # the kind's tiers, to start from
    assert "Bookable online" in client.get(f"/staff/rooms/{room.id}/setup").get_data(as_text=True)
    assert 'value="21:00"' in client.get(f"/staff/rooms/{court.id}/letting").get_data(as_text=True)
