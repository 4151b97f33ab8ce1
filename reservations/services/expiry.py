"""The expiry job: holds past their expiry are released, after asking the provider when money may be on its way.

One run drains every expired hold, in two ways:

- Holds that never reached the payment page (no payment, or a payment with
  no provider intent) cannot have been paid: they are released in batches,
  one set-based UPDATE per batch, audited with one INSERT of the batch's
  audit rows (the same entries Booking.transition and Payment.transition
  write).
- Holds with an intent ask the provider first, one transaction each, through
  checkout.settle: paid → confirm; processing → keep; anything else → cancel
  the intent and release.
- Holds a booking retired over their lapsed slot (booking.retire_lapsed_holds)
  are already expired, but a payment with an intent is left pending there: the
  retirement holds the room lock and may not ask the provider. Those are
  settled here like the others (paid → confirmed if the slot is free, else
  returned; otherwise the intent is cancelled), and a payment such a
  retirement could not cancel (its row was busy) is cancelled.

Two schedulers may run at once. Every row is claimed with FOR UPDATE SKIP
LOCKED, so a row another run holds is skipped, never waited for, and every
claim is judged on the row as it is once locked, never on the snapshot the
claiming statement started from (see _claim_next_payment), so a hold is
handled and counted by one run only.
"""
from collections import Counter
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, insert, or_, select, update

from ..extensions import db
from ..models import AuditEntry, Booking, BookingState, Payment, PaymentState
from ..payments import GatewayError
from ..timeutil import now_utc
from .booking import lapsed_hold_clause
from .checkout import settle

BATCH = 500
NEVER_PAID = "hold expired before any payment"
# How far back retired holds are looked at again (see _retired_with_an_intent): card authorisations lapse in 7 days.
RETIRED_LOOKBACK = timedelta(days=8)


