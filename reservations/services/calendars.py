"""The staff calendars: one building's day, rooms by their divisions or hours, and who holds each.

A constant number of queries whatever the number of rooms: the rooms with their
divisions and closures (selectinload), then the day's bookings of them all with
their users and payments (one joined query). The entries are what staff act on,
so cancelled and no-show bookings stay visible beside the live ones; only a hold
that ran out (it blocks nobody) is left out.
"""
from dataclasses import dataclass, field
from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from ..extensions import db
from ..models import Booking, BookingState, Building, PaymentState, Room
from ..timeutil import now_utc
from .availability import day_bounds, room_units
from .rules import closure_reason

# What staff read on an entry, and its colour class: told apart by text, not only by colour.
ENTRY_STATES = {
    "held": _l("Held, paying now"),
    "paid": _l("Paid"),
    "awaiting": _l("Awaiting payment"),
    "confirmed": _l("Confirmed, no fee"),
    "cancelled": _l("Cancelled"),
    "no_show": _l("No-show"),
    "used": _l("Used"),
}
CHANNELS = {"online": _l("Online"), "counter": _l("Counter")}


@dataclass
class Entry:
    booking: Booking
    state: str  # a key of ENTRY_STATES

    @property
    def label(self) -> str:
        return str(ENTRY_STATES[self.state])

    @property
    def channel(self) -> str:
        return str(CHANNELS.get(self.booking.channel, self.booking.channel))


@dataclass
class Cell:
    code: str  # the division code, or "HH:MM" for an hour
    start_at: datetime
    end_at: datetime
    entries: list[Entry] = field(default_factory=list)


@dataclass
class RoomDay:
    room: Room
    closure: str | None
    cells: list[Cell]


def entry_state(booking: Booking, now: datetime) -> str | None:
    """How staff see a booking on the calendar, or None for one that blocks nobody (a hold that ran out)."""
    if booking.state == BookingState.HELD:
        return "held" if booking.hold_is_live(now) else None
    if booking.state == BookingState.CONFIRMED:
        payment = booking.payment
        if booking.price == 0:
            return "confirmed"
        return "paid" if payment is not None and payment.state == PaymentState.CAPTURED else "awaiting"
    return {BookingState.CANCELLED: "cancelled", BookingState.NO_SHOW: "no_show",
            BookingState.COMPLETED: "used"}.get(booking.state)


def building_rooms(building: Building) -> list[Room]:
    return list(db.session.scalars(
        select(Room).where(Room.building_id == building.id, Room.active.is_(True)).order_by(Room.id)
        .options(selectinload(Room.divisions), selectinload(Room.closures))))


def building_day(building: Building, day: date, *, now: datetime | None = None) -> list[RoomDay]:
    now = now or now_utc()
    rooms = building_rooms(building)
    start, end = day_bounds(day)
    bookings = db.session.scalars(
        select(Booking).where(Booking.room_id.in_([r.id for r in rooms]), Booking.start_at < end,
                              Booking.end_at > start, Booking.state != BookingState.EXPIRED)
        .order_by(Booking.start_at, Booking.id)
        .options(joinedload(Booking.user), joinedload(Booking.payment))).unique().all() if rooms else []
    by_room: dict[int, list[Entry]] = {r.id: [] for r in rooms}
    for booking in bookings:
        state = entry_state(booking, now)
        if state is not None:
            by_room[booking.room_id].append(Entry(booking, state))
    days = []
    for room in rooms:
        cells = [Cell(code, s, e, [x for x in by_room[room.id] if x.booking.start_at < e and x.booking.end_at > s])
                 for code, s, e in room_units(room, day)]
        days.append(RoomDay(room, closure_reason(room, day), cells))
    return days
