"""The finance dashboard (/finance/dashboard): each figure from known data, counted by hand, and the page.

Revenue per day per building, the cashless share (100 %, 50 %, 0 % and none), occupancy per room and
division against the closure rules, refund lead time (median, and p90 by nearest rank), the page's SVG
charts and tables showing the same numbers, the "no data" states, and bad query strings (422, never 500).
"""
import re
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reservations.extensions import db
from reservations.models import (
    AuditEntry,
    Booking,
    Building,
    Closure,
    ClosureKind,
    Division,
    Letting,
    Refund,
    Role,
    Room,
)
from reservations.services import ledger
from reservations.services.finance import dashboard as figures
from reservations.services.rules import division_slot
from reservations.timeutil import at_tokyo
from tests.helpers import calendar_booking, ledger_booking, ledger_refund, statements

DAY = timedelta(days=1)


def tokyo(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """A Tokyo wall-clock moment, as the aware UTC datetime the ledger stores."""
    return at_tokyo(day, time(hour, minute))


def other_building_room(name: str = "北会館") -> Room:
    """A room of a second building (make_room's rooms are all in テスト会館)."""
    building = Building(name=name, name_en="North Hall")
    room = Room(building=building, name="集会室", name_en="Assembly room", kind="meeting_room", capacity=20,
                letting=Letting.DIVISION)
    room.divisions.append(Division(code="MORNING", position=0, start_time=time(9), end_time=time(12),
                                   weekday_fee=2000, holiday_fee=2000))
    db.session.add(room)
    db.session.commit()
    return room


def cancelled_at(booking: Booking, at: datetime) -> None:
    """The booking's cancellation as the audit trail records it (booking.transition's entry), at `at`."""
    db.session.add(AuditEntry(subject="booking", subject_id=booking.id, action="confirmed->cancelled", at=at))
    db.session.commit()


@pytest.fixture
def finance(make_user, login_as):
    return login_as(make_user("finance@example.com", role=Role.FINANCE, name="会計 係"))


@contextmanager
def frozen(moment: datetime, client, user):
    """The clock stopped at `moment` for the whole request, signed in (in English) again then: the session
    cookie signed at the real time would have lapsed or not yet begun."""
    with time_machine.travel(moment, tick=False):
        with client.session_transaction() as session:
            session.update({"_user_id": user.get_id(), "_fresh": True, "lang": "en"})
        yield


# -- revenue per day per building -------------------------------------------------------------------

def test_revenue_is_net_of_refunds_and_disputes_by_business_date_and_building_with_fees_apart(room, resident):
    north = other_building_room()
    day = date(2026, 6, 10)
    card = ledger_booking(resident, room, date(2026, 7, 1), at=tokyo(day, 10), amount=3600, method="card")
    ledger.post(card.payment, "fee", 130, "txn_fee_1", balance_transaction_id="txn_fee_1", at=tokyo(day, 10))
    cash = ledger_booking(resident, room, date(2026, 7, 2), at=tokyo(day, 11), amount=2800)
    ledger_refund(cash, 1400, at=tokyo(day + DAY, 9))
    ledger.post(card.payment, "dispute_withdrawal", 3600, "dp_1", at=tokyo(day + DAY, 10))
    ledger_booking(resident, north, date(2026, 7, 3), at=tokyo(day, 23, 59), amount=2000, method="terminal")
    ledger_booking(resident, north, date(2026, 7, 4), at=tokyo(day + 2 * DAY, 0, 0), amount=9999)  # after the period
    db.session.commit()

    by_building = {r.building.name: r for r in figures.revenue_by_day(day, day + DAY)}

    hall = by_building["テスト会館"]
    assert [(d.day, d.collected, d.returned, d.net, d.fees) for d in hall.days] == [
        (day, 6400, 0, 6400, -130),
        (day + DAY, 0, -5000, -5000, 0),
    ]
    assert (hall.total("net"), hall.total("fees")) == (1400, -130)
    assert [(d.day, d.net) for d in by_building["北会館"].days] == [(day, 2000)]
    assert [r.building.name for r in figures.revenue_by_day(day, day + DAY, north.building_id)] == ["北会館"]
    assert figures.revenue_by_day(day + 3 * DAY, day + 9 * DAY) == []


def test_a_late_movement_counts_on_the_day_it_was_booked_on(room, resident):
    from reservations.models import DayClose

    db.session.add(DayClose(business_date=date(2026, 6, 10)))
    db.session.commit()
    ledger_booking(resident, room, date(2026, 7, 1), at=tokyo(date(2026, 6, 10), 15))  # 6/10 closed: on 6/11

    assert figures.revenue_by_day(date(2026, 6, 10), date(2026, 6, 10)) == []
    assert [d.day for d in figures.revenue_by_day(date(2026, 6, 11), date(2026, 6, 11))[0].days] == [date(2026, 6, 11)]


def test_the_default_period_is_today_and_the_29_tokyo_days_before(app):
    assert figures.last_days(date(2027, 1, 31)) == (date(2027, 1, 2), date(2027, 1, 31))
    assert figures.month_days(date(2028, 2, 15)) == (date(2028, 2, 1), date(2028, 2, 29))


# -- the cashless share -----------------------------------------------------------------------------

def _month(shares, month: date) -> figures.MonthShare:
    return next(m for m in shares if m.month == month)


def test_cashless_share_100_50_0_and_none(room, resident):
    ledger_booking(resident, room, date(2026, 8, 3), at=tokyo(date(2026, 4, 10)), amount=2800, method="card")
    ledger_booking(resident, room, date(2026, 8, 4), at=tokyo(date(2026, 4, 11)), amount=1200, method="terminal")
    ledger_booking(resident, room, date(2026, 8, 5), at=tokyo(date(2026, 5, 10)), amount=3000, method="card")
    ledger_booking(resident, room, date(2026, 8, 6), at=tokyo(date(2026, 5, 11)), amount=1000, method="cash")
    ledger_booking(resident, room, date(2026, 8, 7), at=tokyo(date(2026, 5, 12)), amount=2000, method="cash")
    ledger_booking(resident, room, date(2026, 8, 10), at=tokyo(date(2026, 6, 1)), amount=2800, method="cash")

    shares = figures.cashless_share(2026)

    assert [m.month for m in shares] == [date(2026, m, 1) for m in range(4, 13)] + [date(2027, m, 1) for m in (1, 2, 3)]
    april, may, june, july = (_month(shares, date(2026, m, 1)) for m in (4, 5, 6, 7))
    assert (april.amount_share, april.count_share) == (100.0, 100.0)
    assert (april.methods["card"].amount, april.methods["terminal"].count) == (2800, 1)
    assert may.amount_share == 50.0  # 3,000 of 6,000 yen
    assert may.count_share == pytest.approx(100 / 3)  # 1 of 3 payments
    assert (june.amount_share, june.count_share) == (0.0, 0.0)  # cash only
    assert (july.amount_share, july.count_share, july.empty) == (None, None, True)  # nothing collected
    year = figures.year_share(shares)
    assert (year.methods["cash"].count, year.methods["cash"].amount) == (3, 5800)
    assert year.amount_share == 100 * 7000 / 12800 and year.count_share == 50.0  # 3 of 6 payments


def test_refunds_do_not_count_and_the_month_is_the_tokyo_payment_date(room, resident):
    cash = ledger_booking(resident, room, date(2026, 8, 3), at=datetime(2026, 4, 30, 14, 59, tzinfo=UTC))  # 23:59
    ledger_refund(cash, 2800, at=tokyo(date(2026, 5, 20)))
    ledger_booking(resident, room, date(2026, 8, 4), at=datetime(2026, 4, 30, 15, 0, tzinfo=UTC),  # 5/1 00:00
                   method="card")
    ledger_booking(resident, room, date(2026, 8, 5), at=datetime(2027, 3, 31, 14, 59, tzinfo=UTC), method="card")
    ledger_booking(resident, room, date(2026, 8, 6), at=datetime(2027, 3, 31, 15, 0, tzinfo=UTC))  # FY2027

    shares = figures.cashless_share(2026)

    assert _month(shares, date(2026, 4, 1)).amount_share == 0.0
    assert _month(shares, date(2026, 5, 1)).amount_share == 100.0
    assert _month(shares, date(2027, 3, 1)).amount_share == 100.0
    assert _month(figures.cashless_share(2027), date(2027, 4, 1)).amount_share == 0.0


def test_cashless_share_of_one_building(room, resident):
    north = other_building_room()
    ledger_booking(resident, room, date(2026, 8, 3), at=tokyo(date(2026, 4, 10)), method="card")
    ledger_booking(resident, north, date(2026, 8, 3), at=tokyo(date(2026, 4, 10)), method="cash")

    assert _month(figures.cashless_share(2026), date(2026, 4, 1)).amount_share == 50.0
    assert _month(figures.cashless_share(2026, north.building_id), date(2026, 4, 1)).amount_share == 0.0


# -- occupancy --------------------------------------------------------------------------------------

def _booking(user, room, slot, state="confirmed") -> Booking:
    booking = Booking(user_id=user.id, room_id=room.id, start_at=slot.start_at, end_at=slot.end_at, state=state,
                      price=0, residency=user.residency, division_codes=",".join(slot.division_codes) or None)
    db.session.add(booking)
    db.session.commit()
    return booking


def test_occupancy_per_room_and_division_counted_by_hand(room, make_hourly_room, make_room, resident):
    room.closures.append(Closure(kind=ClosureKind.WEEKLY, weekday=0, reason="休館日"))  # Mondays: 1, 8, 15, 22 Feb
    db.session.commit()
    for day, state in ((2, "confirmed"), (3, "completed"), (4, "no_show"), (5, "cancelled"), (6, "held")):
        calendar_booking(resident, room, date(2027, 2, day), "MORNING", state=state,
                         now=datetime(2027, 2, 1, tzinfo=UTC))
    calendar_booking(resident, room, date(2027, 2, 2), "AFTERNOON", kind="block")  # out of letting
    calendar_booking(resident, room, date(2027, 2, 8), "AFTERNOON")  # kept on a closed Monday: not open
    _booking(resident, room, division_slot(room, date(2027, 2, 9), ["MORNING", "AFTERNOON"]))
    calendar_booking(resident, room, date(2027, 1, 29), "EVENING")  # another month
    calendar_booking(resident, room, date(2027, 3, 1), "EVENING")
    court = make_hourly_room()
    _booking(resident, court, figures_slot(court, date(2027, 2, 10), 10, 2))
    make_room("閉鎖中の部屋", active=False)

    rows = {(r.room.name, r.division): (r.booked, r.open) for r in figures.occupancy(date(2027, 2, 1))}

    assert rows == {
        ("音楽室", "MORNING"): (4, 24),  # 28 days less 4 Mondays; 2, 3, 4 and 9 Feb
        ("音楽室", "AFTERNOON"): (1, 23),  # less the block on 2 Feb
        ("音楽室", "EVENING"): (0, 24),
        ("テニスコート", None): (2, 12 * 28),  # 09:00-21:00, one slot an hour, as a whole
    }
    share = {(r.room.name, r.division): r.share for r in figures.occupancy(date(2027, 2, 1))}
    assert share[("音楽室", "MORNING")] == pytest.approx(100 * 4 / 24)
    totals = figures.occupancy_by_building(figures.occupancy(date(2027, 2, 1)))
    assert [(b.name, booked, open_) for b, booked, open_ in totals] == [("テスト会館", 7, 24 + 23 + 24 + 336)]


def figures_slot(room, day: date, hour: int, hours: int):
    from reservations.services.rules import hourly_slot

    return hourly_slot(room, day, time(hour), 60 * hours)


def test_a_room_closed_all_month_has_no_share(room):
    room.closures.append(Closure(kind=ClosureKind.PERIOD, start_date=date(2027, 2, 1), end_date=date(2027, 2, 28)))
    db.session.commit()

    assert {(r.division, r.open, r.share) for r in figures.occupancy(date(2027, 2, 1))} == {
        ("MORNING", 0, None), ("AFTERNOON", 0, None), ("EVENING", 0, None)}


def test_the_year_end_break_is_not_open(room):
    assert {r.open for r in figures.occupancy(date(2026, 12, 1))} == {28}  # 29-31 December closed


def test_occupancy_reads_the_same_number_of_statements_for_any_number_of_rooms(room, make_room, resident):
    calendar_booking(resident, room, date(2027, 2, 2))
    with statements() as one:
        figures.occupancy(date(2027, 2, 1))
    for n in range(4):
        other = make_room(f"会議室{n}")
        other.closures.append(Closure(kind=ClosureKind.WEEKLY, weekday=n))
        calendar_booking(resident, other, date(2027, 2, 3))
    db.session.commit()
    with statements() as five:
        figures.occupancy(date(2027, 2, 1))
    assert len(five) == len(one)


# -- refund lead time -------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "percent", "expected"), [
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9),  # rank ⌈9.0⌉ = 9
    ([11, 1, 10, 2, 9, 3, 8, 4, 7, 5, 6], 90, 10),  # rank ⌈9.9⌉ = 10, in order
    ([42], 90, 42),
    ([1, 2], 90, 2),  # rank ⌈1.8⌉ = 2
    ([1, 2, 3], 50, 2),
    ([1, 2, 3, 4], 50, 2),  # nearest rank never averages
    ([5, 1, 3], 100, 5),
    ([5, 1, 3], 1, 1),
])
def test_p90_is_the_nearest_rank(values, percent, expected):
    assert figures.nearest_rank(values, percent) == expected