def release_expired_holds(*, now: datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """Release every hold past its expiry, in batches of `batch`; returns the count of each outcome.

    Outcomes: "released" (nothing was paid), "confirmed" (paid, the slot was
    still free), "refunded" (paid after the slot went to someone else),
    "waiting" (the provider is still processing), "provider_unreachable",
    "provider_refused" and "error" (left held for the next run; the last two are logged).
    """
    now = now or now_utc()
    counts: Counter[str] = Counter()
    _cancel_stranded_payments(now)
    db.session.commit()
    while True:
        released = _release_unpaid_batch(now, batch)
        db.session.commit()
        counts["released"] += released
        if released < batch:
            break
    _settle_with_the_provider(now, counts)
    return {outcome: n for outcome, n in counts.items() if n}


def _never_paid(now: datetime):
    """Payments the resident never took to the provider: no intent, nothing authorised."""
    return and_(lapsed_hold_clause(now), Payment.intent_id.is_(None), Payment.state == PaymentState.NEW)


def _release_unpaid_batch(now: datetime, limit: int) -> int:
    """Release up to `limit` expired holds whose payment never started (and as many with no payment at all).

    The payment row is locked with its booking, as settle and cancellation
    lock it first: a resident opening the pay page or cancelling this hold
    right now holds it, and we skip the hold instead of releasing it under them.
    """
    order = (Booking.hold_expires_at, Booking.id)
    with_payment = (
        select(Payment.booking_id.label("id")).join(Booking, Booking.id == Payment.booking_id)
        .where(_never_paid(now)).order_by(*order).limit(limit)
        .with_for_update(of=[Payment, Booking], skip_locked=True)
        .cte("never_paid").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    without_payment = (
        select(Booking.id).where(lapsed_hold_clause(now), ~exists().where(Payment.booking_id == Booking.id))
        .order_by(*order).limit(limit)
        .with_for_update(of=Booking, skip_locked=True)
        .cte("no_payment").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    # MATERIALIZED: the claim runs once. As a plain subquery PostgreSQL may
    # run it again inside the join, and a second SKIP LOCKED scan can claim
    # other rows than the first.
    booking_ids = db.session.scalars(
        update(Booking)
        .where(Booking.state == BookingState.HELD,
               or_(Booking.id.in_(select(with_payment.c.id)), Booking.id.in_(select(without_payment.c.id))))
        .values(state=BookingState.EXPIRED)
        .returning(Booking.id)
        .execution_options(synchronize_session="fetch")
    ).all()
    if not booking_ids:
        return 0
    payments = db.session.execute(
        update(Payment)
        .where(Payment.booking_id.in_(booking_ids), Payment.intent_id.is_(None), Payment.state == PaymentState.NEW)
        .values(state=PaymentState.CANCELLED)
        .returning(Payment.id)
        .execution_options(synchronize_session="fetch")
    ).scalars().all()
    transition = f"{BookingState.HELD}->{BookingState.EXPIRED}"
    payment_transition = f"{PaymentState.NEW}->{PaymentState.CANCELLED}"
    db.session.execute(insert(AuditEntry), [
        *({"subject": "booking", "subject_id": i, "action": transition, "data": {"reason": NEVER_PAID}}
          for i in booking_ids),
        *({"subject": "payment", "subject_id": i, "action": payment_transition, "data": {"reason": NEVER_PAID}}
          for i in payments),
    ])
    return len(booking_ids)


def _cancel_stranded_payments(now: datetime) -> None:
    """Cancel payments never taken to the provider whose hold a booking retired without them.

    retire_lapsed_holds cancels such a payment with its hold, but passes over
    one whose row another transaction holds (SKIP LOCKED), e.g. a run of ours
    that locked it and skipped its booking. Left alone it would stay "new"
    for an expired booking. Not counted: its hold was released (and counted) already.
    """
    stranded = (
        select(Payment.id).join(Booking, Booking.id == Payment.booking_id)
        .where(Booking.state == BookingState.EXPIRED, Booking.hold_expires_at > now - RETIRED_LOOKBACK,
               Payment.intent_id.is_(None), Payment.state == PaymentState.NEW)
        .with_for_update(of=Payment, skip_locked=True)
        .cte("stranded").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    ids = db.session.scalars(
        update(Payment).where(Payment.id.in_(select(stranded.c.id)), Payment.state == PaymentState.NEW)
        .values(state=PaymentState.CANCELLED).returning(Payment.id)
        .execution_options(synchronize_session="fetch")
    ).all()
    if ids:
        db.session.execute(insert(AuditEntry), [
            {"subject": "payment", "subject_id": i, "action": f"{PaymentState.NEW}->{PaymentState.CANCELLED}",
             "data": {"reason": "its hold was retired by an overlapping booking"}} for i in ids])


def _retired_with_an_intent(now: datetime):
    """Holds a booking over their lapsed slot retired (services.booking.retire_lapsed_holds) while their
    intent could still be paid: that booking may not ask the provider under the room lock, so we do.

    Within RETIRED_LOOKBACK of their expiry, so that the scan stays an index range; by then
    the provider has let any authorisation lapse.
    """
    return and_(Booking.state == BookingState.EXPIRED, Booking.hold_expires_at > now - RETIRED_LOOKBACK,
                Payment.state == PaymentState.PENDING, Payment.intent_id.is_not(None))


def _needs_the_provider(now: datetime):
    lapsed = and_(lapsed_hold_clause(now), or_(Payment.intent_id.is_not(None), Payment.state != PaymentState.NEW))
    return or_(lapsed, _retired_with_an_intent(now))


def _claim_next_payment(now: datetime, after: tuple | None) -> tuple[Payment | None, tuple | None]:
    """Lock the next expired hold's payment that no other run holds, in expiry order after `after`.

    PostgreSQL re-checks a row it had to wait for or found changed, but only
    the locked row (the payment), not the booking it was joined to: that
    booking is read as of the statement's start. If another run settled this
    payment and committed between that start and our lock, the claim still
    saw the hold as held, and settling it again would count it twice. So the
    booking is read again now that the payment is ours, and a hold that is no
    longer held and lapsed is let go without a count.
    """
    while True:
        query = (
            select(Payment, Booking.hold_expires_at).join(Booking, Booking.id == Payment.booking_id)
            .where(_needs_the_provider(now)).order_by(Booking.hold_expires_at, Payment.id).limit(1)
            .with_for_update(of=Payment, skip_locked=True)
        )
        if after is not None:
            expires_at, payment_id = after
            query = query.where(or_(Booking.hold_expires_at > expires_at,
                                    and_(Booking.hold_expires_at == expires_at, Payment.id > payment_id)))
        row = db.session.execute(query).first()
        if row is None:
            return None, after
        payment, expires_at = row
        after = (expires_at, payment.id)
        booking = db.session.get(Booking, payment.booking_id, populate_existing=True)
        if booking.state == BookingState.HELD and booking.hold_expires_at <= now:
            return payment, after
        if booking.state == BookingState.EXPIRED and payment.state == PaymentState.PENDING and payment.intent_id:
            return payment, after  # retired by a booking over it (_retired_with_an_intent)
        db.session.rollback()  # settled by someone else meanwhile: theirs to count


def _settle_with_the_provider(now: datetime, counts: Counter) -> None:
    """Settle each expired hold that has an intent, one transaction each, each payment once per run."""
    after = None
    while True:
        payment, after = _claim_next_payment(now, after)
        if payment is None:
            return
        payment_id = payment.id
        try:
            outcome = settle(payment, now=now)
            db.session.commit()
        except GatewayError as exc:
            db.session.rollback()  # left held; the next run asks again
            if exc.transient:
                outcome = "provider_unreachable"
            else:  # the provider said no to something we asked: a person should look
                current_app.logger.error("release_expired_holds: payment %s: the provider refused: %s",
                                         payment_id, exc.message)
                outcome = "provider_refused"
        except Exception:
            # One broken payment must not stop the others; it is logged and tried again next run.
            db.session.rollback()
            current_app.logger.exception("release_expired_holds: payment %s", payment_id)
            outcome = "error"
        counts[outcome] += 1
