"""Moving a booking to another slot or room (staff), in one transaction under the overlap rules.

The booking B1 is cancelled ("moved to #B2") and a new booking B2 is made for the new room and slot,
priced as that slot costs today for B1's residency class (B1's own price never changes). Both rooms are
locked (in id order, after B1's payment: the order settle uses), lapsed holds over the new slot are
retired, and B1's cancellation is flushed before B2 is inserted, so that a move to an overlapping slot
of the same room passes the database's overlap rule. A slot another booking occupies is refused
("slot_taken") and nothing changes.

What B1 paid (captured, less refunds and what a dispute withdrew; for a booking that was itself moved,
also what that move carried over to it, which stays on the earlier booking's payment) is carried over to
B2 only within the same fiscal year (of the days of use) and the same building:

- B2 costs more: the difference is taken at the counter (cash, or the terminal with its slip number:
  B2 is confirmed, and receipted for the difference), or paid online by the room's payment deadline
  (B2 is held until then, with a card payment of its own for the difference);
- B2 costs less: the difference is refunded from what paid for B1, and B2 is confirmed;
- the same: B2 is confirmed.

Otherwise nothing is carried over: what paid for B1 is refunded in full and B2 is paid anew, by the same
choice of methods. B2's price_detail says where it came from ("moved_from") and how many yen were
carried over ("carried_over"). Both bookings get a "moved" audit entry with the room, times and price
before and after.

Flushes; the caller commits. A refund commits the move with it (services/refunds.py) before it asks the
provider, so it comes last, once everything else is in place.
"""
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select, text

from ..backoffice import in_scope
from ..extensions import db
from ..models import (
    Booking,
    BookingKind,
    BookingState,
    Letting,
    Payment,
    PaymentState,
    Receipt,
    Refund,
    Room,
    User,
    record,
)
from ..timeutil import business_date, fiscal_year, now_utc
from .availability import day_bounds, room_units
from .booking import active_clause, lock_room, lost_race_is_slot_taken, overlapping, retire_lapsed_holds
from .checkout import lock_payment
from .counter import COUNTER_METHODS, record_counter_payment
from .deadline import hold_for
from .errors import BookingError
from .pricing import quote
from .refunds import refund
from .rules import Slot, check_bookable, closure_reason, window_closes_at, window_opens_at

ONLINE = "online"
MOVE_METHODS = (*COUNTER_METHODS, ONLINE)


@dataclass
class Move:
    old: Booking
    new: Booking
    paid: int  # what the old booking had paid and kept
    carried_over: int  # of that, what the new booking is paid with
    due: int  # what the new booking still needs, taken by `method`
    refunded: int  # what goes back from the old booking's payment
    method: str | None
    refunds: list[Refund] = field(default_factory=list)  # from the payments that had paid for it
    receipt: Receipt | None = None  # for what was taken at the counter
    payment: Payment | None = None  # the new booking's own payment, if it needs one


def carries_over(old: Booking, room: Room, slot: Slot) -> bool:
    """A paid fee moves with the booking within one fiscal year (of the days of use) and one building."""
    return (old.room.building_id == room.building_id
            and fiscal_year(business_date(old.start_at)) == fiscal_year(slot.day))


def _own_paid(payment: Payment | None) -> int:
    if payment is None or payment.state in (PaymentState.CANCELLED, PaymentState.FAILED):
        return 0
    if payment.state != PaymentState.CAPTURED:
        # Authorised with its capture on the way (checkout.capture_authorised), or a card payment still
        # open: what it paid is not known yet.
        raise BookingError("payment_in_progress")
    return payment.refundable


def paid_sources(booking: Booking, *, lock: bool = True) -> list[tuple[Payment, int]]:
    """Where the money paid for `booking` is, newest first: its own payment, and, for what an earlier move
    carried over to it (price_detail["carried_over"]), the payments of the bookings it was moved from.

    Each payment is locked as it is read (refunds may be taken from any of them), unless `lock` is false
    (a page that only shows the sum).
    """
    sources: list[tuple[Payment, int]] = []
    current, wanted, seen = booking, None, set()
    while current is not None and current.id not in seen and (wanted is None or wanted > 0):
        seen.add(current.id)
        payment = current.payment
        if payment is not None and lock:
            payment = lock_payment(payment)
        own = _own_paid(payment) if current is booking else (payment.refundable if payment is not None and
                                                              payment.state == PaymentState.CAPTURED else 0)
        take = own if wanted is None else min(wanted, own)
        if take:
            sources.append((payment, take))
        detail = current.price_detail or {}
        carried = int(detail.get("carried_over") or 0)
        rest = carried if wanted is None else min(wanted - take, carried)
        origin = detail.get("moved_from")
        current, wanted = (db.session.get(Booking, origin) if rest and origin else None), rest
    return sources


