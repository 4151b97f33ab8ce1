"""The refund policy as ward rules word it: calendar-day cut-offs in Tokyo, by room kind or the room's own,
and the full refund when the facility cancels for a reason the resident is not responsible for."""
import json
from datetime import date, time, timedelta
from html import unescape

import pytest
import time_machine
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from reservations import create_app
from reservations.extensions import db
from reservations.models import BookingState, RefundState, RefundTier, Role, Room, RoomKind
from reservations.services import cancellation, refund_policy
from reservations.services.errors import BookingError
from reservations.services.refund_policy import refund_percent, refund_schedule
from reservations.timeutil import TOKYO, at_tokyo, business_date, shift_months
from tests.helpers import audit_actions, book, booking_day, count, outbox


def last_second(day: date):
    """23:59:59 of `day` in Tokyo, as a UTC instant."""
    return at_tokyo(day, time(23, 59, 59))


def midnight(day: date):
    """00:00 of `day` in Tokyo."""
    return at_tokyo(day, time(0))


def of_kind(make_room, name: str, kind: RoomKind) -> Room:
    room = make_room(name)
    room.kind = kind
    db.session.commit()
    return room


def percent(room: Room, day: date, now, start: time = time(9)) -> int:
    start_at = at_tokyo(day, start)
    return refund_policy.percent_at(refund_schedule(room, start_at), start_at, now)


# -- calendar-day cut-offs -------------------------------------------------------------------------

USE_DAY = date(2030, 1, 16)  # a Wednesday


@pytest.mark.parametrize(("now", "expected"), [
    (midnight(date(2030, 1, 1)), 100),
    (last_second(date(2030, 1, 9)), 100),  # 使用日の7日前まで: all of the 9th
    (midnight(date(2030, 1, 10)), 50),  # the 10th is 6 days before
    (last_second(date(2030, 1, 14)), 50),  # 使用日の2日前まで: all of the 14th
    (midnight(date(2030, 1, 15)), 0),
    (at_tokyo(USE_DAY, time(8, 59)), 0),
    (at_tokyo(USE_DAY, time(9)), 0),  # the start
], ids=["long-before", "9th-23:59:59", "10th-00:00", "14th-23:59:59", "15th-00:00", "day-08:59", "start"])
def test_each_cut_off_lasts_until_the_end_of_its_day_in_tokyo(room, now, expected):
    assert percent(room, USE_DAY, now) == expected


def test_a_morning_slot_keeps_the_full_refund_after_its_start_time_on_the_cut_off_day(room):
    """Once start − 7 × 24 h: a 09:00 slot moved from 100 % to 50 % at 09:01 on the 9th."""
    start_at = at_tokyo(USE_DAY, time(9))
    assert percent(room, USE_DAY, start_at - 7 * timedelta(days=1) + timedelta(minutes=1)) == 100
    # An evening slot on the same day has the same cut-offs: the day of use counts, not the hour.
    assert refund_schedule(room, at_tokyo(USE_DAY, time(18))) == refund_schedule(room, start_at)


def test_the_day_of_use_is_the_tokyo_date_of_the_start(room):
    # 00:30 on the 16th in Tokyo is still the 15th in UTC.
    start_at = at_tokyo(USE_DAY, time(0, 30))
    assert start_at.date() == date(2030, 1, 15)
    [seven, two] = refund_schedule(room, start_at)
    assert (seven.last_day, seven.percent, seven.ends_at) == (date(2030, 1, 9), 100, midnight(date(2030, 1, 10)))
    assert (two.last_day, two.percent) == (date(2030, 1, 14), 50)
    assert seven.ends_at.astimezone(TOKYO).time() == time(0)


def test_cut_offs_cross_a_month_end(room):
    use = date(2027, 3, 3)  # 2027 is not a leap year
    [seven, two] = refund_schedule(room, at_tokyo(use, time(9)))
    assert (seven.last_day, two.last_day) == (date(2027, 2, 24), date(2027, 3, 1))
    assert percent(room, use, last_second(date(2027, 2, 24))) == 100
    assert percent(room, use, midnight(date(2027, 2, 25))) == 50
    assert percent(room, use, last_second(date(2027, 3, 1))) == 50
    assert percent(room, use, midnight(date(2027, 3, 2))) == 0