def test_lead_time_median_and_p90_per_month_by_hand(room, resident):
    back = tokyo(date(2026, 5, 20))
    for k in range(1, 11):  # ten refunds back on 20 May, cancelled 1 to 10 days before
        booking = ledger_booking(resident, room, date(2026, 7, k), at=tokyo(date(2026, 4, 10)))
        cancelled_at(booking, back - k * DAY)
        ledger_refund(booking, 2800, at=back)
    june = ledger_booking(resident, room, date(2026, 7, 20), at=tokyo(date(2026, 4, 10)))
    cancelled_at(june, tokyo(date(2026, 6, 1), 9))
    ledger_refund(june, 2800, at=tokyo(date(2026, 6, 1), 12))  # three hours

    lead = figures.refund_lead_times(2026)
    may, june_ = (next(m for m in lead.months if m.month == date(2026, m_, 1)) for m_ in (5, 6))

    assert may.count == 10
    assert may.median == 5.5 * 86400  # the mean of the 5th and 6th: 5 and 6 days
    assert may.p90 == 9 * 86400  # the 9th of 10
    assert (june_.count, june_.median, june_.p90) == (1, 3 * 3600, 3 * 3600)
    assert [m.count for m in lead.months if m.month.month not in (5, 6)] == [0] * 10
    assert (lead.unknown_start, lead.pending) == (0, 0)
    year = lead.whole_year()  # 3 hours, then 1 to 10 days
    assert (year.count, year.median, year.p90) == (11, 5 * 86400, 9 * 86400)  # the 6th; the 10th of 11


