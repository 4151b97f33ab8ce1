"""Reading the audit trail: what happened to a booking and its payment, in order, with who did it;
a resident's safe view of their own booking's history; and the staff's search, scoped by building.

The trail is append-only (migration 0007's triggers); nothing here writes to it.
"""
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, case, func, null, or_, select
from sqlalchemy.orm import joinedload

from ..backoffice import building_scope
from ..extensions import db
from ..models import (
    AttentionCase,
    AuditEntry,
    Booking,
    Closure,
    Division,
    LotteryApplication,
    LotteryRoundRoom,
    Payment,
    Refund,
    Room,
    User,
)
from .availability import day_bounds

SEARCH_LIMIT = 200

# What a resident may see of their booking's history: the booking's own states, and the money.
# Anything else (a case staff opened, a dispute's progress, a note) is staff-internal.
RESIDENT_ACTIONS = {
    ("booking", "held"), ("booking", "confirmed"), ("booking", "cancelled for a ward reason"),
    ("booking", "cancelled by staff"), ("booking", "booked at the counter"), ("booking", "moved"),
    ("booking", "payment reminder sent"),
    ("payment", "paid at the counter"), ("payment", "refund requested"), ("payment", "refund paid out at the counter"),
    ("payment", "refund succeeded"), ("payment", "refund failed"), ("payment", "refund recorded from the provider"),
    ("payment", "pending->authorized"), ("payment", "pending->captured"), ("payment", "authorized->captured"),
    ("payment", "new->captured"), ("payment", "new->authorized"), ("payment", "failed->authorized"),
    ("payment", "failed->captured"), ("payment", "pending->failed"), ("payment", "authorized->cancelled"),
}


def _about_booking(booking: Booking):
    """The entries about the booking, its payment (its refunds and disputes are written there), refunds and cases."""
    about = [and_(AuditEntry.subject == "booking", AuditEntry.subject_id == booking.id)]
    payment_ids = select(Payment.id).where(Payment.booking_id == booking.id)
    about.append(and_(AuditEntry.subject == "payment", AuditEntry.subject_id.in_(payment_ids)))
    refund_ids = (select(Refund.id).join(Payment, Refund.payment_id == Payment.id)
                  .where(Payment.booking_id == booking.id))
    about.append(and_(AuditEntry.subject == "refund", AuditEntry.subject_id.in_(refund_ids)))
    case_ids = select(AttentionCase.id).where(AttentionCase.booking_id == booking.id)
    about.append(and_(AuditEntry.subject == "attention_case", AuditEntry.subject_id.in_(case_ids)))
    return or_(*about)


def of_booking(booking: Booking) -> list[AuditEntry]:
    """Everything about the booking (for staff), oldest first: one query."""
    return list(db.session.scalars(
        select(AuditEntry).where(_about_booking(booking)).order_by(AuditEntry.at, AuditEntry.id)
        .options(joinedload(AuditEntry.actor))))


@dataclass(frozen=True)
class ResidentEntry:
    """One line of a resident's own history: when, what, and by whom in the resident's words (no names, no notes)."""

    at: datetime
    subject: str
    action: str
    by: str | None  # "you", "facility", or None (the system)


def for_resident(booking: Booking) -> list[ResidentEntry]:
    """The booking's history as its resident may see it: time and action only, from a fixed list of actions.
    Staff are "the facility"; no note, reason or staff name ever leaves this function."""
    out = []
    for entry in db.session.scalars(
            select(AuditEntry).where(_about_booking(booking)).order_by(AuditEntry.at, AuditEntry.id)):
        if not _resident_may_see(entry):
            continue
        if entry.actor_id is None:
            by = None
        else:
            by = "you" if entry.actor_id == booking.user_id else "facility"
        out.append(ResidentEntry(entry.at, entry.subject, entry.action, by))
    return out


def _resident_may_see(entry: AuditEntry) -> bool:
    if entry.subject == "booking" and "->" in entry.action:
        return True
    return (entry.subject, entry.action) in RESIDENT_ACTIONS


# -- search -------------------------------------------------------------------------------------

@dataclass
class Filters:
    booking_id: int | None = None
    user_id: int | None = None  # the subject: the user, or the user's bookings and payments
    actor_id: int | None = None
    first: date | None = None
    last: date | None = None  # inclusive