def _next_booking_id() -> int:
    """B2's id, taken before B1 is cancelled so that B1's cancellation can name it ("moved to #B2").

    PostgreSQL: the table's sequence. SQLite: the next rowid, which is ours since this transaction
    holds the write lock (it began IMMEDIATE, reservations/db_mode.py).
    """
    if db.session.get_bind().dialect.name == "postgresql":
        return db.session.scalar(text("SELECT nextval(pg_get_serial_sequence('bookings', 'id'))"))
    return (db.session.scalar(select(func.max(Booking.id))) or 0) + 1


def _where(booking: Booking) -> dict:
    return {"booking_id": booking.id, "room_id": booking.room_id, "start_at": booking.start_at.isoformat(),
            "end_at": booking.end_at.isoformat(), "price": booking.price}


def move_booking(booking: Booking, room: Room, slot: Slot, *, staff: User, method: str | None = None,
                 slip_number: str | None = None, now: datetime | None = None) -> Move:
    """Move a confirmed booking, not yet started, to `slot` of `room` (see the module docstring).

    `method` says how a difference (or, without carry-over, the new price) is paid: "cash" or
    "terminal" (with `slip_number`) at the counter, or "online" by the payment deadline. It is
    required only when something is due. Raises BookingError, having changed nothing, when the move
    is not allowed; the caller rolls back.
    """
    now = now or now_utc()
    if not staff.is_staff or not (in_scope(staff, booking.room.building_id) and in_scope(staff, room.building_id)):
        raise BookingError("staff_only")
    if method is not None and method not in MOVE_METHODS:
        raise ValueError(f"unknown payment method {method!r}; one of {', '.join(MOVE_METHODS)}")
    slip_number = (slip_number or "").strip() or None
    if booking.is_block:
        raise BookingError("not_movable")
    check_bookable(room, slot, now)
    price = quote(room, slot, booking.residency)

    # Locked as cancellation locks a booking (its payment, then the row), then judged as it is now.
    if booking.payment:
        lock_payment(booking.payment)
    db.session.get(Booking, booking.id, with_for_update=True, populate_existing=True)
    if booking.state != BookingState.CONFIRMED or now >= booking.start_at:
        raise BookingError("not_movable")
    if (booking.room_id, booking.start_at, booking.end_at) == (room.id, slot.start_at, slot.end_at):
        raise BookingError("same_slot")
    sources = paid_sources(booking)
    paid = sum(amount for _, amount in sources)
    carried = min(paid, price.total) if carries_over(booking, room, slot) else 0
    due, refunded = price.total - carried, paid - carried
    hold = None
    if due:
        if method is None:
            raise BookingError("method_required")
        if method == "terminal" and not slip_number:
            raise BookingError("slip_required")
        if method == ONLINE:
            if not current_app.config["PAYMENTS_ENABLED"]:
                raise BookingError("payment_unavailable")
            hold = hold_for(room, slot.start_at, now, deadline=True)
            if hold.pay_mode != "deadline":
                raise BookingError("deadline_too_close")
        else:
            hold = hold_for(room, slot.start_at, now, deadline=False)  # confirmed at once by the counter payment

    with lost_race_is_slot_taken():
        for room_id in sorted({booking.room_id, room.id}):
            lock_room(room_id)
        retire_lapsed_holds(overlapping(room.id, slot.start_at, slot.end_at), now, reason="retired by a move")
        taken = db.session.scalar(
            select(Booking.id).where(overlapping(room.id, slot.start_at, slot.end_at), active_clause(now),
                                     Booking.id != booking.id).limit(1))
        if taken:
            raise BookingError("slot_taken")
        new_id = _next_booking_id()
        booking.transition(BookingState.CANCELLED, actor_id=staff.id, reason=f"moved to #{new_id}")
        db.session.flush()  # out of the way first: the new slot may overlap the old one
        new = Booking(
            id=new_id,
            user_id=booking.user_id,
            room_id=room.id,
            start_at=slot.start_at,
            end_at=slot.end_at,
            state=BookingState.HELD if hold else BookingState.CONFIRMED,
            hold_expires_at=hold.expires_at if hold else None,
            pay_mode=hold.pay_mode if hold else "now",
            price=price.total,
            price_detail={**price.as_detail(), "moved_from": booking.id, "carried_over": carried},
            residency=booking.residency,
            division_codes=",".join(slot.division_codes) or None,
            channel=booking.channel,
            kind=BookingKind.BOOKING,
            note=booking.note,
            created_at=now,
        )
        db.session.add(new)
        db.session.flush()

    moved = {"before": _where(booking), "after": _where(new), "paid": paid, "carried_over": carried, "due": due,
             "refund": refunded, "method": method if due else None}
    record("booking", booking.id, "moved", actor_id=staff.id, reason=f"moved to #{new.id}", **moved)
    if hold:
        record("booking", new.id, "held", actor_id=staff.id, price=price.total, channel=new.channel,
               pay_mode=hold.pay_mode, until=hold.expires_at.isoformat(), moved_from=booking.id)
    else:
        record("booking", new.id, "confirmed", actor_id=staff.id, price=price.total, channel=new.channel,
               moved_from=booking.id, reason="moved; nothing more to pay")
    record("booking", new.id, "moved", actor_id=staff.id, reason=f"moved from #{booking.id}", **moved)
    result = Move(old=booking, new=new, paid=paid, carried_over=carried, due=due, refunded=refunded,
                  method=method if due else None)

    if due and method in COUNTER_METHODS:
        result.receipt = record_counter_payment(new, method, due, staff=staff, slip_number=slip_number, now=now)
        result.payment = new.payment
    elif due:
        # Paid online by the deadline, from My bookings. The payment is for what is due (the difference
        # when a fee was carried over), which is what the pay page shows and the intent asks for.
        result.payment = Payment(booking_id=new.id, amount=due)
        db.session.add(result.payment)
        db.session.flush()
        record("payment", result.payment.id, "created", actor_id=staff.id, amount=due, booking_id=new.id,
               reason="the rest of a moved booking's fee")
    db.session.flush()
    # Last: refund() commits the move with the pending refund before the provider is asked. What was
    # paid last goes back first (a difference taken at an earlier move, then the fee that move carried over).
    left = refunded
    for payment, amount in sources:
        if left <= 0:
            break
        result.refunds.append(refund(payment, min(amount, left), reason="move", actor_id=staff.id, now=now))
        left -= min(amount, left)
    return result


