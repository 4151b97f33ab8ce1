"""The booking core: hold, confirm, cancel, expire.

Services flush; the caller (a request or a job) commits. The one exception is
a lost race for a slot: the database aborted the transaction, so place_hold
rolls it back before raising BookingError("slot_taken").
"""
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from flask import current_app
from sqlalchemy import and_, bindparam, event, exists, func, or_, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from ..backoffice import in_scope
from ..extensions import db
from ..models import Booking, BookingState, ExemptionKind, Group, Payment, PaymentState, Room, User, record
from ..timeutil import business_date, now_utc
from .deadline import hold_for
from .errors import BookingError
from .exemptions import attach, eligible_kinds, is_pending
from .groups import fee_residency, may_act_for
from .ledger import lock_days
from .no_shows import suspended_until
from .pricing import quote
from .rules import Slot, catalog_token_clause, check_bookable, lottery_hides_month, room_with_rules

# Namespaces of our advisory locks: pg_advisory_xact_lock(namespace, room_id or user_id).
ROOM_LOCK_NAMESPACE = 4201
USER_LOCK_NAMESPACE = 4202

# SQLSTATEs that mean "someone else got the slot first", never a 500.
_LOST_RACE = {"23P01", "40P01", "40001"}
SQLITE_OVERLAP_MESSAGE = "booking_overlap"


def active_clause(now: datetime):
    """SQL for bookings that occupy a room at `now`; expired holds do not."""
    return or_(
        Booking.state == BookingState.CONFIRMED,
        and_(Booking.state == BookingState.HELD, Booking.hold_expires_at > now),
    )


def lapsed_hold_clause(now: datetime):
    """SQL for holds past their expiry that no job has retired yet."""
    return and_(Booking.state == BookingState.HELD, Booking.hold_expires_at <= now)


def overlapping(room_id: int, start_at: datetime, end_at: datetime):
    return and_(Booking.room_id == room_id, Booking.start_at < end_at, Booking.end_at > start_at)


def counted_against_cap(user_id: int, now: datetime):
    """SQL for a user's bookings that still count against the cap: live holds and future confirmed ones."""
    return and_(Booking.user_id == user_id, active_clause(now), Booking.end_at > now)


def live_hold_clause(user_id: int, now: datetime):
    """SQL for a user's short holds still waiting for their payment (the live-holds cap).

    A booking reserved to be paid by a deadline is held for days: it counts against
    MAX_ACTIVE_BOOKINGS, not against this cap of bookings being paid right now.
    """
    return and_(Booking.user_id == user_id, Booking.state == BookingState.HELD, Booking.hold_expires_at > now,
                Booking.pay_mode == "now")


def _count(*where):
    return select(func.count(Booking.id)).where(*where).scalar_subquery()


@dataclass(frozen=True)
class Standing:
    """What place_hold must know, under its locks, before it writes: read in one statement (`standing`)."""

    suspended_until: datetime | None  # the end of the resident's suspension in force, if any
    active: int  # counted_against_cap (MAX_ACTIVE_BOOKINGS)
    active_in_room: int  # counted_against_cap in this room (Room.max_active_per_user)
    live_holds: int  # live_hold_clause (MAX_LIVE_HOLDS)
    lottery: bool  # rules.lottery_hides
    taken: bool  # an active booking overlaps the slot
    lapsed: bool  # a lapsed hold no job has retired yet overlaps it
    catalog_token: str | None  # rules.catalog_token, as read under the locks


class StaleRoom(Exception):
    """The room a hold was judged on is not the room under the locks: the catalog's token, read with the
    standing, is no longer the one the room was kept under. Raised before anything is written; the caller reads
    the room again (under the same locks) and asks again."""

    def __init__(self, token: str | None):
        super().__init__("the kept room is older than the catalog")
        self.token = token