@pytest.mark.parametrize(("day", "months", "expected"), [
    (date(2027, 3, 31), 1, date(2027, 2, 28)),
    (date(2028, 3, 31), 1, date(2028, 2, 29)),  # a leap year
    (date(2027, 3, 3), 1, date(2027, 2, 3)),
    (date(2027, 5, 31), 1, date(2027, 4, 30)),
    (date(2027, 1, 15), 2, date(2026, 11, 15)),  # across a year end
    (date(2027, 8, 31), 6, date(2027, 2, 28)),
    (date(2027, 3, 10), 0, date(2027, 3, 10)),
])
def test_months_before_is_the_same_day_number_clamped_to_the_month_end(day, months, expected):
    assert shift_months(day, -months) == expected


def test_a_months_tier_across_february(room):
    refund_policy.set_room_policy(room, [("months", 1, 100), ("days", 7, 50)])
    db.session.commit()
    use = date(2027, 3, 31)

    assert percent(room, use, last_second(date(2027, 2, 28))) == 100
    assert percent(room, use, midnight(date(2027, 3, 1))) == 50
    assert percent(room, use, last_second(date(2027, 3, 24))) == 50
    assert percent(room, use, midnight(date(2027, 3, 25))) == 0
    leap = date(2028, 3, 31)
    assert percent(room, leap, last_second(date(2028, 2, 29))) == 100
    assert percent(room, leap, midnight(date(2028, 3, 1))) == 50


# -- tiers by room kind, and the room's own --------------------------------------------------------

def test_tiers_differ_by_room_kind(make_room):
    hall = of_kind(make_room, "ホール", RoomKind.HALL)
    meeting = of_kind(make_room, "第1会議室", RoomKind.MEETING_ROOM)
    music = of_kind(make_room, "音楽室", RoomKind.MUSIC_ROOM)
    use = date(2030, 6, 20)

    # A hall: 100 % until 2 months before, 50 % until 30 days before.
    assert percent(hall, use, last_second(date(2030, 4, 20))) == 100
    assert percent(hall, use, midnight(date(2030, 4, 21))) == 50
    assert percent(hall, use, last_second(date(2030, 5, 21))) == 50
    assert percent(hall, use, midnight(date(2030, 5, 22))) == 0
    # A meeting room: 50 % until 5 days before, never the whole fee.
    assert percent(meeting, use, midnight(date(2030, 1, 1))) == 50
    assert percent(meeting, use, last_second(date(2030, 6, 15))) == 50
    assert percent(meeting, use, midnight(date(2030, 6, 16))) == 0
    # A music room: 100 % until 7 days, 50 % until 2 days.
    assert percent(music, use, last_second(date(2030, 6, 13))) == 100
    assert percent(music, use, midnight(date(2030, 6, 14))) == 50


def test_tiers_stored_for_a_kind_replace_its_defaults(make_room):
    meeting = of_kind(make_room, "第1会議室", RoomKind.MEETING_ROOM)
    refund_policy.set_kind_policy(RoomKind.MEETING_ROOM, [("days", 10, 100), ("days", 3, 30)])
    db.session.commit()
    use = date(2030, 6, 20)

    assert percent(meeting, use, last_second(date(2030, 6, 10))) == 100
    assert percent(meeting, use, midnight(date(2030, 6, 11))) == 30
    assert percent(meeting, use, midnight(date(2030, 6, 18))) == 0


def test_a_rooms_own_policy_overrides_its_kind(make_room):
    hall = of_kind(make_room, "ホール", RoomKind.HALL)
    other_hall = of_kind(make_room, "小ホール", RoomKind.HALL)
    refund_policy.set_room_policy(hall, [("days", 3, 80), ("days", 1, 30)])
    db.session.commit()
    use = date(2030, 6, 20)

    assert percent(hall, use, midnight(date(2030, 1, 1))) == 80
    assert percent(hall, use, last_second(date(2030, 6, 17))) == 80
    assert percent(hall, use, midnight(date(2030, 6, 18))) == 30
    assert percent(hall, use, last_second(date(2030, 6, 19))) == 30
    assert percent(hall, use, midnight(date(2030, 6, 20))) == 0
    assert percent(other_hall, use, midnight(date(2030, 1, 1))) == 100  # still the kind's
    # Back to the kind's tiers.
    refund_policy.set_room_policy(hall, None)
    db.session.commit()
    assert percent(hall, use, midnight(date(2030, 5, 1))) == 50
    assert count(RefundTier) == 0


def test_a_room_with_one_tier_of_nothing_refunds_nothing(room):
    refund_policy.set_room_policy(room, [("days", 0, 0)])
    db.session.commit()
    assert percent(room, USE_DAY, midnight(date(2029, 1, 1))) == 0


