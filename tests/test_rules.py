"""Calendar rules at their exact edges, in Asia/Tokyo."""
from datetime import UTC, date, datetime, time

import pytest

from reservations.extensions import db
from reservations.models import Closure, ClosureKind
from reservations.services.errors import BookingError
from reservations.services.rules import (
    check_bookable,
    closure_reason,
    division_slot,
    hourly_slot,
    is_holiday,
    window_closes_at,
    window_opens_at,
)
from reservations.timeutil import TOKYO


def tokyo(*args) -> datetime:
    return datetime(*args, tzinfo=TOKYO)


def test_window_opens_on_the_first_at_nine_tokyo_time_two_months_ahead(room):
    # All of February 2027 opens on 1 December 2026 at 09:00 in Tokyo (00:00 UTC).
    assert window_opens_at(room, date(2027, 2, 10)) == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert window_opens_at(room, date(2027, 2, 28)) == window_opens_at(room, date(2027, 2, 1))
    # Across a year boundary: January 2027 opens on 1 November 2026.
    assert window_opens_at(room, date(2027, 1, 20)) == tokyo(2026, 11, 1, 9, 0)


def test_booking_is_refused_one_minute_before_the_window_opens_and_allowed_at_the_minute(room):
    slot = division_slot(room, date(2027, 2, 10), ["MORNING"])
    with pytest.raises(BookingError) as err:
        check_bookable(room, slot, tokyo(2026, 12, 1, 8, 59))
    assert err.value.code == "not_open_yet"
    check_bookable(room, slot, tokyo(2026, 12, 1, 9, 0))


def test_booking_closes_exactly_24_hours_before_the_start(room):
    slot = division_slot(room, date(2027, 2, 10), ["MORNING"])  # 09:00 Tokyo
    assert window_closes_at(room, slot.start_at) == tokyo(2027, 2, 9, 9, 0)
    check_bookable(room, slot, tokyo(2027, 2, 9, 9, 0))
    with pytest.raises(BookingError) as err:
        check_bookable(room, slot, tokyo(2027, 2, 9, 9, 1))
    assert err.value.code == "window_closed"


def test_a_slot_that_has_started_is_past(make_room):
    room = make_room(close_hours_before=0)
    slot = division_slot(room, date(2027, 2, 10), ["MORNING"])
    check_bookable(room, slot, tokyo(2027, 2, 10, 8, 59))
    with pytest.raises(BookingError) as err:
        check_bookable(room, slot, tokyo(2027, 2, 10, 9, 0))
    assert err.value.code == "past"


def test_the_window_uses_the_rooms_own_settings(make_room):
    room = make_room(window_months=3, window_open_day=15, window_open_time=time(10, 30))
    assert window_opens_at(room, date(2027, 4, 2)) == tokyo(2027, 1, 15, 10, 30)


def test_year_end_break_closes_29_december_to_3_january(room):
    assert closure_reason(room, date(2026, 12, 28)) is None
    assert closure_reason(room, date(2026, 12, 29)) == "year_end"
    assert closure_reason(room, date(2027, 1, 3)) == "year_end"
    assert closure_reason(room, date(2027, 1, 4)) is None
    slot = division_slot(room, date(2026, 12, 30), ["MORNING"])
    with pytest.raises(BookingError) as err:
        check_bookable(room, slot, tokyo(2026, 12, 1, 10, 0))
    assert err.value.code == "closed"


def test_regular_closing_day_second_monday_and_one_off_maintenance(room):
    room.closures.append(Closure(kind=ClosureKind.MONTHLY, weekday=0, nth=2, reason="定期休館日"))
    room.closures.append(Closure(kind=ClosureKind.PERIOD, start_date=date(2027, 3, 1),
                                 end_date=date(2027, 3, 3), reason="空調工事"))
    db.session.commit()
    assert closure_reason(room, date(2027, 2, 1)) is None  # 1st Monday
    assert closure_reason(room, date(2027, 2, 8)) == "定期休館日"  # 2nd Monday
    assert closure_reason(room, date(2027, 2, 15)) is None  # 3rd Monday
    assert closure_reason(room, date(2027, 2, 9)) is None  # the Tuesday after
    assert closure_reason(room, date(2027, 2, 28)) is None
    assert closure_reason(room, date(2027, 3, 1)) == "空調工事"
    assert closure_reason(room, date(2027, 3, 3)) == "空調工事"
    assert closure_reason(room, date(2027, 3, 4)) is None