def standing(user: User, room_id: int, slot: Slot, now: datetime) -> Standing:
    """The resident's suspension and counts against the caps, the lottery's hold on the day, whether the slot
    is taken, and the catalog's token, as one SELECT of scalar subqueries: one database round trip instead of
    eight."""
    row = db.session.execute(_standing_statement(), {
        "user_id": user.id, "room_id": room_id, "start_at": slot.start_at, "end_at": slot.end_at, "now": now,
        "month": slot.day.replace(day=1)}).one()
    return Standing(*row[:4], *(bool(flag) for flag in row[4:7]), row[7])


@lru_cache(maxsize=1)
def _standing_statement():
    """standing's SELECT, built once with bound parameters: building its dozen subqueries for each hold cost
    more than running them, and a statement object keeps its cache key (SQLAlchemy walks it once)."""
    user_id, room_id, now = bindparam("user_id"), bindparam("room_id"), bindparam("now")
    capped = counted_against_cap(user_id, now)
    span = overlapping(room_id, bindparam("start_at"), bindparam("end_at"))
    return select(
        suspended_until(user_id, now),
        _count(capped),
        _count(capped, Booking.room_id == room_id),
        _count(live_hold_clause(user_id, now)),
        lottery_hides_month(room_id, bindparam("month"), now),
        exists(select(Booking.id).where(span, active_clause(now))),
        exists(select(Booking.id).where(span, lapsed_hold_clause(now))),
        catalog_token_clause(),
    )


def _advisory_lock(namespace: int, key: int) -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": namespace, "key": key})


def lock_room(room_id: int) -> None:
    """Serialise writers of one room. On SQLite BEGIN IMMEDIATE already did it."""
    _advisory_lock(ROOM_LOCK_NAMESPACE, room_id)


HOLD_LOCKS = "booking.hold_locks"  # session.info: the (user, room) pairs whose place_hold locks are held


