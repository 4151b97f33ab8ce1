"""What residents see: which slots of a room are free, day by day and month by month."""
import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from sqlalchemy import ARRAY, Integer, Row, any_, bindparam, func, select

from ..extensions import db
from ..models import ACTIVE_STATES, Booking, Letting, LotteryRound, LotteryRoundRoom, Room, RoundState
from ..timeutil import at_tokyo, now_utc
from .booking import active_clause
from .rules import closure_reason, hourly_starts, round_hides, window_closes_at, window_opens_at

# The marks residents already know from ward systems. 抽: the day is let by a lottery round (抽選) and is not
# bookable first-come until the round is released (rules.lottery_hides).
FREE, PARTLY, FULL, CLOSED, OUTSIDE, LOTTERY = "○", "△", "×", "休", "—", "抽"


@dataclass(frozen=True)
class Unit:
    """One bookable unit of a day: a division, or one step of an hourly room."""

    code: str  # division code, or "HH:MM" for an hourly step
    start_at: datetime
    end_at: datetime
    status: str  # free | taken | outside | closed | lottery


@dataclass(frozen=True)
class Day:
    day: date
    mark: str
    closure: str | None
    units: list[Unit]
    # The key of the lottery round that keeps the day from first-come booking, when its page is public
    # (a draft round hides the day too, but has no page yet).
    lottery: str | None = None


def room_units(room: Room, day: date) -> list[tuple[str, datetime, datetime]]:
    if room.letting == Letting.DIVISION:
        return [(d.code, at_tokyo(day, d.start_time), at_tokyo(day, d.end_time)) for d in room.divisions]
    step = timedelta(minutes=room.step_minutes)
    return [(t.strftime("%H:%M"), at_tokyo(day, t), at_tokyo(day, t) + step) for t in hourly_starts(room, day)]


def _overlapping_span(dialect: str) -> list:
    """SQL for bookings over [:span_start, :span_end) that may occupy their room (held or confirmed).

    On PostgreSQL also as a range overlap on the active rows, the overlap guard's own terms (the exclusion
    constraint of the first migration, a GiST index on room_id and tstzrange(start_at, end_at) over held and
    confirmed rows): that index finds the span's rows alone, where `start_at < end AND end_at > start` is an
    open-ended range of the (room_id, end_at, start_at) index, every later booking of the room. On the
    Meguro catalog with 1,000,000 bookings, a day of every room: 30 ms -> 2 ms (bench/calendar_pages.py).
    The states are literals, so that the planner can prove the index's predicate in a generic plan too.
    """
    start, end = bindparam("span_start"), bindparam("span_end")
    clauses = [Booking.start_at < end, Booking.end_at > start]
    if dialect == "postgresql":
        clauses += [
            Booking.state.in_(bindparam("active_states", [str(s) for s in ACTIVE_STATES], expanding=True,
                                        literal_execute=True)),
            func.tstzrange(Booking.start_at, Booking.end_at, "[)").op("&&")(
                func.tstzrange(bindparam("range_start", type_=Booking.start_at.type),
                               bindparam("range_end", type_=Booking.end_at.type), "[)")),
        ]
    return clauses


def _in_rooms(column, dialect: str):
    """`column IN :room_ids`; on PostgreSQL as `= ANY(array)`, one parameter however many rooms (a search lists
    every room of the ward: 177 parameters of an IN cost more to send than the rows it finds)."""
    if dialect == "postgresql":
        return column == any_(bindparam("room_ids", type_=ARRAY(Integer)))
    return column.in_(bindparam("room_ids", expanding=True))


# The statements of a calendar's bookings and lottery rounds, built once per dialect with bound parameters:
# building a statement and its cache key costs more than sending it (a search page sent six).
@lru_cache(maxsize=4)
def _occupied_statement(dialect: str):
    return select(Booking.room_id, Booking.start_at, Booking.end_at).where(
        _in_rooms(Booking.room_id, dialect), *_overlapping_span(dialect), active_clause(bindparam("now")))


@lru_cache(maxsize=4)
def _rounds_statement(dialect: str):
    return (select(LotteryRoundRoom.room_id, LotteryRound.key, LotteryRound.state, LotteryRound.release_at)
            .join(LotteryRound)
            .where(_in_rooms(LotteryRoundRoom.room_id, dialect), LotteryRoundRoom.target_month == bindparam("month")))


def _rows(statement, params: dict) -> list[Row]:
    """A Core statement's rows, on the session's connection and fetched at once: none of the ORM's work for each
    row (a search's day over every room of a ward reads hundreds), nor psycopg's fetchone for each. It does not
    autoflush as session.execute does, so what is pending is flushed first."""
    db.session.flush()
    return db.session.connection().execute(statement, params).all()