def test_weekly_closure(room):
    room.closures.append(Closure(kind=ClosureKind.WEEKLY, weekday=2, reason="水曜休館"))
    db.session.commit()
    assert closure_reason(room, date(2027, 2, 10)) == "水曜休館"  # Wednesday
    assert closure_reason(room, date(2027, 2, 11)) is None


def test_public_holidays_and_weekends_are_holidays():
    assert is_holiday(date(2027, 2, 11))  # 建国記念の日, a Thursday
    assert is_holiday(date(2027, 2, 13))  # Saturday
    assert is_holiday(date(2027, 2, 14))  # Sunday
    assert not is_holiday(date(2027, 2, 10))  # plain Wednesday
    assert is_holiday(date(2026, 11, 23))  # 勤労感謝の日, a Monday


def test_divisions_must_be_one_or_consecutive(room):
    day = date(2027, 2, 10)
    slot = division_slot(room, day, ["AFTERNOON", "MORNING"])  # order given does not matter
    assert slot.division_codes == ("MORNING", "AFTERNOON")
    assert slot.start_at == tokyo(2027, 2, 10, 9, 0) and slot.end_at == tokyo(2027, 2, 10, 17, 0)
    assert division_slot(room, day, ["MORNING", "AFTERNOON", "EVENING"]).end_at == tokyo(2027, 2, 10, 21, 0)
    for bad in (["MORNING", "EVENING"], [], ["NIGHT"], ["MORNING", "MORNING"]):
        with pytest.raises(BookingError) as err:
            division_slot(room, day, bad)
        assert err.value.code == "invalid_divisions"


def test_hourly_rooms_keep_to_opening_hours_steps_and_durations(make_hourly_room):
    court = make_hourly_room()  # 09:00–21:00, 60..180 minutes, 60-minute steps
    day = date(2027, 2, 10)
    slot = hourly_slot(court, day, time(19), 120)
    assert slot.end_at == tokyo(2027, 2, 10, 21, 0)
    cases = {
        (time(8), 60): "outside_hours",
        (time(20), 120): "outside_hours",
        (time(9, 30), 60): "outside_hours",
        (time(10), 30): "invalid_duration",
        (time(10), 240): "invalid_duration",
        (time(10), 90): "invalid_duration",
    }
    for (start, minutes), code in cases.items():
        with pytest.raises(BookingError) as err:
            hourly_slot(court, day, start, minutes)
        assert err.value.code == code, (start, minutes)


def test_a_room_without_fees_is_not_bookable_online(make_room):
    room = make_room(divisions=[("MORNING", time(9), time(12), None, None)])
    assert room.unbookable_reason() == "no fees"
    slot = division_slot(room, date(2027, 2, 10), ["MORNING"])
    with pytest.raises(BookingError) as err:
        check_bookable(room, slot, tokyo(2027, 1, 10, 10, 0))
    assert err.value.code == "not_bookable"


def test_an_hourly_room_without_opening_hours_offers_nothing_and_refuses_slots(make_hourly_room):
    from reservations.services.availability import OUTSIDE, day_availability
    from reservations.services.rules import hourly_starts

    court = make_hourly_room(open_time=None, close_time=None)
    assert court.unbookable_reason() == "no opening hours"
    assert hourly_starts(court, date(2027, 2, 10)) == []
    assert day_availability(court, date(2027, 2, 10), now=tokyo(2027, 1, 10, 10, 0)).mark == OUTSIDE
    with pytest.raises(BookingError) as err:
        hourly_slot(court, date(2027, 2, 10), time(10), 60)
    assert err.value.code == "not_bookable"
