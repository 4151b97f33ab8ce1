"""Calendar rules of a room: holidays, closures, the booking window and slots."""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import jpholiday
from flask import current_app
from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session, joinedload

from ..extensions import db
from ..models import CatalogVersion, Closure, ClosureKind, Letting, LotteryRound, LotteryRoundRoom, Room, RoundState
from ..timeutil import TOKYO, at_tokyo, shift_months
from .errors import BookingError


def is_holiday(day: date) -> bool:
    """Saturdays, Sundays and Japanese public holidays take the holiday fee."""
    return day.weekday() >= 5 or jpholiday.is_holiday(day)


def is_year_end(day: date) -> bool:
    """The year-end break, 29 December to 3 January."""
    return (day.month == 12 and day.day >= 29) or (day.month == 1 and day.day <= 3)


def _closure_applies(closure: Closure, day: date) -> bool:
    if closure.kind == ClosureKind.WEEKLY:
        return day.weekday() == closure.weekday
    if closure.kind == ClosureKind.MONTHLY:
        return day.weekday() == closure.weekday and (day.day - 1) // 7 + 1 == closure.nth
    return closure.start_date <= day <= closure.end_date


def closure_reason(room: Room, day: date) -> str | None:
    """Why the room is closed on `day` (a business date in Tokyo), or None."""
    if room.closes_year_end and is_year_end(day):
        return "year_end"
    for closure in room.closures:
        if _closure_applies(closure, day):
            return closure.reason or closure.kind
    return None


def window_opens_at(room: Room, day: date) -> datetime:
    """When online booking opens for slots on `day`.

    The month of `day` opens `window_months` earlier, on `window_open_day` at
    `window_open_time` Tokyo time: with 2 months, 1st, 09:00, all of March
    opens on 1 January at 09:00.
    """
    # window_open_day is at most 28 (a CHECK), so no month is too short for it.
    opening_day = shift_months(day.replace(day=room.window_open_day), -room.window_months)
    return at_tokyo(opening_day, room.window_open_time)


# What the rules read of a room, loaded with it in one statement: its building, divisions and closures
# (`select(Room).options(*ROOM_RULES)`, then `.unique()`), instead of a lazy load of each on first use.
ROOM_RULES = (joinedload(Room.building), joinedload(Room.divisions), joinedload(Room.closures))


def room_with_rules(room_id: int, *, fresh: bool = False, also=()) -> Room | None:
    """The room with what its rules read (and the loader options `also`), in one statement; `fresh` re-reads
    a room already in the session (under a lock taken since it was read)."""
    return db.session.scalars(room_statement(fresh, also), {"room_id": room_id}).unique().one_or_none()


# What a kept room is loaded with: the rules, and its own refund tiers and its kind's (its refund schedule).
KEPT_ROOM = (joinedload(Room.policy_tiers),)
KEPT_ROOMS_MAX = 5000  # rooms one process keeps; a ward has a few hundred


def catalog_token_clause():
    """The catalog's version token (models.CatalogVersion) as a scalar subquery, NULL before the first write."""
    return select(CatalogVersion.token).where(CatalogVersion.id == 1).scalar_subquery()


def catalog_token() -> str | None:
    return db.session.scalar(_catalog_token_statement())


@lru_cache(maxsize=1)
def _catalog_token_statement():
    return select(catalog_token_clause())  # built once: each reserve asks it


def cached_room_with_rules(room_id: int, token: str | None) -> Room | None:
    """The room with its rules and refund tiers (KEPT_ROOM), as room_with_rules reads it, kept by this app while
    the catalog's token stays `token`, which the caller read in this transaction before calling.

    Building the room's objects from a joined statement is most of what a booking request spends on the room.
    Every write to the tables it is built from gives the catalog a new token (migration 0014), so a kept room is
    the room as of the token: read after the hold's locks (the room's rules change under the room's lock), it is
    the room as it is. The token is read before the room, so a room changed between the two is kept under the
    older token and read again next time, never the reverse.

    A kept room is read in a session of its own on the request's connection (the same transaction) and closed
    at once: detached, with everything KEPT_ROOM loads, read by many requests and written by none. Only the
    resident's review and reserve requests use it."""
    kept = _kept_rooms()
    hit = kept.get(room_id) if token is not None else None
    if hit is not None and hit[0] == token:
        return hit[1]
    with Session(bind=db.session.connection(), autoflush=False) as own:
        room = own.scalars(room_statement(False, KEPT_ROOM), {"room_id": room_id}).unique().one_or_none()
    if token is not None and room is not None:
        if len(kept) >= KEPT_ROOMS_MAX:
            kept.clear()
        kept[room_id] = (token, room)
    return room


def kept_room(room_id: int) -> tuple[str, Room] | None:
    """The token and the room this app keeps for `room_id` (cached_room_with_rules), without asking the
    database: a guess until it is checked against the token as it is now (booking.place_hold's room_token)."""
    return _kept_rooms().get(room_id)


def _kept_rooms() -> dict[int, tuple[str, Room]]:
    """This app's kept rooms: room id -> (the catalog token it was read under, the detached room)."""
    return current_app.extensions.setdefault("kept_rooms", {})