def _occupied_by_room(
    room_ids: list[int], start: datetime, end: datetime, now: datetime
) -> dict[int, list[tuple[datetime, datetime]]]:
    """The spans that active bookings of these rooms hold between start and end: one query for them all."""
    occupied: dict[int, list[tuple[datetime, datetime]]] = {room_id: [] for room_id in room_ids}
    if not room_ids:
        return occupied
    dialect = db.session.get_bind().dialect.name
    for room_id, s, e in _rows(_occupied_statement(dialect), {
            "room_ids": list(room_ids), "span_start": start, "span_end": end, "range_start": start,
            "range_end": end, "now": now}):
        occupied[room_id].append((s, e))
    return occupied


def _occupied(room: Room, start: datetime, end: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    return _occupied_by_room([room.id], start, end, now)[room.id]


def _hiding_rounds(room_ids: list[int], day: date, now: datetime) -> dict[int, Row]:
    """The lottery rounds that keep these rooms' days of `day`'s month from first-come booking, by room id:
    one query for them all (a room is in at most one round a month). Each is a row of what a day's mark
    reads of its round (key, state, release_at)."""
    if not room_ids:
        return {}
    rows = _rows(_rounds_statement(db.session.get_bind().dialect.name),
                 {"room_ids": list(room_ids), "month": day.replace(day=1)})
    return {row.room_id: row for row in rows if round_hides(row, now)}


def day_bounds(day: date) -> tuple[datetime, datetime]:
    return at_tokyo(day, datetime.min.time()), at_tokyo(day + timedelta(days=1), datetime.min.time())


def _day(room: Room, day: date, occupied, now: datetime, lottery: Row | None = None, *,
         opens: datetime | None = None, spans: list[tuple[str, datetime, datetime]] | None = None) -> Day:
    """`opens` and `spans`, when given, are window_opens_at(room, day) and room_units(room, day), worked out
    once for the rooms of a page that share them."""
    closure = closure_reason(room, day)
    opens = opens or window_opens_at(room, day)
    units = []
    for code, start, end in room_units(room, day) if spans is None else spans:
        if closure:
            status = "closed"
        elif lottery is not None:
            status = "lottery"
        elif now < opens or now > window_closes_at(room, start):
            status = "outside"
        elif any(s < end and e > start for s, e in occupied):
            status = "taken"
        else:
            status = "free"
        units.append(Unit(code, start, end, status))
    statuses = [u.status for u in units if u.status != "outside"]
    if closure:
        mark = CLOSED
    elif lottery is not None:
        mark = LOTTERY
    elif not statuses:
        mark = OUTSIDE
    elif all(s == "free" for s in statuses):
        mark = FREE
    elif "free" in statuses:
        mark = PARTLY
    else:
        mark = FULL
    key = lottery.key if lottery is not None and lottery.state != RoundState.DRAFT else None
    return Day(day=day, mark=mark, closure=closure, units=units, lottery=key)


def day_availability(room: Room, day: date, *, now: datetime | None = None) -> Day:
    now = now or now_utc()
    lottery = _hiding_rounds([room.id], day, now).get(room.id)
    return _day(room, day, _occupied(room, *day_bounds(day), now), now, lottery)


def rooms_day_availability(rooms: list[Room], day: date, *, now: datetime | None = None) -> dict[int, Day]:
    """One day of many rooms (the search page), by room id: one query for the bookings of them all.

    The rooms' divisions and closures should be loaded already (selectinload, or rows as the search page reads
    them: anything with a Room's attributes), so that the marks are computed in Python without a query per room.
    """
    now = now or now_utc()
    room_ids = [room.id for room in rooms]
    occupied = _occupied_by_room(room_ids, *day_bounds(day), now)
    lottery = _hiding_rounds(room_ids, day, now)
    # Most rooms of a ward share their window and their divisions' times: each worked out once for the day.
    opens: dict[tuple, datetime] = {}
    spans: dict[tuple, list[tuple[str, datetime, datetime]]] = {}
    days = {}
    for room in rooms:
        window = (room.window_months, room.window_open_day, room.window_open_time)
        if window not in opens:
            opens[window] = window_opens_at(room, day)
        if room.letting == Letting.DIVISION:
            times = tuple((d.code, d.start_time, d.end_time) for d in room.divisions)
        else:
            times = (room.open_time, room.close_time, room.step_minutes)
        if (room.letting, times) not in spans:
            spans[room.letting, times] = room_units(room, day)
        days[room.id] = _day(room, day, occupied[room.id], now, lottery.get(room.id), opens=opens[window],
                             spans=spans[room.letting, times])
    return days


def month_availability(room: Room, year: int, month: int, *, now: datetime | None = None) -> list[Day]:
    """Every day of a month, with one query for the bookings of the whole month."""
    now = now or now_utc()
    first = date(year, month, 1)
    last = date(year, month, calendar.monthrange(year, month)[1])
    occupied = _occupied(
        room, at_tokyo(first, datetime.min.time()), at_tokyo(last + timedelta(days=1), datetime.min.time()), now
    )
    lottery = _hiding_rounds([room.id], first, now).get(room.id)  # one round lets the whole month, or none
    return [_day(room, first + timedelta(days=i), occupied, now, lottery) for i in range(last.day)]
