"""Counter (窓口) operations: money taken by staff in person, in cash or on the counter's card terminal.

Each is recorded as what it was (Payment.provider "cash" or "terminal", with the terminal's slip
number), captured at once with its ledger row, and receipted under the same numbering as card
payments online, so finance sees every yen by how it came in. Refunds of these payments are paid out
at the counter (services/refunds.py) and recorded the same way.

Staff book at the counter on behalf of a registered resident, found by address, name, reading or phone
(search_residents), or of a walk-in recorded by name, kana and phone (make_walk_in: no log-in, no mail),
and settle it in cash, on the terminal, or online by the room's payment deadline (book_on_behalf).
"""
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale
from sqlalchemy import func, or_, select

from ..aftercommit import after_commit
from ..backoffice import in_scope
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..mail import send_mail
from ..models import (
    Booking,
    BookingState,
    Payment,
    PaymentState,
    Receipt,
    Residency,
    Role,
    Room,
    User,
    record,
)
from ..payments import GatewayError, get_gateway
from ..timeutil import now_utc
from . import ledger
from .booking import confirm, place_hold
from .checkout import lock_payment, start_checkout
from .deadline import hold_for
from .errors import MESSAGES, BookingError
from .receipts import issue_receipt
from .rules import Slot

COUNTER_METHODS = ("cash", "terminal")


def record_counter_payment(booking: Booking, method: str, amount: int, *, staff: User,
                           slip_number: str | None = None, now: datetime | None = None) -> Receipt:
    """Staff took `amount` yen for `booking` at the counter: record it, confirm the booking, issue the receipt.

    A terminal payment needs the slip number the terminal printed. The booking must have no payment yet,
    or only one that never reached the provider (a deadline booking with no card attempt), which then
    becomes this counter payment. Flushes; the caller commits.
    """
    now = now or now_utc()
    if method not in COUNTER_METHODS:
        raise ValueError(f"unknown counter method {method!r}")
    slip_number = (slip_number or "").strip() or None
    if method == "terminal" and not slip_number:
        raise BookingError("slip_required")
    if amount <= 0:
        raise BookingError("over_refund")
    payment = booking.payment
    if payment is not None:
        if payment.intent_id is not None:
            _close_online_payment(payment)
        elif payment.state != PaymentState.NEW:
            raise BookingError("online_payment_in_progress")
        payment.provider, payment.amount, payment.slip_number = method, amount, slip_number
    else:
        # Through the relationship, so booking.payment (read as None above) knows it: the receipt's method reads it.
        payment = Payment(booking=booking, provider=method, amount=amount, slip_number=slip_number)
        db.session.add(payment)
        db.session.flush()
    payment.captured_amount = amount
    payment.transition(PaymentState.CAPTURED, reason=f"paid at the counter ({method})", actor_id=staff.id)
    ledger.post(payment, "capture", amount, f"{method}-{payment.id}", at=now)
    record("payment", payment.id, "paid at the counter", actor_id=staff.id, method=method, amount=amount,
           slip_number=slip_number, booking_id=booking.id)
    if booking.state in (BookingState.HELD, BookingState.EXPIRED):
        confirm(booking, actor_id=staff.id, reason=f"paid at the counter ({method})")
    db.session.flush()
    return issue_receipt(booking, now=now, amount=amount)


def _close_online_payment(payment: Payment) -> None:
    """The resident opened the card form (an intent exists) but comes to pay at the counter instead.

    The intent is cancelled at the provider first: once it is "canceled" no money can arrive on it, and
    the row can become the counter payment (its intent id stays, so a late event for it finds this
    payment, already captured, and changes nothing). An intent that was paid, or is being paid, cannot
    be cancelled: that payment is settled online, and nothing is taken at the counter.
    """
    payment = lock_payment(payment)
    if payment.state not in (PaymentState.NEW, PaymentState.PENDING, PaymentState.FAILED):
        raise BookingError("online_payment_in_progress")
    gateway = get_gateway()
    try:
        status = gateway.cancel(payment.intent_id, payment_key=payment.idempotency_key).status
    except GatewayError as exc:
        if exc.transient:
            raise BookingError("payment_unavailable") from exc
        status = gateway.retrieve_intent(payment.intent_id).status  # refused: already cancelled, or paid
    if status != "canceled":
        raise BookingError("online_payment_in_progress")
    record("payment", payment.id, "online payment closed for the counter", intent=payment.intent_id)


def take_at_counter(booking: Booking, method: str, *, staff: User, slip_number: str | None = None,
                    now: datetime | None = None) -> Receipt:
    """A booking waiting for its payment (held until its deadline, e.g. booked with a payment link) is paid
    at the counter instead, in full: cash or the terminal. Only while it still holds its slot."""
    now = now or now_utc()
    if not staff.is_staff or not in_scope(staff, booking.room.building_id):
        raise BookingError("staff_only")
    if booking.is_block or not booking.hold_is_live(now):
        raise BookingError("hold_expired" if booking.state == BookingState.HELD else "not_payable")
    return record_counter_payment(booking, method, booking.price, staff=staff, slip_number=slip_number, now=now)


# --- booking on someone's behalf ---------------------------------------------------------------

METHODS = ("cash", "terminal", "online")  # cash or the terminal now (a receipt), or online by the deadline
WALK_IN_DOMAIN = "walk-in.invalid"
SEARCH_LIMIT = 20

