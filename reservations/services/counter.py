"""Counter (窓口) operations: money taken by staff in person, in cash or on the counter's card terminal.

Each is recorded as what it was (Payment.provider "cash" or "terminal", with the terminal's slip
number), captured at once with its ledger row, and receipted under the same numbering as card
payments online, so finance sees every yen by how it came in. Refunds of these payments are paid out
at the counter (services/refunds.py) and recorded the same way.
"""
from datetime import datetime

from ..extensions import db
from ..models import Booking, BookingState, LedgerEntry, Payment, PaymentState, Receipt, User, record
from ..timeutil import now_utc
from .booking import confirm
from .errors import BookingError
from .receipts import issue_receipt

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
        if payment.intent_id is not None or payment.state != PaymentState.NEW:
            raise BookingError("online_payment_in_progress")
        payment.provider, payment.amount, payment.slip_number = method, amount, slip_number
    else:
        payment = Payment(booking_id=booking.id, provider=method, amount=amount, slip_number=slip_number)
        db.session.add(payment)
        db.session.flush()
    payment.captured_amount = amount
    payment.transition(PaymentState.CAPTURED, reason=f"paid at the counter ({method})", actor_id=staff.id)
    db.session.add(LedgerEntry(payment_id=payment.id, kind="capture", amount=amount, at=now,
                               reference=f"{method}-{payment.id}"))
    record("payment", payment.id, "paid at the counter", actor_id=staff.id, method=method, amount=amount,
           slip_number=slip_number, booking_id=booking.id)
    if booking.state in (BookingState.HELD, BookingState.EXPIRED):
        confirm(booking, actor_id=staff.id, reason=f"paid at the counter ({method})")
    db.session.flush()
    return issue_receipt(booking, now=now, amount=amount)