def test_lead_time_starts_at_the_refund_record_when_the_booking_was_not_cancelled_first(room, resident):
    at = tokyo(date(2026, 9, 1), 9)
    booking = ledger_booking(resident, room, date(2026, 10, 1), at=tokyo(date(2026, 8, 1)))
    counter = Refund(payment_id=booking.payment.id, amount=1000, partial=True, reason="staff", state="succeeded",
                     created_at=at)
    card = ledger_booking(resident, room, date(2026, 10, 2), at=tokyo(date(2026, 8, 1)), method="card")
    online = Refund(payment_id=card.payment.id, amount=2800, partial=False, reason="policy", state="succeeded",
                    provider_refund_id="re_dash_1", created_at=at)
    db.session.add_all([counter, online])
    db.session.flush()
    ledger.post(booking.payment, "refund", 1000, f"counter-refund-{counter.id}", at=at + timedelta(hours=2))
    ledger.post(card.payment, "refund", 2800, "re_dash_1", provider_refund_id="re_dash_1", at=at + 3 * DAY)
    db.session.commit()
    cancelled_at(booking, at + DAY)  # cancelled after the partial refund: not its start

    september = next(m for m in figures.refund_lead_times(2026).months if m.month == date(2026, 9, 1))

    assert sorted(september.seconds) == [2 * 3600, 3 * 86400]


