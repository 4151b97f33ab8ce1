import enum
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import now_utc
from .audit import record
from .facility import Room
from .types import UTCDateTime
from .user import User


class BookingState(enum.StrEnum):
    HELD = "held"  # waiting for payment until hold_expires_at
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # a hold that ran out
    COMPLETED = "completed"
    NO_SHOW = "no_show"


# The states that occupy the room. The database refuses two overlapping rows in
# these states for one room (see the first migration): an exclusion constraint on
# PostgreSQL, a trigger on SQLite. A held row past its expiry still counts there,
# so the insert path retires such holds first (services.booking.place_hold).
ACTIVE_STATES = (BookingState.HELD, BookingState.CONFIRMED)

TRANSITIONS: dict[BookingState, frozenset[BookingState]] = {
    BookingState.HELD: frozenset({BookingState.CONFIRMED, BookingState.CANCELLED, BookingState.EXPIRED}),
    BookingState.CONFIRMED: frozenset({BookingState.CANCELLED, BookingState.COMPLETED, BookingState.NO_SHOW}),
    BookingState.CANCELLED: frozenset(),
    # A payment that arrives after its hold ran out still confirms, if the slot is free.
    BookingState.EXPIRED: frozenset({BookingState.CONFIRMED}),
    BookingState.COMPLETED: frozenset(),
    BookingState.NO_SHOW: frozenset(),
}


class BookingKind(enum.StrEnum):
    BOOKING = "booking"  # a resident's or group's use of the room
    BLOCK = "block"  # staff keep the room for maintenance or official use: no user, no fee


class IllegalTransition(Exception):
    def __init__(self, booking_id: int | None, current: str, target: str):
        super().__init__(f"booking {booking_id}: {current} -> {target} is not allowed")
        self.current, self.target = current, target


class Booking(db.Model):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("end_at > start_at", name="range"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint(
            "state IN ('held','confirmed','cancelled','expired','completed','no_show')", name="state"
        ),
        CheckConstraint("state <> 'held' OR hold_expires_at IS NOT NULL", name="hold_has_expiry"),
        CheckConstraint("kind IN ('booking','block')", name="kind"),
        CheckConstraint("pay_mode IN ('now','deadline')", name="pay_mode"),
        CheckConstraint("reminders_sent BETWEEN 0 AND 2", name="reminders_sent"),
        # Availability and overlap checks (see migration 0006), and the expiry job's scan.
        Index("ix_bookings_room_end_start", "room_id", "end_at", "start_at"),
        Index("ix_bookings_state_hold_expires_at", "state", "hold_expires_at"),
        Index("ix_bookings_user_state", "user_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=BookingState.HELD)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The price it was sold at, in yen, tax included, and how it was made up.
    price: Mapped[int]
    price_detail: Mapped[dict] = mapped_column(JSON, default=dict)
    residency: Mapped[str] = mapped_column(String(16))
    division_codes: Mapped[str | None] = mapped_column(String(200))  # "MORNING,AFTERNOON"
    channel: Mapped[str] = mapped_column(String(16), default="online")  # online | counter
    # A block (BookingKind.BLOCK) occupies the room under the same overlap rule; its user is the staff member.
    kind: Mapped[str] = mapped_column(String(16), default=BookingKind.BOOKING, server_default="booking")
    # While held: "now" is the short hold of checkout; "deadline" is reserved and payable until
    # hold_expires_at, the payment deadline (services/deadline.py). Either way an unpaid booking past
    # hold_expires_at occupies nothing (active_clause), whether or not a job has run.
    pay_mode: Mapped[str] = mapped_column(String(16), default="now", server_default="now")
    reminders_sent: Mapped[int] = mapped_column(default=0, server_default="0")
    # Staff's internal note (a block's purpose, a counter remark); never shown to the resident.
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Booked for a registered group by one of its members (services/groups.py): the group's fee class applies.
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    user: Mapped[User] = relationship()
    room: Mapped[Room] = relationship()
    group: Mapped["Group | None"] = relationship()  # noqa: F821 (models/groups.py)
    # An exemption (減免) applied for on this booking, if any (models/groups.py).
    exemption: Mapped["Exemption | None"] = relationship(back_populates="booking", uselist=False)  # noqa: F821

    @property
    def is_block(self) -> bool:
        return self.kind == BookingKind.BLOCK

    @property
    def divisions(self) -> list[str]:
        return self.division_codes.split(",") if self.division_codes else []

    def hold_is_live(self, now: datetime) -> bool:
        """Held and not yet past its expiry: the slot is still this resident's to pay for."""
        return self.state == BookingState.HELD and self.hold_expires_at > now

    def is_active(self, now: datetime | None = None) -> bool:
        """Occupies the room: confirmed, or a live hold."""
        return self.state == BookingState.CONFIRMED or self.hold_is_live(now or now_utc())

    def transition(self, target: BookingState, *, actor_id: int | None = None, reason: str = "") -> None:
        """The only way a booking changes state; an illegal move raises IllegalTransition."""
        current = BookingState(self.state)
        if target not in TRANSITIONS[current]:
            raise IllegalTransition(self.id, current, target)
        self.state = target
        record("booking", self.id, f"{current}->{target}", actor_id=actor_id, reason=reason)
