"""After the slot (services/attendance.py): staff mark a booking used or a no-show once it has started,
and the job marks what ended as used, unless staff said no-show first."""
from datetime import UTC, date, datetime, time, timedelta

import pytest

from reservations.extensions import db
from reservations.jobs import JOBS
from reservations.models import Booking, BookingKind, BookingState, Role
from reservations.services import attendance
from reservations.services.booking import place_hold
from reservations.services.errors import BookingError
from reservations.services.rules import division_slot
from reservations.timeutil import at_tokyo
from tests.helpers import audit_actions

DAY = date(2027, 2, 10)  # a Wednesday
BOOKED_AT = datetime(2027, 1, 10, 3, 0, tzinfo=UTC)


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


def booking_at(user, room, code: str, day: date = DAY) -> Booking:
    """A confirmed booking (online payment is off in these tests), made a month ahead."""
    booking = place_hold(user, room, division_slot(room, day, [code]), now=BOOKED_AT)
    booking.transition(BookingState.CONFIRMED, reason="test")
    db.session.commit()
    return booking


def test_staff_mark_a_booking_used_or_a_no_show_once_it_has_started(app, room, resident, staff):
    morning, afternoon = booking_at(resident, room, "MORNING"), booking_at(resident, room, "AFTERNOON")

    for mark in (attendance.mark_used, attendance.mark_no_show):
        with pytest.raises(BookingError) as err:
            mark(morning, staff, now=at_tokyo(DAY, time(8, 59)))
        assert err.value.code == "not_started"
    db.session.rollback()
    assert morning.state == BookingState.CONFIRMED

    attendance.mark_used(morning, staff, now=at_tokyo(DAY, time(9)))
    attendance.mark_no_show(afternoon, staff, now=at_tokyo(DAY, time(13, 30)))
    db.session.commit()

    assert morning.state == BookingState.COMPLETED and afternoon.state == BookingState.NO_SHOW
    assert ("confirmed->completed", "marked used by staff") in audit_actions("booking", morning.id)
    assert ("confirmed->no_show", "marked no-show by staff") in audit_actions("booking", afternoon.id)
    with pytest.raises(BookingError) as err:  # once marked, it stays what staff said
        attendance.mark_no_show(morning, staff, now=at_tokyo(DAY, time(10)))
    assert err.value.code == "not_attendable"


def test_the_job_marks_ended_bookings_used_unless_staff_said_no_show(app, room, resident, make_user, staff):
    morning = booking_at(resident, room, "MORNING")  # ends 12:00
    afternoon = booking_at(make_user(), room, "AFTERNOON")  # ends 17:00
    missed = booking_at(make_user(), room, "EVENING")  # ends 21:00
    tomorrow = booking_at(resident, room, "MORNING", DAY + timedelta(days=1))
    block = Booking(user_id=staff.id, room_id=room.id, kind=BookingKind.BLOCK, state=BookingState.CONFIRMED,
                    start_at=at_tokyo(DAY - timedelta(days=1), time(9)),
                    end_at=at_tokyo(DAY - timedelta(days=1), time(12)), price=0, residency="resident")
    db.session.add(block)
    db.session.commit()
    assert "mark_finished_as_used" in {job.id for job in JOBS}

    assert attendance.mark_finished_as_used(at_tokyo(DAY, time(11, 59))) == {"completed": 0}
    assert attendance.mark_finished_as_used(at_tokyo(DAY, time(12))) == {"completed": 1}
    db.session.commit()
    assert morning.state == BookingState.COMPLETED and afternoon.state == BookingState.CONFIRMED
    assert ("confirmed->completed", "ended; marked used by the job") in audit_actions("booking", morning.id)

    attendance.mark_no_show(missed, staff, now=at_tokyo(DAY, time(18, 30)))
    db.session.commit()
    assert attendance.mark_finished_as_used(at_tokyo(DAY, time(23)), batch=10) == {"completed": 1}
    db.session.commit()
    assert afternoon.state == BookingState.COMPLETED and missed.state == BookingState.NO_SHOW
    assert tomorrow.state == BookingState.CONFIRMED and block.state == BookingState.CONFIRMED


def test_staff_mark_a_no_show_from_the_booking_page(app, client, english, login_as, room, resident, staff):
    now = datetime.now(UTC)
    started = place_hold(resident, room, division_slot(room, DAY, ["MORNING"]), now=BOOKED_AT)
    started.transition(BookingState.CONFIRMED, reason="test")
    # Move it to a morning that has begun: the page uses the real clock.
    started.start_at, started.end_at = now - timedelta(minutes=30), now + timedelta(hours=2)
    db.session.commit()
    booking_id = started.id
    login_as(staff)

    page = client.get(f"/staff/bookings/{booking_id}").get_data(as_text=True)
    assert f'action="/staff/bookings/{booking_id}/no-show"' in page and "Mark used" in page
    response = client.post(f"/staff/bookings/{booking_id}/no-show")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/staff/bookings/{booking_id}")
    db.session.rollback()
    assert db.session.get(Booking, booking_id).state == BookingState.NO_SHOW
    again = client.post(f"/staff/bookings/{booking_id}/used", follow_redirects=True)
    assert "Only a confirmed booking can be marked used or no-show." in again.get_data(as_text=True)