def test_a_refund_with_no_start_is_left_out_and_counted_and_pending_refunds_are_counted(room, resident):
    booking = ledger_booking(resident, room, date(2026, 10, 1), at=tokyo(date(2026, 8, 1)))
    ledger.post(booking.payment, "refund", 500, "made-elsewhere", at=tokyo(date(2026, 9, 1)))
    other = ledger_booking(resident, room, date(2026, 10, 2), at=tokyo(date(2026, 8, 1)), method="card")
    db.session.add(Refund(payment_id=other.payment.id, amount=2800, partial=False, reason="policy",
                          state="pending", created_at=tokyo(date(2026, 9, 2), 10)))
    db.session.commit()

    lead = figures.refund_lead_times(2026)

    assert (sum(m.count for m in lead.months), lead.unknown_start) == (0, 1)
    assert (lead.pending, lead.oldest_pending) == (1, tokyo(date(2026, 9, 2), 10))
    assert figures.refund_lead_times(2026, other_building_room().building_id).pending == 0


# -- the page ---------------------------------------------------------------------------------------

def _table(html: str, caption_id: str) -> str:
    return re.search(rf'<table[^>]*>\s*<caption id="{caption_id}".*?</table>', html, re.S).group(0)


def _svg(html: str, chart_id: str) -> str:
    svg = re.search(rf'<svg[^>]*aria-labelledby="{chart_id}-title {chart_id}-desc".*?</svg>', html, re.S).group(0)
    assert 'role="img"' in svg and f'<title id="{chart_id}-title">' in svg and 'viewBox="0 0 360 ' in svg
    assert 'width="100%"' in svg
    return svg


