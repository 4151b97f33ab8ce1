"""The expiry job: holds past their expiry are settled with the provider, then released."""
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Booking, BookingState, Payment
from ..payments import GatewayError
from ..timeutil import now_utc
from .booking import lapsed_hold_clause
from .checkout import settle


def release_expired_holds(*, now: datetime | None = None, batch: int = 100) -> dict[str, int]:
    """The expiry job: settle every held booking past its expiry, one transaction each.

    Before releasing, it asks the provider: paid → confirm; processing → keep;
    anything else → cancel the intent and release. Rows are claimed with
    SKIP LOCKED, so two schedulers never work on the same booking, and a
    webhook settling the same payment simply makes the job skip it.
    """
    now = now or now_utc()
    counts: dict[str, int] = {}
    expired = lapsed_hold_clause(now)
    tried: set[int] = set()
    # Lock the payment row first, as settle does everywhere, so the job and a
    # webhook never wait on each other in opposite orders.
    for _i in range(batch):
        query = (
            select(Payment).join(Booking, Payment.booking_id == Booking.id).where(expired)
            .order_by(Booking.hold_expires_at).limit(1).with_for_update(skip_locked=True, of=Payment)
        )
        payment = db.session.scalar(query.where(Payment.id.not_in(tried)) if tried else query)
        if payment is None:
            break
        tried.add(payment.id)
        try:
            outcome = settle(payment, now=now)
            db.session.commit()
        except GatewayError:
            db.session.rollback()
            outcome = "provider_unreachable"  # left held; the next run asks again
        except Exception:
            # One broken payment must not stop the others; it is logged and tried again next run.
            db.session.rollback()
            current_app.logger.exception("release_expired_holds: payment %s", payment.id)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    unpaid = db.session.scalars(
        select(Booking).where(expired, ~Booking.id.in_(select(Payment.booking_id)))
        .limit(batch).with_for_update(skip_locked=True)
    ).all()
    for booking in unpaid:
        booking.transition(BookingState.EXPIRED, reason="hold expired")
    db.session.commit()
    if unpaid:
        counts["released"] = counts.get("released", 0) + len(unpaid)
    return counts