@pytest.mark.parametrize("fields", [
    {"room_kind": "hall", "unit": "days", "count": 7, "percent": 101},
    {"room_kind": "hall", "unit": "days", "count": 7, "percent": -1},
    {"room_kind": "hall", "unit": "days", "count": -1, "percent": 50},
    {"room_kind": "hall", "unit": "weeks", "count": 1, "percent": 50},
    {"room_kind": None, "unit": "days", "count": 1, "percent": 50},  # belongs to nothing
], ids=["percent>100", "percent<0", "count<0", "unit", "no-owner"])
def test_the_database_refuses_an_insane_tier(app, fields):
    db.session.add(RefundTier(**fields))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_the_database_refuses_a_tier_for_both_a_kind_and_a_room_and_a_duplicate_cut_off(room):
    db.session.add(RefundTier(room_kind="hall", room_id=room.id, unit="days", count=7, percent=50))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
    db.session.add_all([RefundTier(room_id=room.id, unit="days", count=7, percent=50),
                        RefundTier(room_id=room.id, unit="days", count=7, percent=100)])
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


# -- migration 0005: the old JSON policies keep their meaning --------------------------------------

OLD_ROOMS = [
    # (id, kind, refund_policy JSON)
    (1, "music_room", '[{"days_before": 7, "percent": 100}, {"days_before": 2, "percent": 50}]'),
    (2, "hall", '[{"days_before": 7, "percent": 100}, {"days_before": 2, "percent": 50}]'),
    (3, "music_room", '[{"days_before": 1, "percent": 30}, {"days_before": 3, "percent": 80}]'),
    (4, "meeting_room", "[]"),
    (5, "court", '[{"days_before": 5, "percent": 150}, {"days_before": -1, "percent": 10}]'),
]


def test_migration_0005_moves_each_rooms_json_policy_into_tiers(empty_database):
    app = create_app({"SQLALCHEMY_DATABASE_URI": empty_database, "TESTING": True})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "0004"]).exit_code == 0
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO buildings (id, name, name_kana, name_en, address, website_url) "
                          "VALUES (1, '会館', '', '', '', '')"))
        for room_id, kind, policy in OLD_ROOMS:
            conn.execute(text(
                "INSERT INTO rooms (id, building_id, name, name_kana, name_en, kind, accessibility_notes, "
                "website_url, note, lottery_note, active, letting, step_minutes, hourly_unit_minutes, "
                "nonresident_multiplier_pct, window_months, window_open_day, window_open_time, close_hours_before, "
                "closes_year_end, refund_policy) VALUES (:id, 1, :name, '', '', :kind, '', '', '', '', true, "
                "'division', 60, 60, 150, 2, 1, '09:00:00', 24, true, :policy)"),
                {"id": room_id, "name": f"室{room_id}", "kind": kind, "policy": policy})
        conn.execute(text("INSERT INTO divisions (room_id, code, position, start_time, end_time, weekday_fee, "
                          "holiday_fee) VALUES (1, 'MORNING', 0, '09:00:00', '12:00:00', 100, 100)"))

    result = runner.invoke(args=["db", "upgrade"])

    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT room_kind, room_id, unit, count, percent FROM refund_tiers")).all()
        assert conn.execute(text("SELECT count(*) FROM divisions")).scalar() == 1  # nothing cascaded away
    own = sorted((r.room_id, r.unit, r.count, r.percent) for r in rows if r.room_id is not None)
    assert own == [
        # room 1 follows its kind, whose default is what it had.
        (2, "days", 2, 50), (2, "days", 7, 100),  # a hall keeps the old default as its own
        (3, "days", 1, 30), (3, "days", 3, 80),
        (4, "days", 0, 0),  # it refunded nothing
        (5, "days", 5, 100),  # 150 % was capped at what was paid; a tier after the start never applied
    ]
    kinds = {(r.room_kind, r.unit, r.count, r.percent) for r in rows if r.room_kind is not None}
    assert {("hall", "months", 2, 100), ("hall", "days", 30, 50), ("meeting_room", "days", 5, 50),
            ("music_room", "days", 7, 100), ("music_room", "days", 2, 50)} <= kinds
    # The code's defaults are the ones the migration stored.
    for kind in RoomKind:
        stored = sorted((u, c, p) for k, u, c, p in kinds if k == kind)
        assert stored == sorted(refund_policy.KIND_DEFAULTS.get(kind, refund_policy.GENERAL_DEFAULT)), kind

    assert runner.invoke(args=["db", "downgrade", "0004"]).exit_code == 0
    with engine.connect() as conn:
        back = dict(conn.execute(text("SELECT id, refund_policy FROM rooms")).all())
        assert conn.execute(text("SELECT count(*) FROM divisions")).scalar() == 1
    engine.dispose()
    with app.app_context():
        db.engine.dispose()
    policy = back[3] if isinstance(back[3], list) else json.loads(back[3])
    assert policy == [{"days_before": 3, "percent": 80}, {"days_before": 1, "percent": 30}]