def test_the_page_draws_each_figure_and_tabulates_the_same_numbers(client, english, finance, room, resident):
    half = ledger_booking(resident, room, date(2027, 1, 12), at=tokyo(date(2027, 1, 10)), method="card")
    ledger_booking(resident, room, date(2027, 1, 13), at=tokyo(date(2027, 1, 10), 13))  # cash, 2,800
    half.state = "cancelled"
    cancelled_at(half, tokyo(date(2027, 1, 11), 9))
    ledger_refund(half, 2800, at=tokyo(date(2027, 1, 11), 12))  # three hours later

    page = client.get(f"/finance/dashboard?month=2027-01&fy=2026&building={room.building_id}")

    assert page.status_code == 200
    html = page.text
    revenue, revenue_table = _svg(html, "revenue-0"), _table(html, "revenue-0-caption")
    assert "<title>2027-01-10: net ¥5,600</title>" in revenue and "<title>2027-01-11: net -¥2,800</title>" in revenue
    assert re.search(r'<th scope="row">2027-01-10</th><td>¥5,600</td><td>¥0</td>\s*<td>¥5,600</td>', revenue_table)
    assert "<td>-¥2,800</td>" in revenue_table and '<th scope="col">Processing fees</th>' in revenue_table
    cashless, yen = _svg(html, "cashless"), _table(html, "cashless-yen-caption")
    assert "Jan: card online 50.0% of the yen" in cashless and "Goal: 100% cashless" in cashless
    assert re.search(r"January 2027</th>\s*<td>¥2,800</td><td>¥0</td><td>¥2,800</td>\s*<td>50.0%</td>", yen)
    assert re.search(r"January 2027</th>\s*<td>1</td><td>0</td><td>1</td>\s*<td>50.0%</td>",
                     _table(html, "cashless-count-caption"))
    occupancy, rooms = _svg(html, "occupancy"), _table(html, "occupancy-caption")
    assert "Music room · Morning: 1 of 28 slots booked" in occupancy  # 31 days less 1-3 January; 13 January
    assert re.search(r"Morning</td>\s*<td>1</td><td>28</td><td>3.6%</td>", rooms)
    lead, lead_table = _svg(html, "lead-time"), _table(html, "lead-time-caption")
    assert "Jan: median 3.0 hours" in lead and "Refunds by hand: 1–2 months" in lead
    assert re.search(r"January 2027</th><td>1</td>\s*<td>3.0 hours</td><td>3.0 hours</td>", lead_table)
    assert "No refund is waiting now." in html
    for caption in re.findall(r'<caption id="([^"]+)"', html):  # every table scrolls inside a named region
        assert f'role="region" aria-labelledby="{caption}"' in html
    assert len(re.findall(r'<th scope="(?:col|row)"', html)) > 40