# -- what the move page offers -------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    code: str  # a division code, or "HH:MM" for a room let by the hour
    start_at: datetime
    end_at: datetime
    status: str  # free | own (this booking's) | taken | closed | outside (the booking window)


def day_units(booking: Booking, room: Room, day, *, now: datetime | None = None) -> list[Unit]:
    """The units of `room` on `day` as a move of `booking` sees them: its own slot is not in its way."""
    now = now or now_utc()
    start, end = day_bounds(day)
    occupied = db.session.execute(
        select(Booking.id, Booking.start_at, Booking.end_at).where(
            overlapping(room.id, start, end), active_clause(now))).all()
    closed = closure_reason(room, day) is not None
    units = []
    for code, s, e in room_units(room, day):
        if closed:
            status = "closed"
        elif now < window_opens_at(room, day) or now > window_closes_at(room, s):
            status = "outside"
        elif any(bs < e and be > s and bid != booking.id for bid, bs, be in occupied):
            status = "taken"
        elif any(bs < e and be > s for _, bs, be in occupied):
            status = "own"
        else:
            status = "free"
        units.append(Unit(code, s, e, status))
    return units


def durations(room: Room) -> list[int]:
    """The lengths, in minutes, a booking of a room let by the hour may have (empty for divisions)."""
    if room.letting != Letting.HOURLY or room.open_time is None or room.close_time is None:
        return []
    longest = (room.close_time.hour * 60 + room.close_time.minute) - (room.open_time.hour * 60 + room.open_time.minute)
    shortest = room.min_minutes or room.step_minutes
    return list(range(shortest, min(room.max_minutes or longest, longest) + 1, room.step_minutes))


def carried_sources(booking: Booking) -> list[tuple[Payment, int]]:
    """The money an earlier move carried over to `booking` (price_detail["carried_over"]), and the payments
    of the bookings it was moved from that still hold it, newest first; [] for a booking never moved.

    The booking's own payment is not in it: cancelling it handles that one as for any booking.
    """
    detail = booking.price_detail or {}
    left, origin_id = int(detail.get("carried_over") or 0), detail.get("moved_from")
    if not left or not origin_id:
        return []
    sources = []
    for payment, amount in paid_sources(db.session.get(Booking, origin_id)):
        if take := min(left, amount):
            sources.append((payment, take))
            left -= take
        if not left:
            break
    return sources


def refund_carried(booking: Booking, percent: int, *, reason: str, actor_id: int | None,
                   now: datetime | None = None) -> list:
    """Refund `percent` % of what was carried over to a cancelled `booking`, from the payments that hold it.

    A cancelled booking that was moved keeps the fee it was paid with on the bookings it came from:
    without this, cancelling it would refund only its own payment (the difference, or nothing), and the
    carried money would stay with the ward with no booking. Each refund commits (services.refunds):
    call it last, once the cancellation is flushed.
    """
    refunds = []
    for payment, amount in carried_sources(booking):
        if share := amount * percent // 100:
            refunds.append(refund(payment, share, reason=reason, actor_id=actor_id, now=now))
    return refunds


def carried_amount(booking: Booking, percent: int = 100) -> int:
    return sum(amount * percent // 100 for _payment, amount in carried_sources(booking))