# The errors of this module, in the words of errors.MESSAGES (registered there, so BookingError.message knows them).
MESSAGES.update({
    "walk_in_details": _l("Enter the walk-in's name, its reading in kana and a phone number."),
    "not_a_resident": _l("Bookings are made for residents only, not for back-office accounts."),
    "deadline_too_close": _l(
        "The day is too close for paying online by the deadline. Take the fee in cash or on the terminal."
    ),
    "online_payment_off": _l("Online payment is switched off. Take the fee in cash or on the terminal."),
    "not_payable": _l("This booking is not waiting for a payment."),
})


@dataclass
class CounterBooking:
    """What a counter booking made: the booking, and its receipt (paid now) or its payment link (online)."""

    booking: Booking
    receipt: Receipt | None = None
    payment_link: str | None = None


def make_walk_in(staff: User, *, name: str, name_kana: str, phone: str,
                 residency: str = Residency.RESIDENT) -> User:
    """A walk-in (窓口の来訪者): a resident record with no log-in and no mail.

    Its address is unique and under the reserved .invalid domain (send_mail drops it); its password hash
    "!" is no hash at all, so no password ever matches; it is never verified, which only staff at the
    counter may book past (services.booking.place_hold). Flushes.
    """
    name, name_kana, phone = (v.strip() if isinstance(v, str) else "" for v in (name, name_kana, phone))
    if not (name and name_kana and phone):
        raise BookingError("walk_in_details")
    user = User(walk_in=True, email=f"walk-in-{uuid.uuid4().hex}@{WALK_IN_DOMAIN}", name=name[:100],
                name_kana=name_kana[:100], phone=phone[:32], password_hash="!", email_verified_at=None,
                role=Role.RESIDENT, residency=Residency(residency))
    db.session.add(user)
    db.session.flush()
    record("user", user.id, "walk-in recorded", actor_id=staff.id, name=user.name, phone=user.phone)
    return user


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_residents(query: str, *, limit: int = SEARCH_LIMIT) -> list[User]:
    """Residents (and walk-ins booked before) whose address, name, reading or phone contains `query`.

    Never back-office accounts; at most `limit`, by name. Fewer than two characters finds nothing:
    staff type a name or a number, and one letter would list the ward.
    """
    query = (query or "").strip()[:100]
    if len(query) < 2:
        return []
    pattern = _like(query)
    digits = "".join(c for c in query if c.isdigit())
    matches = [User.email.ilike(pattern.lower(), escape="\\"), User.name.ilike(pattern, escape="\\"),
               User.name_kana.ilike(pattern, escape="\\"), User.phone.ilike(pattern, escape="\\")]
    if len(digits) >= 4:  # "0312345678" and "03 1234 5678" find "03-1234-5678" too
        matches.append(func.replace(func.replace(User.phone, "-", ""), " ", "").like(f"%{digits}%"))
    return list(db.session.scalars(
        select(User).where(User.role == Role.RESIDENT, or_(*matches)).order_by(User.name, User.id).limit(limit)))


def book_on_behalf(staff: User, room: Room, slot: Slot, *, method: str, user: User | None = None,
                   name: str = "", name_kana: str = "", phone: str = "", residency: str = Residency.RESIDENT,
                   slip_number: str | None = None, note: str = "", now: datetime | None = None) -> CounterBooking:
    """Staff book `slot` at the counter for a registered resident (`user`) or a walk-in (name, kana, phone).

    Settled one of three ways, each recorded as what it was: "cash" or "terminal" (with the terminal's
    slip number) are taken now, captured with their ledger row and receipted (record_counter_payment);
    "online" reserves the slot until the room's payment deadline and makes the payment link, mailed to a
    registered resident and printed for a walk-in; nothing is captured. A free booking is confirmed.

    Only staff of the room's building book there. Flushes; the caller commits, or rolls back on BookingError.
    """
    now = now or now_utc()
    if not staff.is_staff or not in_scope(staff, room.building_id):
        raise BookingError("staff_only")
    if method not in METHODS:
        raise ValueError(f"unknown counter method {method!r}; one of {', '.join(METHODS)}")
    slip_number = (slip_number or "").strip() or None
    if method == "terminal" and not slip_number:
        raise BookingError("slip_required")  # before anything is made: nothing to undo
    if method == "online":
        if not current_app.config["PAYMENTS_ENABLED"]:
            raise BookingError("online_payment_off")
        if hold_for(room, slot.start_at, now, deadline=True).pay_mode != "deadline":
            raise BookingError("deadline_too_close")
    if user is None:
        user = make_walk_in(staff, name=name, name_kana=name_kana, phone=phone, residency=residency)
    elif user.role != Role.RESIDENT:
        raise BookingError("not_a_resident")
    booking = place_hold(user, room, slot, now=now, actor=staff, channel="counter", deadline=method == "online")
    booking.note = (note or "").strip()
    record("booking", booking.id, "booked at the counter", actor_id=staff.id, method=method,
           walk_in=user.walk_in, slip_number=slip_number, price=booking.price, note=booking.note)
    if booking.price == 0:
        confirm(booking, actor_id=staff.id, reason="free, booked at the counter")
        return CounterBooking(booking)
    if method in COUNTER_METHODS:
        receipt = record_counter_payment(booking, method, booking.price, staff=staff, slip_number=slip_number,
                                         now=now)
        return CounterBooking(booking, receipt=receipt)
    start_checkout(booking)
    db.session.flush()
    from . import deadline  # the payment link lives with the deadlines

    link = deadline.payment_link(booking)
    if user.mailable:
        after_commit(_payment_link_mail(booking, link))
    return CounterBooking(booking, payment_link=link)


def _payment_link_mail(booking: Booking, link: str):
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("Your booking is reserved: please pay by the deadline")
        body = render_template("staff/counter/payment_link_mail.txt", booking=booking, link=link)
    return partial(send_mail, booking.user.email, subject, body)