def test_the_page_says_so_when_there_is_no_data(client, english, finance):
    html = client.get("/finance/dashboard?month=2027-01&fy=2026").text

    assert "No money moved from 2027-01-01 to 2027-01-31." in html
    assert "No fee was collected in FY2026." in html
    assert "No refund went back in FY2026." in html
    assert "No room is in use." in html
    assert "<svg" not in html


def test_the_defaults_are_the_last_30_days_this_fiscal_year_and_every_building(client, finance, room, resident):
    ledger_booking(resident, room, date(2027, 2, 10), at=tokyo(date(2027, 3, 2), 0, 0))  # 29 days before
    ledger_booking(resident, room, date(2027, 2, 11), at=tokyo(date(2027, 3, 1), 23, 59))  # 30 days before

    with frozen(tokyo(date(2027, 3, 31), 23, 59), client, finance):
        html = client.get("/finance/dashboard").text

    assert "2027-03-02 to 2027-03-31" in html
    assert '<th scope="row">2027-03-02</th>' in html and "2027-03-01</th>" not in html
    assert "Cashless share by month, FY2026" in html  # 31 March is still FY2026
    assert "Occupancy by building, March 2027" in html


@pytest.mark.parametrize(("query", "message"), [
    ("month=2027-13", "Enter a month as YYYY-MM"),
    ("month=abc", "Enter a month as YYYY-MM"),
    ("month=2027-1", "Enter a month as YYYY-MM"),
    ("month=1999-12", "Enter a month as YYYY-MM"),
    ("month=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%97-01", "Enter a month as YYYY-MM"),  # full-width digits
    ("month=" + "2" * 5000, "Enter a month as YYYY-MM"),
    ("fy=abc", "Enter a fiscal year as four digits"),
    ("fy=99999", "Enter a fiscal year as four digits"),
    ("fy=-1", "Enter a fiscal year as four digits"),
    ("fy=1999", "Enter a fiscal year as four digits"),
    ("building=abc", "Choose a building from the list."),
    ("building=999999999999999999999", "Choose a building from the list."),
    ("building=1.5", "Choose a building from the list."),
])
def test_a_bad_query_is_said_and_the_defaults_are_shown(client, finance, room, query, message):
    with frozen(tokyo(date(2027, 1, 15)), client, finance):
        page = client.get(f"/finance/dashboard?{query}")

    assert page.status_code == 422
    assert message in page.text and 'role="alert"' in page.text and 'aria-invalid="true"' in page.text
    assert "Cashless share by month" in page.text and "Occupancy by" in page.text  # the defaults, shown


def test_a_building_that_exists_narrows_every_figure(client, english, finance, room, resident):
    north = other_building_room()
    ledger_booking(resident, north, date(2027, 2, 10), at=tokyo(date(2027, 1, 20)), method="card")
    ledger_booking(resident, room, date(2027, 2, 10), at=tokyo(date(2027, 1, 20)))

    html = client.get(f"/finance/dashboard?month=2027-01&fy=2026&building={north.building_id}").text

    assert "North Hall: revenue per day" in html and "Test Hall: revenue per day" not in html
    assert re.search(r"January 2027</th>\s*<td>¥2,800</td><td>¥0</td><td>¥0</td>\s*<td>100.0%</td>", html)
    assert "Occupancy by room and division, January 2027" in html and "Music room" not in html


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(month=st.text(max_size=10), fy=st.text(max_size=6), building=st.text(max_size=4))
def test_any_query_gets_the_page_or_422(client, finance, room, month, fy, building):
    page = client.get("/finance/dashboard", query_string={"month": month, "fy": fy, "building": building})

    assert page.status_code in (200, 422)


@pytest.mark.parametrize(("role", "status"), [(Role.RESIDENT, 403), (Role.STAFF, 403), (Role.ADMIN, 200)])
def test_only_finance_and_admin_see_it(client, make_user, login_as, role, status):
    login_as(make_user(role=role))
    assert client.get("/finance/dashboard").status_code == status


def test_signed_out_is_sent_to_log_in(client):
    assert client.get("/finance/dashboard").status_code == 302

