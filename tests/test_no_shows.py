"""The no-show policy (services/no_shows.py): the Nth no-show within M months suspends online booking for
K months; the resident is told why and until when; staff can still book for them, and lift it with a reason."""
from datetime import UTC, date, datetime, time, timedelta
from html import unescape

import pytest
from flask import render_template
from flask_babel import force_locale, format_date
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AuditEntry, BookingState, Role, Suspension
from reservations.services import attendance, no_shows
from reservations.services.booking import place_hold
from reservations.services.errors import BookingError
from reservations.services.rules import division_slot
from reservations.timeutil import at_tokyo, now_utc
from tests.helpers import booking_day, count


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


def missed(user, room, staff, day: date):
    """A confirmed MORNING booking of `day`, made three weeks before, that staff mark a no-show at 09:30."""
    booking = place_hold(user, room, division_slot(room, day, ["MORNING"]), now=at_tokyo(day - timedelta(days=21),
                                                                                          time(12)))
    booking.transition(BookingState.CONFIRMED, reason="test")
    suspension = attendance.mark_no_show(booking, staff, now=at_tokyo(day, time(9, 30)))
    db.session.commit()
    return booking, suspension


def test_the_third_no_show_within_six_months_suspends_online_booking_but_not_the_counter(
        app, room, resident, staff):
    missed(resident, room, staff, date(2026, 7, 1))  # more than six months before the third: not counted
    first, none_yet = missed(resident, room, staff, date(2027, 2, 3))
    second, still_none = missed(resident, room, staff, date(2027, 2, 10))
    assert none_yet is None and still_none is None
    third, suspension = missed(resident, room, staff, date(2027, 2, 17))

    at = at_tokyo(date(2027, 2, 17), time(9, 30))
    assert suspension is not None and suspension.user_id == resident.id
    assert suspension.starts_at == at and suspension.ends_at == at_tokyo(date(2027, 5, 17), time(9, 30))
    assert no_shows.booking_ids(suspension) == [first.id, second.id, third.id]
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "suspension",
                                                       AuditEntry.subject_id == suspension.id))
    assert entry.action == "suspended" and entry.actor_id == staff.id

    later = at + timedelta(hours=1)
    slot = division_slot(room, date(2027, 3, 3), ["AFTERNOON"])
    with pytest.raises(BookingError) as err:
        place_hold(resident, room, slot, now=later)
    assert err.value.code == "suspended" and err.value.details["until"] == suspension.ends_at
    at_counter = place_hold(resident, room, slot, now=later, actor=staff, channel="counter")
    assert at_counter.state == BookingState.HELD and at_counter.user_id == resident.id

    # A fourth no-show while suspended makes no second suspension.
    missed(resident, room, staff, date(2027, 2, 24))
    assert count(Suspension) == 1


def test_lifting_a_suspension_needs_a_reason_and_lets_the_resident_book_online_again(app, room, resident, staff):
    now = datetime(2027, 2, 17, 3, 0, tzinfo=UTC)
    suspension = Suspension(user_id=resident.id, starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=80))
    db.session.add(suspension)
    db.session.commit()

    with pytest.raises(BookingError) as err:
        no_shows.lift(suspension, staff, "   ", now=now)
    assert err.value.code == "reason_required"
    db.session.rollback()
    assert suspension.lifted_at is None and no_shows.suspension_in_force(resident, now) == suspension

    no_shows.lift(suspension, staff, "  電車の遅延で来られなかった ", now=now)
    db.session.commit()
    assert (suspension.lifted_at, suspension.lifted_by_id) == (now, staff.id)
    assert suspension.lift_reason == "電車の遅延で来られなかった"
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "suspension",
                                                       AuditEntry.action == "lifted"))
    assert entry.actor_id == staff.id and entry.data["reason"] == "電車の遅延で来られなかった"
    held = place_hold(resident, room, division_slot(room, date(2027, 3, 3), ["MORNING"]), now=now)
    assert held.state == BookingState.HELD


def test_walk_ins_are_never_suspended(app, room, make_user, staff):
    walk_in = make_user("walkin-1@walk-in.invalid", walk_in=True)
    for day in (date(2027, 2, 3), date(2027, 2, 10), date(2027, 2, 17)):
        assert missed(walk_in, room, staff, day)[1] is None
    assert count(Suspension) == 0


def test_the_resident_is_told_why_and_until_when(app, client, english, login_as, room, resident):
    now = now_utc()
    day = booking_day()
    booking = place_hold(resident, room, division_slot(room, day, ["EVENING"]), now=now)
    booking.state, booking.hold_expires_at = BookingState.NO_SHOW, None  # a no-show, as the notice lists it
    suspension = Suspension(user_id=resident.id, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=60),
                            booking_ids=str(booking.id))
    db.session.add(suspension)
    db.session.commit()
    login_as(resident)

    response = client.post(f"/rooms/{room.id}/book", data={"date": day.isoformat(), "divisions": ["MORNING"],
                                                            "expected_price": "2800"}, follow_redirects=True)
    page = unescape(response.get_data(as_text=True))
    with force_locale("en"):
        until = format_date(suspension.ends_at, "full")
        assert "Online booking is suspended for your account" in page and "book online again from" in page
        assert until in page
        notice = render_template("bookings/_suspension_notice.html", suspension=suspension)
        assert until in notice and format_date(booking.start_at, "full") in notice
    assert render_template("bookings/_suspension_notice.html", suspension=None).strip() == ""


def test_staff_list_suspensions_and_lift_one_with_a_reason(app, client, english, login_as, room, resident, staff):
    now = now_utc()
    booking = place_hold(resident, room, division_slot(room, booking_day(), ["MORNING"]), now=now)
    suspension = Suspension(user_id=resident.id, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=60),
                            booking_ids=str(booking.id))
    db.session.add(suspension)
    db.session.commit()
    suspension_id = suspension.id
    login_as(staff)

    page = client.get("/staff/suspensions").get_data(as_text=True)
    assert resident.email in page and f'action="/staff/suspensions/{suspension_id}/lift"' in page
    refused = client.post(f"/staff/suspensions/{suspension_id}/lift", data={f"lift-{suspension_id}-reason": " "})
    assert refused.status_code == 422 and "Enter why the suspension is lifted." in refused.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Suspension, suspension_id).lifted_at is None

    lifted = client.post(f"/staff/suspensions/{suspension_id}/lift",
                         data={f"lift-{suspension_id}-reason": "窓口で確認済み"})
    assert lifted.status_code == 302
    db.session.rollback()
    assert db.session.get(Suspension, suspension_id).lift_reason == "窓口で確認済み"
    assert resident.email not in client.get("/staff/suspensions").get_data(as_text=True)