def lock_for_hold(user_id: int, room_id: int) -> None:
    """Take place_hold's two locks, the user's then the room's, in one round trip, and note them in the session.

    The user's lock serialises the bookings of one user, so that the caps count every hold made at the same
    moment: the room lock alone let one user hold more than the cap by reserving several rooms at once. Only
    a hold takes it, and always before the room lock: every other holder of a room lock (checkout settling a
    payment) never asks for a user lock, so no two transactions can wait on each other in opposite orders.

    A request that calls this before it reads the room reads it under the locks, so place_hold neither locks
    again nor reads the room a second time. The note ends with the transaction (and the locks with it).
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:user_ns, :user_id), "
                                "pg_advisory_xact_lock(:room_ns, :room_id)"),
                           {"user_ns": USER_LOCK_NAMESPACE, "user_id": user_id,
                            "room_ns": ROOM_LOCK_NAMESPACE, "room_id": room_id})
    else:
        db.session.connection()  # SQLite: a writing unit of work holds the write lock from its BEGIN IMMEDIATE
    db.session.info.setdefault(HOLD_LOCKS, set()).add((user_id, room_id))


@event.listens_for(Session, "after_transaction_end")
def _locks_end_with_the_transaction(session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(HOLD_LOCKS, None)


def retire_lapsed_holds(where, now: datetime, *, reason: str) -> list[Booking]:
    """Expire the lapsed holds matching `where` (a slot of a room), once each; the caller holds the room lock.

    FOR UPDATE: the expiry job, or a release of the same hold, may be
    expiring it right now. We wait for it, and PostgreSQL then re-checks the
    row, which is no longer a lapsed hold, so it is retired (and audited)
    once, not twice.

    A payment that never reached the provider (new, no intent) is cancelled
    with its hold, or it would stay "new" for an expired booking forever: no
    job looks at a hold once it is retired. Its row is taken with SKIP
    LOCKED, never waited for: whoever holds it (the pay page, a payment)
    takes it next to the provider or to this room's lock, which we hold, and
    settles it from there. A payment with an intent is left as it is: the
    intent might still be paid, so only the provider can say how it ends, and
    the expiry job asks it (services.expiry, retired holds).
    """
    lapsed = db.session.scalars(
        select(Booking).where(where, lapsed_hold_clause(now)).with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for booking in lapsed:
        booking.transition(BookingState.EXPIRED, reason=reason)
    if lapsed:
        never_paid = db.session.scalars(
            select(Payment).where(Payment.booking_id.in_([b.id for b in lapsed]), Payment.intent_id.is_(None),
                                  Payment.state == PaymentState.NEW)
            .with_for_update(skip_locked=True).execution_options(populate_existing=True)
        ).all()
        for payment in never_paid:
            payment.transition(PaymentState.CANCELLED, reason=reason)
    return lapsed


@contextmanager
def lost_race_is_slot_taken():
    """Around a write that puts a booking (a hold, a block, a moved booking) into a room: when the database
    says another transaction took the slot first (the overlap rule, a deadlock, a serialisation failure),
    roll back and raise BookingError("slot_taken"), never a 500. Any other database error goes on up."""
    try:
        yield
    except (IntegrityError, DBAPIError) as exc:
        if not _is_lost_race(exc):
            raise
        db.session.rollback()
        raise BookingError("slot_taken") from exc


def _is_lost_race(exc: DBAPIError) -> bool:
    code = getattr(getattr(exc.orig, "diag", None), "sqlstate", None) or getattr(exc.orig, "sqlstate", None)
    return code in _LOST_RACE or SQLITE_OVERLAP_MESSAGE in str(exc.orig)


def place_hold(
    user: User,
    room: Room,
    slot: Slot,
    *,
    now: datetime | None = None,
    expected_price: int | None = None,
    actor: User | None = None,
    channel: str = "online",
    deadline: bool | None = None,
    group: Group | None = None,
    exemption_kind: ExemptionKind | None = None,
    exemption_note: str = "",
    room_token: str | None = None,
) -> Booking:
    """Hold `slot` for `user` at the price the server computes.

    Raises BookingError when a rule forbids it, when `expected_price` (what the
    resident was shown) is no longer the price, or when the slot is taken,
    including when another transaction took it a moment ago.

    Online, the user must have confirmed their e-mail address first. A member
    of staff booking for a resident at the counter (`actor` is staff) is exempt
    from that check: they saw the resident in person. The caps apply to
    everyone: at most MAX_ACTIVE_BOOKINGS live holds and future confirmed
    bookings, of which at most MAX_LIVE_HOLDS are holds still waiting for
    their payment, counted under a lock of the user, so bookings made at the
    same moment in different rooms cannot pass them together; and the room's
    own cap of a user's bookings in it (Room.max_active_per_user), if it has one.

    A resident whose online booking is suspended for no-shows (services/no_shows.py)
    cannot book online; staff at the counter still can for them.

    `room_token`: the catalog token `room` was kept under (rules.cached_room_with_rules), when the caller took
    the locks (lock_for_hold) but did not read the token since; the standing reads it under the locks, and a
    different one raises StaleRoom before anything is judged or written.

    The booking is held as the room's payment mode says (services/deadline.py): for
    the hold time, or until the payment deadline; `deadline` overrides the room's mode
    (a counter booking paid online by the deadline).

    Booked for a registered `group` (services/groups.py), the user must be one who may act for it, and the
    group's fee class prices it. An `exemption_kind` (services/exemptions.py) must be one the group (or a
    person) may use: without approval it reduces the price at once; with approval the booking is held until
    its payment deadline, not charged, while staff decide, so it is always held by the deadline.
    """
    now = now or now_utc()
    # Only staff of the room's building book on someone's behalf there.
    at_counter = actor is not None and actor.is_staff and in_scope(actor, room.building_id)
    if user.email_verified_at is None and not at_counter:
        raise BookingError("email_unverified")

    with lost_race_is_slot_taken():
        if (user.id, room.id) not in db.session.info.get(HOLD_LOCKS, ()):
            # Everything is judged under the locks: staff add closures and change opening hours under the
            # room's lock (services/setup.py), so a room read before them is read again.
            lock_for_hold(user.id, room.id)
            room = room_with_rules(room.id, fresh=True)
        known = standing(user, room.id, slot, now)
        if room_token is not None and known.catalog_token != room_token:
            raise StaleRoom(known.catalog_token)
        if not at_counter and known.suspended_until is not None:
            raise BookingError("suspended", until=known.suspended_until)
        check_bookable(room, slot, now, hidden_by_lottery=known.lottery)
        if group is not None and not may_act_for(user, group, business_date(now)):
            raise BookingError("not_group_member")
        if exemption_kind is not None and exemption_kind not in eligible_kinds(group):
            raise BookingError("exemption_not_eligible")
        if exemption_kind is not None and exemption_kind.needs_approval:
            deadline = True  # held, not charged, while staff decide
        price = quote(room, slot, fee_residency(group) if group is not None else user.residency)
        if expected_price is not None and expected_price != price.total:
            raise BookingError("price_changed", price=price.total)
        if known.active >= current_app.config["MAX_ACTIVE_BOOKINGS"]:
            raise BookingError("too_many")
        if room.max_active_per_user and known.active_in_room >= room.max_active_per_user:
            raise BookingError("too_many_in_room")
        hold = hold_for(room, slot.start_at, now, deadline=deadline)
        if exemption_kind is not None and exemption_kind.needs_approval and hold.pay_mode != "deadline":
            raise BookingError("exemption_too_late")
        if hold.pay_mode == "now" and known.live_holds >= current_app.config["MAX_LIVE_HOLDS"]:
            raise BookingError("too_many_holds")
        if known.taken:
            raise BookingError("slot_taken")
        if known.lapsed:  # rare: the expiry job retires them within a minute
            retire_lapsed_holds(overlapping(room.id, slot.start_at, slot.end_at), now,
                                reason="retired by an overlapping booking")
        booking = Booking(
            user_id=user.id,
            room_id=room.id,
            start_at=slot.start_at,
            end_at=slot.end_at,
            state=BookingState.HELD,
            hold_expires_at=hold.expires_at,
            pay_mode=hold.pay_mode,
            price=price.total,
            price_detail=price.as_detail(),
            residency=fee_residency(group) if group is not None else user.residency,
            group_id=group.id if group is not None else None,
            division_codes=",".join(slot.division_codes) or None,
            channel=channel,
            created_at=now,
            exemption=None,  # known to have none yet: reading it later (is_pending) asks the database nothing
        )
        db.session.add(booking)
        db.session.flush()
    record("booking", booking.id, "held", actor_id=(actor or user).id, price=price.total, channel=channel,
           pay_mode=hold.pay_mode, until=hold.expires_at.isoformat(), group_id=booking.group_id)
    if exemption_kind is not None:
        attach(booking, exemption_kind, actor=actor or user, now=now, note=exemption_note)
    return booking


def confirm(booking: Booking, *, actor_id: int | None = None, reason: str = "") -> None:
    if booking.state == BookingState.CONFIRMED:
        return
    if booking.price == 0 and booking.exemption is not None:
        # The 日計表 counts a full exemption on the day it is confirmed: a close waits for this write, as for
        # a ledger row's, so it never misses one committed after its count (services/finance/close.py).
        lock_days(exclusive=False)
    booking.transition(BookingState.CONFIRMED, actor_id=actor_id, reason=reason)


def reserve(user: User, room: Room, slot: Slot, **kwargs) -> Booking:
    """Hold the slot; a free booking (or one where online payment is off) is confirmed at once,
    any other waits for its payment (services.checkout)."""
    booking = place_hold(user, room, slot, **kwargs)
    if is_pending(booking):
        return booking  # held, not charged, until staff decide on its exemption
    if booking.price == 0 or not current_app.config["PAYMENTS_ENABLED"]:
        confirm(booking, actor_id=user.id, reason="free" if booking.price == 0 else "no online payment")
    else:
        from .checkout import start_checkout  # checkout builds on this module

        start_checkout(booking)
    return booking