@lru_cache(maxsize=16)
def room_statement(fresh: bool, also: tuple = ()):
    """room_with_rules' statement, built once per shape: a statement object keeps its cache key, so asking it
    again costs SQLAlchemy neither building it nor walking it (callers pass module constants as `also`). The
    room's id is :room_id."""
    query = select(Room).where(Room.id == bindparam("room_id")).options(*ROOM_RULES, *also)
    return query.execution_options(populate_existing=True) if fresh else query


def lottery_hides(room_id: int, day: date, now: datetime) -> bool:
    """Whether the day is kept from first-come booking: a round lets it and has not been released.

    By the clock as well as the state: at release_at it opens, whether or not the job has run."""
    return bool(db.session.scalar(select(lottery_hides_month(room_id, day.replace(day=1), now))))


def lottery_hides_month(room_id, month, now):
    """lottery_hides for the days of the month beginning `month`, as SQL (an EXISTS) for a query that asks it
    beside other things; the arguments are values, or bound parameters of a statement built once."""
    return exists(
        select(LotteryRoundRoom.round_id).join(LotteryRound)
        .where(LotteryRoundRoom.room_id == room_id, LotteryRoundRoom.target_month == month,
               LotteryRound.state != RoundState.RELEASED, LotteryRound.release_at > now))


def round_hides(round_: LotteryRound, now: datetime) -> bool:
    """Whether `round_` still keeps its rooms' days of its month from first-come booking (lottery_hides; the
    calendars ask it of rounds they read in one query)."""
    return round_.state != RoundState.RELEASED and now < round_.release_at


def window_closes_at(room: Room, start_at: datetime) -> datetime:
    """Online booking (and free cancellation) for a slot ends this long before it starts."""
    return start_at - timedelta(hours=room.close_hours_before)


@dataclass(frozen=True)
class Slot:
    """A span of a room on one business day, made of divisions or of hours."""

    day: date
    start_at: datetime
    end_at: datetime
    division_codes: tuple[str, ...] = ()

    @property
    def minutes(self) -> int:
        return int((self.end_at - self.start_at).total_seconds() // 60)


def division_slot(room: Room, day: date, codes: list[str]) -> Slot:
    """One division or several consecutive ones, e.g. ["MORNING", "AFTERNOON"]."""
    if room.letting != Letting.DIVISION or not codes:
        raise BookingError("invalid_divisions")
    by_code = {d.code: d for d in room.divisions}
    if any(code not in by_code for code in codes) or len(set(codes)) != len(codes):
        raise BookingError("invalid_divisions")
    chosen = sorted((by_code[c] for c in codes), key=lambda d: d.position)
    order = [d.code for d in room.divisions]
    first = order.index(chosen[0].code)
    if [d.code for d in chosen] != order[first:first + len(chosen)]:
        raise BookingError("invalid_divisions")
    return Slot(
        day=day,
        start_at=at_tokyo(day, chosen[0].start_time),
        end_at=at_tokyo(day, chosen[-1].end_time),
        division_codes=tuple(d.code for d in chosen),
    )


def hourly_slot(room: Room, day: date, start: time, minutes: int) -> Slot:
    """A span of a room let by the hour: inside opening hours, on the step, within min..max."""
    if room.letting != Letting.HOURLY:
        raise BookingError("invalid_duration")
    if room.open_time is None or room.close_time is None:
        raise BookingError("not_bookable")  # imported with a rate but no opening hours yet
    if minutes <= 0 or minutes % room.step_minutes:
        raise BookingError("invalid_duration")
    if (room.min_minutes and minutes < room.min_minutes) or (room.max_minutes and minutes > room.max_minutes):
        raise BookingError("invalid_duration")
    start_at = at_tokyo(day, start)
    end_at = start_at + timedelta(minutes=minutes)
    opens, closes = at_tokyo(day, room.open_time), at_tokyo(day, room.close_time)
    if start_at < opens or end_at > closes:
        raise BookingError("outside_hours")
    if ((start.hour * 60 + start.minute) - (room.open_time.hour * 60 + room.open_time.minute)) % room.step_minutes:
        raise BookingError("outside_hours")
    return Slot(day=day, start_at=start_at, end_at=end_at)


def check_bookable(room: Room, slot: Slot, now: datetime, *, hidden_by_lottery: bool | None = None) -> None:
    """Raise BookingError unless a resident may book `slot` online at `now`.

    `hidden_by_lottery` is lottery_hides already read (place_hold reads it with the resident's standing in one
    statement); None asks the database."""
    if not room.bookable_online:
        raise BookingError("not_bookable")
    if slot.start_at <= now:
        raise BookingError("past")
    if closure_reason(room, slot.day):
        raise BookingError("closed")
    if lottery_hides(room.id, slot.day, now) if hidden_by_lottery is None else hidden_by_lottery:
        raise BookingError("lottery")
    if now < window_opens_at(room, slot.day):
        raise BookingError("not_open_yet")
    if now > window_closes_at(room, slot.start_at):
        raise BookingError("window_closed")


def hourly_starts(room: Room, day: date) -> list[time]:
    """Every start time a room let by the hour offers on `day` (none until it has opening hours)."""
    if room.open_time is None or room.close_time is None:
        return []
    opens = datetime.combine(day, room.open_time, tzinfo=TOKYO)
    closes = datetime.combine(day, room.close_time, tzinfo=TOKYO)
    starts, t = [], opens
    while t + timedelta(minutes=room.step_minutes) <= closes:
        starts.append(t.time())
        t += timedelta(minutes=room.step_minutes)
    return starts