# -- through real cancellations --------------------------------------------------------------------

pay = pytest.mark.payments



@pay
@pytest.mark.parametrize(("days_before", "clock", "expected"), [
    (8, time(12), 100),
    (7, time(9, 1), 100),  # once start − 7 × 24 h + 1 min: 50 %
    (7, time(23, 59, 59), 100),
    (6, time(0), 50),
    (2, time(23, 59, 59), 50),
    (1, time(0), 0),
], ids=["8d-noon", "7d-09:01", "7d-23:59:59", "6d-00:00", "2d-23:59:59", "1d-00:00"])
def test_cancelling_refunds_by_the_default_policy_at_each_cut_off(
        app, localstripe, paid, resident, days_before, clock, expected):
    when = at_tokyo(business_date(paid.start_at) - timedelta(days=days_before), clock)

    refund = cancellation.cancel_booking(paid, resident, now=when)
    db.session.commit()

    assert paid.state == BookingState.CANCELLED
    assert paid.payment.refunded_amount == 2800 * expected // 100
    if expected:
        assert (refund.amount, refund.partial, refund.reason, refund.state) == (
            2800 * expected // 100, expected < 100, "policy", RefundState.SUCCEEDED)
    else:
        assert refund is None


@pay
def test_a_ward_reason_cancel_refunds_everything_on_the_day_before(app, localstripe, paid, make_user):
    staff = make_user(role=Role.STAFF, name="窓口 職員")
    the_day_before = at_tokyo(business_date(paid.start_at) - timedelta(days=1), time(17))
    assert refund_percent(paid, the_day_before) == 0  # the resident would get nothing

    refund = cancellation.cancel_for_ward_reason(paid, staff, "closure", note="空調故障", now=the_day_before)
    db.session.commit()

    assert paid.state == BookingState.CANCELLED
    assert (refund.amount, refund.partial, refund.reason, refund.state) == (2800, False, "ward", RefundState.SUCCEEDED)
    assert paid.payment.refunded_amount == 2800 and paid.payment.refundable == 0
    actions = audit_actions("booking", paid.id)
    assert ("confirmed->cancelled", "cancelled by staff for a ward reason: closure (空調故障)") in actions
    assert ("cancelled for a ward reason", "closure") in actions
    [mail] = [m for m in outbox(app) if m["To"] == paid.user.email and "施設の都合" in m["Subject"]]
    body = mail.get_content()
    assert "休館のため、施設側でご予約を取り消しました。" in body
    assert "¥2,800" in body
    assert f"{app.config['PUBLIC_BASE_URL']}/bookings/{paid.id}" in body


@pay
def test_a_ward_reason_cancel_is_refused_for_a_resident(app, localstripe, paid, resident):
    with pytest.raises(BookingError) as refused:
        cancellation.cancel_for_ward_reason(paid, resident, "ward", now=paid.start_at - timedelta(days=1))
    db.session.rollback()

    assert refused.value.code == "staff_only" and refused.value.message == "この操作は職員のみ行えます。"
    db.session.refresh(paid)
    assert paid.state == BookingState.CONFIRMED and paid.payment.refunded_amount == 0
    assert ("cancelled for a ward reason", "ward") not in audit_actions("booking", paid.id)


def test_a_ward_reason_cancel_of_an_unpaid_booking_mails_and_refunds_nothing(app, room, resident, make_user, now):
    staff = make_user(role=Role.ADMIN)
    booking = book(resident, room, now=now)  # payments are off: confirmed at once, free of charge
    assert booking.state == BookingState.CONFIRMED

    assert cancellation.cancel_for_ward_reason(booking, staff, "disaster", now=now) is None
    db.session.commit()

    assert booking.state == BookingState.CANCELLED
    [mail] = [m for m in outbox(app) if "施設の都合" in m["Subject"]]
    assert "災害等のため" in mail.get_content() and "料金は請求されていません" in mail.get_content()


def test_a_ward_reason_cancel_refuses_an_unknown_reason_and_a_booking_that_has_ended(
        app, room, resident, make_user, now):
    staff = make_user(role=Role.STAFF)
    booking = book(resident, room, now=now)
    with pytest.raises(ValueError):
        cancellation.cancel_for_ward_reason(booking, staff, "whim", now=now)
    with pytest.raises(BookingError) as refused:
        cancellation.cancel_for_ward_reason(booking, staff, "ward", now=booking.end_at)
    assert refused.value.code == "not_cancellable"


# -- the pages show the tiers ----------------------------------------------------------------------

def page_text(response) -> str:
    return unescape(response.get_data(as_text=True))


@pay
def test_the_booking_page_shows_each_cut_off_as_a_date_and_marks_the_one_that_applies(
        app, client, localstripe, paid, login_as, resident):
    use = business_date(paid.start_at)
    seven, two = use - timedelta(days=7), use - timedelta(days=2)
    weekdays = "月火水木金土日"

    def page_at(instant, english=False):
        # The whole request at that instant, signed in then (a session lasts hours, not days).
        with time_machine.travel(instant, tick=False):
            login_as(resident)
            if english:
                client.post("/lang/en")
            return page_text(client.get(f"/bookings/{paid.id}"))

    before = page_at(last_second(seven))
    after = page_at(midnight(seven + timedelta(days=1)))

    ja_seven = f"{seven.year}年{seven.month}月{seven.day}日（{weekdays[seven.weekday()]}）まで"
    ja_two = f"{two.year}年{two.month}月{two.day}日（{weekdays[two.weekday()]}）まで"
    for page in (before, after):
        assert ja_seven in page and ja_two in page and "100%返金" in page and "50%返金" in page
    current_before = before.split('aria-current="true"', 1)[1][:200]
    current_after = after.split('aria-current="true"', 1)[1][:200]
    assert ja_seven in current_before and "100%返金" in current_before
    assert ja_two in current_after and "50%返金" in current_after

    english = page_at(last_second(seven), english=True)
    assert f"Until {seven:%a} {seven.day} {seven:%B %Y}" in english and "100% refund" in english


@pay
def test_the_review_page_shows_the_cut_off_dates(app, client, localstripe, room, login_as, resident):
    login_as(resident)
    client.post("/lang/en")
    day = booking_day()
    seven = day - timedelta(days=7)

    page = page_text(client.get(f"/rooms/{room.id}/book?date={day.isoformat()}&divisions=MORNING"))

    assert f"Until {seven:%a} {seven.day} {seven:%B %Y}" in page
    assert "100% refund" in page and "50% refund" in page


def test_the_room_page_shows_the_tiers_in_words(app, client, make_room):
    hall = of_kind(make_room, "ホール", RoomKind.HALL)

    ja = page_text(client.get(f"/rooms/{hall.id}"))
    client.post("/lang/en")
    en = page_text(client.get(f"/rooms/{hall.id}"))

    assert "使用日の2か月前まで 100%返金" in ja and "使用日の30日前まで 50%返金" in ja
    assert "Until 2 months before the day of use: 100% refund" in en
    assert "Until 30 days before the day of use: 50% refund" in en
    assert "the whole fee is refunded" in en


@pay
def test_the_review_page_reads_the_same_tiers_as_the_service(app, client, localstripe, room, login_as, resident):
    """The review page loads the room's own tiers and its kind's with the room (Room.policy_tiers); its schedule
    is the one refund_schedule reads tier by tier: the room's own, else its kind's, else the defaults."""
    login_as(resident)
    client.post("/lang/en")
    day = booking_day()
    start_at = at_tokyo(day, time(9))

    def shown() -> list[str]:
        page = page_text(client.get(f"/rooms/{room.id}/book?date={day.isoformat()}&divisions=MORNING"))
        db.session.expire_all()
        expected = refund_schedule(db.session.get(Room, room.id), start_at)
        for cutoff in expected:
            assert f"Until {cutoff.last_day:%a} {cutoff.last_day.day} {cutoff.last_day:%B %Y}" in page
            assert f"{cutoff.percent}% refund" in page
        return [f"{c.last_day}:{c.percent}" for c in expected]

    refund_policy.set_kind_policy(room.kind, [("days", 6, 90), ("days", 2, 40)])
    db.session.commit()
    assert shown() == [f"{day - timedelta(days=6)}:90", f"{day - timedelta(days=2)}:40"]
    refund_policy.set_room_policy(room, [("days", 5, 70)])
    db.session.commit()
    assert shown() == [f"{day - timedelta(days=5)}:70"]  # its own, not its kind's
    refund_policy.set_room_policy(room, None)
    refund_policy.set_kind_policy(room.kind, [])
    db.session.commit()
    defaults = shown()
    assert defaults == [f"{c.last_day}:{c.percent}" for c in refund_schedule(room, start_at)] and defaults
