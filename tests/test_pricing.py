"""Prices are computed on the server, in integer yen, and kept by the booking."""
from datetime import UTC, date, datetime, time

from reservations.extensions import db
from reservations.models import Residency
from reservations.services.booking import reserve
from reservations.services.pricing import quote
from reservations.services.rules import division_slot, hourly_slot

HALL = [
    ("MORNING", time(9), time(12), 10900, 13100),
    ("AFTERNOON", time(13), time(17), 14600, 17500),
    ("EVENING", time(18), time(21), 18200, 21800),
]


def test_weekday_fee(make_room):
    room = make_room(divisions=HALL)
    price = quote(room, division_slot(room, date(2027, 2, 10), ["MORNING"]), Residency.RESIDENT)
    assert price.total == 10900 and not price.holiday


def test_saturday_takes_the_holiday_fee(make_room):
    room = make_room(divisions=HALL)
    price = quote(room, division_slot(room, date(2027, 2, 13), ["MORNING", "AFTERNOON"]), Residency.RESIDENT)
    assert price.total == 13100 + 17500 and price.holiday


def test_a_public_holiday_on_a_weekday_takes_the_holiday_fee(make_room):
    room = make_room(divisions=HALL)
    # 11 February 2027 (建国記念の日) is a Thursday.
    price = quote(room, division_slot(room, date(2027, 2, 11), ["EVENING"]), Residency.RESIDENT)
    assert price.total == 21800 and price.holiday


def test_non_residents_pay_the_multiplier_and_in_ward_workers_and_students_do_not(make_room):
    room = make_room(divisions=HALL)  # default 150 %
    slot = division_slot(room, date(2027, 2, 10), ["MORNING"])
    assert quote(room, slot, Residency.OUTSIDE).total == 16350
    assert quote(room, slot, Residency.WORKER).total == 10900
    assert quote(room, slot, Residency.STUDENT).total == 10900
    surcharge = quote(room, slot, Residency.OUTSIDE).lines[-1]
    assert surcharge == {"item": "nonresident", "amount": 5450}


def test_multiplier_rounds_down_to_the_yen(make_room):
    room = make_room(divisions=[("MORNING", time(9), time(12), 1001, 1001)], nonresident_multiplier_pct=150)
    slot = division_slot(room, date(2027, 2, 10), ["MORNING"])
    assert quote(room, slot, Residency.OUTSIDE).total == 1501


def test_hourly_rates(make_hourly_room):
    court = make_hourly_room()
    assert quote(court, hourly_slot(court, date(2027, 2, 10), time(10), 120), Residency.RESIDENT).total == 2000
    assert quote(court, hourly_slot(court, date(2027, 2, 13), time(10), 120), Residency.RESIDENT).total == 3000
    two_hour_rate = make_hourly_room("体育室", hourly_unit_minutes=120, weekday_hourly_fee=3000)
    assert quote(two_hour_rate, hourly_slot(two_hour_rate, date(2027, 2, 10), time(10), 180),
                 Residency.RESIDENT).total == 4500


def test_a_booking_keeps_the_price_it_was_made_at(make_room, make_user):
    room = make_room(divisions=HALL)
    user = make_user()
    slot = division_slot(room, date(2027, 2, 10), ["MORNING"])
    booking = reserve(user, room, slot, now=datetime(2027, 1, 10, 3, 0, tzinfo=UTC))
    db.session.commit()
    room.divisions[0].weekday_fee = 99999
    db.session.commit()
    db.session.expire_all()
    assert booking.price == 10900
    assert booking.price_detail["lines"] == [{"item": "MORNING", "amount": 10900}]
