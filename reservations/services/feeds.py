"""A room's bookings as an iCal feed, behind a secret address staff can rotate.

Calendar programs cannot log in, so the feed's address is its key: a random
token (secrets.token_urlsafe, 256 bits) stored on the room. Rotating it makes
the old address answer 404 at once. An unknown token is 404 as well, the same
answer as a room that does not exist.

The feed carries what a wall calendar needs and nothing a leaked address should
give away: the time, the state and the booking number, never a resident's name,
address or phone.
"""
import secrets
from datetime import datetime, timedelta

from icalendar import Calendar, Event
from sqlalchemy import select

from ..extensions import db
from ..models import Booking, BookingState, Room, record
from ..timeutil import now_utc
from .booking import active_clause

PAST = timedelta(days=31)  # how far back the feed reaches; forward, every booking there is


def rotate(room: Room, actor_id: int) -> str:
    """A new secret address for the room's feed; the old one stops working. Audited, without the token."""
    had = room.feed_token is not None
    room.feed_token = secrets.token_urlsafe(32)
    record("room", room.id, "feed_rotated" if had else "feed_created", actor_id=actor_id)
    return room.feed_token


def room_for_token(token: str) -> Room | None:
    if not token or len(token) > 64:
        return None
    return db.session.scalar(select(Room).where(Room.feed_token == token))


def room_calendar(room: Room, *, now: datetime | None = None) -> bytes:
    now = now or now_utc()
    bookings = db.session.scalars(
        select(Booking).where(Booking.room_id == room.id, Booking.end_at > now - PAST,
                              active_clause(now) | Booking.state.in_([BookingState.COMPLETED, BookingState.NO_SHOW]))
        .order_by(Booking.start_at))
    cal = Calendar()
    cal.add("prodid", "-//reservations//room feed//JA")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", room.name)
    cal.add("x-wr-timezone", "Asia/Tokyo")
    for booking in bookings:
        event = Event()
        event.add("uid", f"booking-{booking.id}@reservations")
        event.add("dtstamp", now)
        event.add("dtstart", booking.start_at)
        event.add("dtend", booking.end_at)
        state = {BookingState.HELD: "仮予約", BookingState.CONFIRMED: "予約", BookingState.COMPLETED: "利用済み",
                 BookingState.NO_SHOW: "無断キャンセル"}[BookingState(booking.state)]
        event.add("summary", f"{state} #{booking.id}")
        event.add("status", "TENTATIVE" if booking.state == BookingState.HELD else "CONFIRMED")
        cal.add_component(event)
    return cal.to_ical()
