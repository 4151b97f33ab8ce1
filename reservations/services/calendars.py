"""The staff calendars: one building's day (rooms by their divisions or hours) and one room's week.

A constant number of queries whatever the number of rooms or bookings: the rooms with their
divisions and closures (one joined query), then the bookings of the span, each with its booker's name and
its payment's state as scalar subqueries (an index lookup each, by primary key and by booking id). Not
joined: the planner cannot bound `end_at > start` on the (room_id, end_at, start_at) index, overestimates
the span's bookings a hundredfold, and hashes every payment and user of the ward to join them (a building's
day with 1,000,000 bookings: 25 ms, against 2 ms; bench/calendar_pages.py). The entries are what staff
act on, so cancelled and no-show bookings stay visible beside the live ones; only a hold that ran out (it
blocks nobody) is left out.
"""
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import joinedload, load_only, selectinload

from ..extensions import db
from ..i18n import lazy_gettext as _l
from ..models import Booking, BookingKind, BookingState, Building, Letting, Payment, PaymentState, Room, User
from ..timeutil import now_utc
from .availability import day_bounds, room_units
from .rules import closure_reason

# What staff read on an entry, and its colour class: told apart by text, not only by colour.
ENTRY_STATES = {
    "held": _l("Held, paying now"),
    "awaiting": _l("Awaiting payment"),
    "paid": _l("Paid"),
    "counter_unpaid": _l("Unpaid, at the counter"),
    "confirmed": _l("Confirmed, no fee"),
    "blocked": _l("Blocked"),
    "cancelled": _l("Cancelled"),
    "no_show": _l("No-show"),
    "used": _l("Used"),
}
# The states in which an entry occupies its slot (the others leave it free to book again).
OCCUPYING = frozenset({"held", "awaiting", "paid", "counter_unpaid", "confirmed", "blocked"})
CHANNELS = {"online": _l("Online"), "counter": _l("Counter")}
WEEK_DAYS = 7


@dataclass
class Entry:
    booking: Booking
    state: str  # a key of ENTRY_STATES
    who: str | None = None  # the booker's name (a block has none)

    @property
    def label(self) -> str:
        return str(ENTRY_STATES[self.state])

    @property
    def channel(self) -> str:
        return str(CHANNELS.get(self.booking.channel, self.booking.channel))

    @property
    def is_block(self) -> bool:
        return self.booking.is_block


@dataclass
class Cell:
    code: str  # the division code, or "HH:MM" for an hour
    start_at: datetime
    end_at: datetime
    entries: list[Entry] = field(default_factory=list)

    @property
    def taken(self) -> bool:
        return any(e.state in OCCUPYING for e in self.entries)


@dataclass
class RoomDay:
    room: Room
    day: date
    closure: str | None
    cells: list[Cell]
    # A free cell may be booked or blocked at the counter: open, and not yet over.
    bookable_from: datetime | None = None

    def can_book(self, cell: Cell) -> bool:
        return (self.closure is None and not cell.taken and self.bookable_from is not None
                and cell.end_at > self.bookable_from)


UNREAD = object()  # entry_state's payment_state when the caller has not read it


def entry_state(booking: Booking, now: datetime, payment_state=UNREAD) -> str | None:
    """How staff see a booking on the calendar, or None for one that blocks nobody (a hold that ran out).
    `payment_state`: its payment's state (None: it has none), when the caller read it with the booking; else
    booking.payment is read."""
    counter = booking.channel == "counter"
    if booking.kind == BookingKind.BLOCK:
        if booking.state == BookingState.CONFIRMED or booking.hold_is_live(now):
            return "blocked"
        if booking.state == BookingState.CANCELLED:
            return "cancelled"
        return None
    if booking.state == BookingState.HELD:
        if not booking.hold_is_live(now):
            return None
        if booking.pay_mode == "deadline":
            return "counter_unpaid" if counter else "awaiting"
        return "held"
    if booking.state == BookingState.CONFIRMED:
        if payment_state is UNREAD:
            payment_state = booking.payment.state if booking.payment is not None else None
        if payment_state == PaymentState.CAPTURED:
            return "paid"
        if booking.price == 0:
            return "confirmed"
        # Confirmed with a fee and nothing taken: at the counter, staff take it on the day; online,
        # the card was authorised and the capture is on its way.
        return "counter_unpaid" if counter else "awaiting"
    return {BookingState.CANCELLED: "cancelled", BookingState.NO_SHOW: "no_show",
            BookingState.COMPLETED: "used"}.get(booking.state)