def entry_building():
    """The building an entry is about, as SQL: through its booking, payment, refund, case, room or closure;
    NULL for an entry about no building (a user account): those only the unscoped see."""
    subject_id = AuditEntry.subject_id

    def building_of(statement):
        return statement.correlate(AuditEntry).scalar_subquery()

    by_booking = building_of(select(Room.building_id).join(Booking, Booking.room_id == Room.id)
                             .where(Booking.id == subject_id))
    by_payment = building_of(select(Room.building_id).join(Booking, Booking.room_id == Room.id)
                             .join(Payment, Payment.booking_id == Booking.id).where(Payment.id == subject_id))
    by_refund = building_of(select(Room.building_id).join(Booking, Booking.room_id == Room.id)
                            .join(Payment, Payment.booking_id == Booking.id)
                            .join(Refund, Refund.payment_id == Payment.id).where(Refund.id == subject_id))
    by_closure = building_of(select(Room.building_id).join(Closure, Closure.room_id == Room.id)
                             .where(Closure.id == subject_id))
    by_room = building_of(select(Room.building_id).where(Room.id == subject_id))
    # A removed division's row is gone: its entries are then found by the unscoped only.
    by_division = building_of(select(Room.building_id).join(Division, Division.room_id == Room.id)
                              .where(Division.id == subject_id))
    by_case = building_of(select(AttentionCase.building_id).where(AttentionCase.id == subject_id))
    # A lottery round (or one of its applications) belongs to its first room's building.
    by_round = building_of(select(func.min(Room.building_id))
                           .join(LotteryRoundRoom, LotteryRoundRoom.room_id == Room.id)
                           .where(LotteryRoundRoom.round_id == subject_id))
    by_application = building_of(select(func.min(Room.building_id))
                                 .join(LotteryRoundRoom, LotteryRoundRoom.room_id == Room.id)
                                 .join(LotteryApplication, LotteryApplication.round_id == LotteryRoundRoom.round_id)
                                 .where(LotteryApplication.id == subject_id))
    return case(
        (AuditEntry.subject == "booking", by_booking),
        (AuditEntry.subject == "payment", by_payment),
        (AuditEntry.subject == "refund", by_refund),
        (AuditEntry.subject == "closure", by_closure),
        (AuditEntry.subject == "room", by_room),
        (AuditEntry.subject == "refund_tier", by_room),  # a room's tiers are replaced as one set, under its id
        (AuditEntry.subject == "division", by_division),
        (AuditEntry.subject == "attention_case", by_case),
        (AuditEntry.subject == "lottery_rule", by_room),  # a room's standing lottery rule, under the room's id
        (AuditEntry.subject == "lottery_round", by_round),
        (AuditEntry.subject == "lottery_application", by_application),
        (AuditEntry.subject == "building", subject_id),
        else_=null(),
    )


def search(filters: Filters, user: User, *, limit: int = SEARCH_LIMIT) -> list[AuditEntry]:
    """The entries matching every filter given that `user` may see, newest first, at most `limit`."""
    statement = select(AuditEntry)
    if filters.booking_id is not None:
        booking = db.session.get(Booking, filters.booking_id)
        if booking is None:
            return []
        statement = statement.where(_about_booking(booking))
    if filters.user_id is not None:
        their_bookings = select(Booking.id).where(Booking.user_id == filters.user_id)
        their_payments = select(Payment.id).join(Booking, Payment.booking_id == Booking.id) \
            .where(Booking.user_id == filters.user_id)
        statement = statement.where(or_(
            and_(AuditEntry.subject == "user", AuditEntry.subject_id == filters.user_id),
            and_(AuditEntry.subject == "booking", AuditEntry.subject_id.in_(their_bookings)),
            and_(AuditEntry.subject == "payment", AuditEntry.subject_id.in_(their_payments))))
    if filters.actor_id is not None:
        statement = statement.where(AuditEntry.actor_id == filters.actor_id)
    if filters.first is not None:
        statement = statement.where(AuditEntry.at >= day_bounds(filters.first)[0])
    if filters.last is not None:
        statement = statement.where(AuditEntry.at < day_bounds(filters.last)[1])
    scope = building_scope(user)
    if scope is not None:
        if not scope:
            return []
        statement = statement.where(entry_building().in_(scope))
    return list(db.session.scalars(
        statement.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
        .options(joinedload(AuditEntry.actor))))


def find_user(text: str) -> User | None:
    """A user by id ("42") or e-mail address (any case); None when there is none."""
    text = (text or "").strip()
    if text.isdigit():
        return db.session.get(User, int(text)) if int(text) < 2**31 else None
    return db.session.scalar(select(User).where(User.email == text.lower()))
