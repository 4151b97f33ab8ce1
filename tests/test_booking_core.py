"""The booking core: states, holds, and the overlap rule held by the database itself."""
from datetime import UTC, date, datetime, timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from reservations.extensions import db
from reservations.models import AuditEntry, Booking, BookingState, IllegalTransition, Role
from reservations.services import booking as booking_service
from reservations.services.availability import FREE, FULL, PARTLY, day_availability
from reservations.services.cancellation import cancel_booking
from reservations.services.errors import BookingError
from reservations.services.expiry import release_expired_holds
from reservations.services.rules import division_slot

DAY = date(2027, 2, 10)  # a plain Wednesday
NOW = datetime(2027, 1, 10, 3, 0, tzinfo=UTC)  # inside the window for DAY


def hold(user, room, codes=("MORNING",), now=NOW):
    booking = booking_service.place_hold(user, room, division_slot(room, DAY, list(codes)), now=now)
    db.session.commit()
    return booking


def test_a_hold_expires_after_the_configured_minutes_and_is_confirmable(room, resident):
    booking = hold(resident, room)
    assert booking.state == BookingState.HELD
    assert booking.hold_expires_at == NOW + timedelta(minutes=10)
    booking_service.confirm(booking, actor_id=resident.id)
    db.session.commit()
    assert booking.state == BookingState.CONFIRMED
    actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.subject_id == booking.id)).all()
    assert actions == ["held", "held->confirmed"]


def test_illegal_transitions_raise_and_change_nothing(room, resident):
    booking = hold(resident, room)
    booking.transition(BookingState.CANCELLED)
    db.session.commit()
    for target in (BookingState.CONFIRMED, BookingState.HELD, BookingState.NO_SHOW, BookingState.COMPLETED):
        with pytest.raises(IllegalTransition):
            booking.transition(target)
    assert booking.state == BookingState.CANCELLED


def test_confirming_twice_is_a_no_op(room, resident):
    booking = hold(resident, room)
    booking_service.confirm(booking)
    booking_service.confirm(booking)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == 2


def test_an_overlapping_hold_is_refused_with_a_clear_code(room, make_user):
    hold(make_user(), room, ("MORNING", "AFTERNOON"))
    with pytest.raises(BookingError) as err:
        hold(make_user(), room, ("AFTERNOON",))
    assert err.value.code == "slot_taken"
    hold(make_user(), room, ("EVENING",))  # the next division is free


def test_an_expired_hold_blocks_nobody_even_if_no_job_ran(room, make_user):
    first = hold(make_user(), room)
    later = NOW + timedelta(minutes=10)  # the very instant it expires
    assert day_availability(room, DAY, now=later).units[0].status == "free"
    second = hold(make_user(), room, now=later)
    db.session.refresh(first)
    assert first.state == BookingState.EXPIRED
    assert second.state == BookingState.HELD


def test_a_live_hold_blocks_until_its_expiry(room, make_user):
    hold(make_user(), room)
    just_before = NOW + timedelta(minutes=10) - timedelta(seconds=1)
    assert day_availability(room, DAY, now=just_before).mark == PARTLY
    with pytest.raises(BookingError):
        hold(make_user(), room, now=just_before)


def test_day_marks(room, make_user):
    assert day_availability(room, DAY, now=NOW).mark == FREE
    hold(make_user(), room, ("MORNING", "AFTERNOON", "EVENING"))
    assert day_availability(room, DAY, now=NOW).mark == FULL


def test_cap_on_active_bookings(app, room, resident):
    app.config["MAX_ACTIVE_BOOKINGS"] = 2
    hold(resident, room, ("MORNING",))
    hold(resident, room, ("AFTERNOON",))
    with pytest.raises(BookingError) as err:
        hold(resident, room, ("EVENING",))
    assert err.value.code == "too_many"
    # Expired holds no longer count.
    hold(resident, room, ("EVENING",), now=NOW + timedelta(minutes=11))


def test_at_most_max_live_holds_wait_for_payment_at_once(app, make_room, resident):
    assert app.config["MAX_LIVE_HOLDS"] == 2  # the default the issue asks for
    app.config.update(MAX_ACTIVE_BOOKINGS=5)
    room, other = make_room(), make_room("第二音楽室")
    first = hold(resident, room, ("MORNING",))
    hold(resident, room, ("AFTERNOON",))
    with pytest.raises(BookingError) as err:
        hold(resident, other, ("MORNING",))  # another room does not help
    assert err.value.code == "too_many_holds"
    assert err.value.message.startswith("お支払い待ちの予約が上限に達しています")
    with force_locale("en"):
        assert "waiting for payment" in err.value.message
    # Paid (confirmed) bookings are no longer holds: the resident may hold again, up to MAX_ACTIVE_BOOKINGS.
    booking_service.confirm(first)
    db.session.commit()
    hold(resident, other, ("MORNING",))
    with pytest.raises(BookingError) as err:
        hold(resident, other, ("AFTERNOON",))
    assert err.value.code == "too_many_holds"
    # A hold past its expiry no longer counts.
    hold(resident, other, ("EVENING",), now=NOW + timedelta(minutes=11))