def building_rooms(building: Building) -> list[Room]:
    """The building's active rooms with their divisions and closures, in one statement (a room has a handful
    of each, so the joined rows stay few)."""
    return list(db.session.scalars(
        select(Room).where(Room.building_id == building.id, Room.active.is_(True)).order_by(Room.id)
        .options(joinedload(Room.divisions), joinedload(Room.closures))).unique())


# The columns of a booking that a calendar cell (staff/_calendar_cell.html) and entry_state read.
ENTRY_COLUMNS = (Booking.room_id, Booking.user_id, Booking.start_at, Booking.end_at, Booking.state, Booking.kind,
                 Booking.channel, Booking.pay_mode, Booking.hold_expires_at, Booking.price, Booking.note)


_BOOKER_NAME = select(User.name).where(User.id == Booking.user_id).scalar_subquery().label("who")
_PAYMENT_STATE = select(Payment.state).where(Payment.booking_id == Booking.id).scalar_subquery().label("payment_state")


def _entries(room_ids: list[int], start: datetime, end: datetime, now: datetime) -> dict[int, list[Entry]]:
    """The calendar entries of these rooms between start and end, by room: one query for them all."""
    by_room: dict[int, list[Entry]] = {room_id: [] for room_id in room_ids}
    if not room_ids:
        return by_room
    # Of each booking only what a cell shows and entry_state reads, and its booker's name and its payment's
    # state as scalar subqueries by their keys, in the same statement: a building's day lists every booking of
    # its rooms, and each column of each row costs more than the cell around it. Not joined in: PostgreSQL
    # cannot tell how few bookings a day's span holds (it guessed 3,205 for 78 in bench/calendar_pages.py) and
    # hash-joined the whole payments table.
    rows = db.session.execute(
        select(Booking, _BOOKER_NAME, _PAYMENT_STATE)
        .where(Booking.room_id.in_(room_ids), Booking.start_at < end, Booking.end_at > start,
               Booking.state != BookingState.EXPIRED)
        .order_by(Booking.start_at, Booking.id).options(load_only(*ENTRY_COLUMNS))).all()
    for booking, who, payment_state in rows:
        state = entry_state(booking, now, payment_state)
        if state is not None:
            by_room[booking.room_id].append(Entry(booking, state, who))
    return by_room


def _room_day(room: Room, day: date, entries: list[Entry], now: datetime) -> RoomDay:
    cells = [Cell(code, s, e, [x for x in entries if x.booking.start_at < e and x.booking.end_at > s])
             for code, s, e in room_units(room, day)]
    return RoomDay(room, day, closure_reason(room, day), cells, bookable_from=now)


def building_day(building: Building, day: date, *, now: datetime | None = None) -> list[RoomDay]:
    now = now or now_utc()
    rooms = building_rooms(building)
    start, end = day_bounds(day)
    by_room = _entries([r.id for r in rooms], start, end, now)
    return [_room_day(room, day, by_room[room.id], now) for room in rooms]


def room_week(room: Room, start_day: date, *, now: datetime | None = None) -> list[RoomDay]:
    """The room's seven days from `start_day`, each by its divisions or hours, with who holds each."""
    now = now or now_utc()
    room = db.session.scalars(
        select(Room).where(Room.id == room.id)
        .options(selectinload(Room.divisions), selectinload(Room.closures),
                 joinedload(Room.building))).one()
    days = [start_day + timedelta(days=n) for n in range(WEEK_DAYS)]
    entries = _entries([room.id], day_bounds(days[0])[0], day_bounds(days[-1])[1], now)[room.id]
    week = []
    for day in days:
        start, end = day_bounds(day)
        week.append(_room_day(room, day, [e for e in entries if e.booking.start_at < end and e.booking.end_at > start],
                              now))
    return week


def counter_args(room: Room, day: date, cell: Cell) -> dict:
    """The query of the counter's "book" and "block" pages for a free cell: the room, day and division or start."""
    args = {"room_id": room.id, "date": day.isoformat()}
    if room.letting == Letting.DIVISION:
        args["division"] = cell.code
    else:
        args["start"] = cell.code
    return args