def test_an_unverified_address_cannot_hold_until_confirmed(room, make_user):
    user = make_user(verified=False)
    with pytest.raises(BookingError) as err:
        hold(user, room)
    assert err.value.code == "email_unverified"
    assert err.value.message.startswith("予約の前にメールアドレスの確認をお願いします")
    with force_locale("en"):
        assert err.value.message == "Please confirm your e-mail address before booking. We sent you a link."
    assert db.session.scalar(select(func.count()).select_from(Booking)) == 0
    user.email_verified_at = NOW
    db.session.commit()
    assert hold(user, room).state == BookingState.HELD


def test_staff_at_the_counter_may_book_for_an_unverified_resident(room, make_user):
    resident, staff = make_user(verified=False), make_user(role=Role.STAFF)
    booking = booking_service.place_hold(resident, room, division_slot(room, DAY, ["MORNING"]), now=NOW,
                                         actor=staff, channel="counter")
    db.session.commit()
    assert booking.user_id == resident.id and booking.channel == "counter"
    with pytest.raises(BookingError) as err:  # a resident is no actor for themselves out of the check
        booking_service.place_hold(resident, room, division_slot(room, DAY, ["EVENING"]), now=NOW, actor=resident)
    assert err.value.code == "email_unverified"


def test_a_resident_cancels_their_own_unpaid_booking_until_it_starts(room, resident, make_user):
    booking = hold(resident, room)
    booking_service.confirm(booking)
    with pytest.raises(BookingError) as err:
        cancel_booking(booking, make_user(), now=NOW)  # someone else's booking
    assert err.value.code == "not_cancellable"
    with pytest.raises(BookingError) as err:
        cancel_booking(booking, resident, now=booking.start_at)
    assert err.value.code == "cancel_deadline"
    assert cancel_booking(booking, resident, now=booking.start_at - timedelta(minutes=1)) is None  # nothing paid
    db.session.commit()
    assert booking.state == BookingState.CANCELLED
    with pytest.raises(BookingError) as err:
        cancel_booking(booking, resident, now=NOW)
    assert err.value.code == "not_cancellable"


def test_the_expiry_job_retires_only_expired_holds(room, make_user):
    old = hold(make_user(), room, ("MORNING",))
    fresh = hold(make_user(), room, ("EVENING",), now=NOW + timedelta(minutes=5))
    assert release_expired_holds(now=NOW + timedelta(minutes=10)) == {"released": 1}
    db.session.expire_all()
    assert (old.state, fresh.state) == (BookingState.EXPIRED, BookingState.HELD)


def _raw_booking(user, room, start, end, state=BookingState.CONFIRMED, price=1000):
    return Booking(user_id=user.id, room_id=room.id, start_at=start, end_at=end, state=state,
                   hold_expires_at=NOW + timedelta(minutes=10), price=price, residency="resident")


def test_the_database_refuses_overlapping_active_bookings_without_python_checks(room, make_user):
    start = datetime(2027, 2, 10, 0, 0, tzinfo=UTC)
    db.session.add(_raw_booking(make_user(), room, start, start + timedelta(hours=3)))
    db.session.commit()
    db.session.add(_raw_booking(make_user(), room, start + timedelta(hours=2), start + timedelta(hours=4)))
    with pytest.raises(IntegrityError) as err:
        db.session.flush()
    assert booking_service._is_lost_race(err.value)  # reaches the resident as "slot taken"
    db.session.rollback()
    # Touching ranges do not overlap ([start, end)), and inactive rows never block.
    db.session.add(_raw_booking(make_user(), room, start + timedelta(hours=3), start + timedelta(hours=4)))
    db.session.add(_raw_booking(make_user(), room, start, start + timedelta(hours=1), state=BookingState.CANCELLED))
    db.session.commit()


def test_the_database_refuses_reactivating_into_an_overlap(room, make_user):
    start = datetime(2027, 2, 10, 0, 0, tzinfo=UTC)
    cancelled = _raw_booking(make_user(), room, start, start + timedelta(hours=3), state=BookingState.CANCELLED)
    db.session.add_all([cancelled, _raw_booking(make_user(), room, start, start + timedelta(hours=3))])
    db.session.commit()
    cancelled.state = BookingState.HELD
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_the_database_refuses_negative_prices(room, resident):
    start = datetime(2027, 2, 10, 0, 0, tzinfo=UTC)
    db.session.add(_raw_booking(resident, room, start, start + timedelta(hours=1), price=-1))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
