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
- Bookings to be paid by a deadline (pay_mode "deadline") that are still unpaid
  at it are cancelled first, one transaction each (cancel_unpaid_past_deadline):
  the intent, if any, is released, the resident told, and for a counter booking
  staff get a case. The two ways above handle short holds only. A deadline
  booking that ended otherwise unpaid (retired by a booking over its lapsed
  slot) is told too, once.
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
from sqlalchemy import Integer, and_, any_, cast, exists, func, insert, literal, or_, select, union_all, update
from sqlalchemy.dialects.postgresql import ARRAY

from ..aftercommit import after_commit
from ..extensions import db
from ..models import AuditEntry, Booking, BookingState, Payment, PaymentState, record
from ..observability import pend_audit_entries
from ..payments import GatewayError, get_gateway
from ..timeutil import now_utc
from . import deadline, moves
from .attention import open_booking_case
from .booking import lapsed_hold_clause
from .checkout import PAID, release, settle

BATCH = 5000
NEVER_PAID = "hold expired before any payment"
RELEASED = f"{BookingState.HELD}->{BookingState.EXPIRED}"  # the audit actions of a release
CANCELLED = f"{PaymentState.NEW}->{PaymentState.CANCELLED}"
UNPAID_AT_DEADLINE = "unpaid at the payment deadline"
COUNTER_CASE = "counter_unpaid_past_deadline"
MOVED_UNPAID_CASE = "moved_difference_unpaid"  # a move's difference unpaid at its deadline: the carried fee refunded
# How far back retired holds are looked at again (see _retired_with_an_intent): card authorisations lapse in 7 days.
RETIRED_LOOKBACK = timedelta(days=8)


def release_expired_holds(*, now: datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """Release every hold past its expiry, in batches of `batch`; returns the count of each outcome.

    Outcomes: "released" (nothing was paid), "confirmed" (paid, the slot was
    still free), "refunded" (paid after the slot went to someone else),
    "waiting" (the provider is still processing), "provider_unreachable",
    "provider_refused" and "error" (left held for the next run; the last two are logged);
    for bookings to be paid by a deadline, "deadline_cancelled" and "deadline_told"
    (see cancel_unpaid_past_deadline).
    """
    now = now or now_utc()
    counts: Counter[str] = Counter()
    cancel_unpaid_past_deadline(now, counts)
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


def _lapsed_short_hold(now: datetime):
    """Lapsed holds of checkout ("pay now"); bookings past their payment deadline are cancelled on their own."""
    return and_(lapsed_hold_clause(now), Booking.pay_mode == "now")


def _never_paid(now: datetime):
    """Payments the resident never took to the provider: no intent, nothing authorised."""
    return and_(_lapsed_short_hold(now), Payment.intent_id.is_(None), Payment.state == PaymentState.NEW)


def _release_unpaid_batch(now: datetime, limit: int) -> int:
    """Release up to `limit` expired holds whose payment never started (and as many with no payment at all).

    The payment row is locked with its booking, as settle and cancellation
    lock it first: a resident opening the pay page or cancelling this hold
    right now holds it, and we skip the hold instead of releasing it under them.

    On PostgreSQL the batch is two statements (_release_set_based);
    elsewhere (SQLite) three: the bookings' UPDATE, the payments' UPDATE and the
    audit rows' INSERT. Both write the same rows.
    """
    order = (Booking.hold_expires_at, Booking.id)
    with_payment = (
        select(Payment.booking_id.label("id")).join(Booking, Booking.id == Payment.booking_id)
        .where(_never_paid(now)).order_by(*order).limit(limit)
        .with_for_update(of=[Payment, Booking], skip_locked=True)
        .cte("never_paid").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    without_payment = (
        select(Booking.id).where(_lapsed_short_hold(now), ~exists().where(Payment.booking_id == Booking.id))
        .order_by(*order).limit(limit)
        .with_for_update(of=Booking, skip_locked=True)
        .cte("no_payment").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    # MATERIALIZED: the claim runs once. As a plain subquery PostgreSQL may
    # run it again inside the join, and a second SKIP LOCKED scan can claim
    # other rows than the first.
    if db.session.get_bind().dialect.name == "postgresql":
        return _release_set_based(union_all(select(with_payment.c.id), select(without_payment.c.id)))
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
    db.session.execute(insert(AuditEntry), [
        *({"subject": "booking", "subject_id": i, "action": RELEASED, "data": {"reason": NEVER_PAID}}
          for i in booking_ids),
        *({"subject": "payment", "subject_id": i, "action": CANCELLED, "data": {"reason": NEVER_PAID}}
          for i in payments),
    ])
    return len(booking_ids)


def _release_set_based(claims) -> int:
    """The batch on PostgreSQL in two statements, each writing its own audit rows (INSERT ... SELECT from its
    RETURNING, in data-modifying CTEs): the claimed bookings are released, then their payments cancelled.

    The claim (`claims`: the MATERIALIZED never_paid and no_payment CTEs) runs once, with the bookings' UPDATE.
    The payments' UPDATE is a statement of its own, as on SQLite, so that it sees every payment committed by
    then: one opened for a claimed booking after the first statement's snapshot (the pay page of a hold
    about to lapse) is cancelled with it, not left for the next run. Only the booking ids travel, as one
    array; no row is bound one by one. The audit rows are the ones the other path writes, with one `at` for
    the batch; the metrics count them on commit as they count rows inserted one by one
    (observability.pend_audit_entries). Nothing is synchronised into the session: the caller commits right
    after, which expires whatever it holds.
    """
    bookings, payments = Booking.__table__, Payment.__table__
    at = now_utc()
    # id = ANY(the claimed ids as one array): PostgreSQL looks each up by the primary key. An IN (...) OR IN (...),
    # or a join it may hash, reads the whole table in every batch.
    claimed = claims.subquery("claimed")
    claimed_ids = cast(select(func.array_agg(claimed.c.id)).scalar_subquery(), ARRAY(Integer))
    released = (
        update(bookings).where(bookings.c.id == any_(claimed_ids), bookings.c.state == BookingState.HELD)
        .values(state=BookingState.EXPIRED, updated_at=at).returning(bookings.c.id).cte("released")
    )
    booking_ids = db.session.scalars(
        select(released.c.id).add_cte(_audit_rows("booking", released, RELEASED, at))).all()
    if not booking_ids:
        return 0
    cancelled = (
        update(payments)
        .where(payments.c.booking_id == any_(literal(booking_ids, ARRAY(Integer))), payments.c.intent_id.is_(None),
               payments.c.state == PaymentState.NEW)
        .values(state=PaymentState.CANCELLED, updated_at=at).returning(payments.c.id).cte("cancelled")
    )
    n_cancelled = db.session.scalar(
        select(func.count()).select_from(cancelled).add_cte(_audit_rows("payment", cancelled, CANCELLED, at)))
    pend_audit_entries(db.session(), "booking", RELEASED, len(booking_ids))
    pend_audit_entries(db.session(), "payment", CANCELLED, n_cancelled)
    return len(booking_ids)


def _audit_rows(subject: str, changed, action: str, at: datetime):
    """INSERT ... SELECT of one audit row for each id `changed` (a CTE's RETURNING) gives, as a CTE."""
    audit = AuditEntry.__table__
    rows = select(literal(at, audit.c.at.type), literal(subject, audit.c.subject.type), changed.c.id,
                  literal(action, audit.c.action.type), literal({"reason": NEVER_PAID}, audit.c.data.type))
    return insert(audit).from_select(["at", "subject", "subject_id", "action", "data"], rows).cte(f"{subject}_audit")


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
    lapsed = and_(_lapsed_short_hold(now), or_(Payment.intent_id.is_not(None), Payment.state != PaymentState.NEW))
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


# -- bookings to be paid by a deadline ------------------------------------------------------------

def _not_told():
    return ~exists().where(AuditEntry.subject == "booking", AuditEntry.subject_id == Booking.id,
                           AuditEntry.action == deadline.TOLD)


def _past_deadline(now: datetime):
    """Deadline bookings whose deadline has passed unpaid: still held (to cancel), or ended unpaid by another
    way and not yet told (a booking over the lapsed slot retired it: see services.booking.retire_lapsed_holds)."""
    ended_untold = and_(Booking.state == BookingState.EXPIRED, Booking.hold_expires_at > now - RETIRED_LOOKBACK,
                        Booking.hold_expires_at <= now, _not_told())
    return and_(Booking.pay_mode == "deadline", or_(lapsed_hold_clause(now), ended_untold))


def cancel_unpaid_past_deadline(now: datetime, counts: Counter) -> None:
    """Cancel each deadline booking still unpaid at its deadline, one transaction each; tell the resident.

    The booking becomes CANCELLED ("unpaid at the payment deadline"); an intent is
    released (checkout.release) after the provider is asked how it stands: money that
    did arrive (authorised, or captured) is a late payment, which checkout returns in
    full with a staff case; one still processing is left for the next run. The
    resident is mailed; for a counter booking staff get a case as well, to follow it up.

    The slot was free again the moment the deadline passed (active_clause), whether or
    not this ran. Rows are claimed as everywhere: the payment, then the booking, with
    FOR UPDATE SKIP LOCKED, judged on the rows as they are once locked.
    """
    ids = db.session.scalars(select(Booking.id).where(_past_deadline(now))
                             .order_by(Booking.hold_expires_at, Booking.id)).all()
    db.session.rollback()
    for booking_id in ids:
        try:
            outcome = _end_unpaid(booking_id, now)
            if outcome is None:
                db.session.rollback()  # someone else holds it, or it was paid or ended meanwhile
                continue
            db.session.commit()
        except GatewayError as exc:
            db.session.rollback()  # left as it is; the next run asks again
            outcome = "provider_unreachable" if exc.transient else "provider_refused"
            if not exc.transient:
                current_app.logger.error("cancel_unpaid_past_deadline: booking %s: the provider refused: %s",
                                         booking_id, exc.message)
        except Exception:
            db.session.rollback()
            current_app.logger.exception("cancel_unpaid_past_deadline: booking %s", booking_id)
            outcome = "error"
        counts[outcome] += 1


def _claim_past_deadline(booking_id: int, now: datetime) -> Booking | None:
    payment_id = db.session.scalar(select(Payment.id).where(Payment.booking_id == booking_id))
    if payment_id is not None and db.session.scalar(
            select(Payment.id).where(Payment.id == payment_id).with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)) is None:
        return None
    return db.session.scalar(
        select(Booking).where(Booking.id == booking_id, _past_deadline(now))
        .with_for_update(of=Booking, skip_locked=True).execution_options(populate_existing=True))


def _end_unpaid(booking_id: int, now: datetime) -> str | None:
    booking = _claim_past_deadline(booking_id, now)
    if booking is None:
        return None
    payment = booking.payment
    unsettled = payment is not None and payment.state in (PaymentState.NEW, PaymentState.PENDING, PaymentState.FAILED)
    if unsettled and payment.intent_id:
        intent = get_gateway().retrieve_intent(payment.intent_id)
        if intent.status in PAID:
            return settle(payment, now=now, intent=intent)  # paid too late: returned, resident and staff told
        if intent.status == "processing":
            return "waiting"
    if booking.state == BookingState.HELD:
        booking.transition(BookingState.CANCELLED, reason=UNPAID_AT_DEADLINE)
        db.session.flush()  # release reads the booking again under its lock
        outcome = "deadline_cancelled"
    else:
        outcome = "deadline_told"  # ended unpaid another way (retired by a booking over the lapsed slot)
    if unsettled:
        release(payment, booking, reason=UNPAID_AT_DEADLINE, state=PaymentState.CANCELLED, now=now)
    if booking.channel == "counter":
        open_booking_case(booking, COUNTER_CASE,
                          f"unpaid at the payment deadline {booking.hold_expires_at:%Y-%m-%d %H:%M} UTC")
    record("booking", booking.id, deadline.TOLD, reason=UNPAID_AT_DEADLINE)
    after_commit(deadline.cancelled_mail(booking))
    if carried := moves.carried_amount(booking):
        # A move left a difference to pay by the deadline, and it was not paid: the fee the resident had
        # paid before the move must not stay with the ward for no booking. It all goes back, and staff see it.
        open_booking_case(booking, MOVED_UNPAID_CASE, f"{carried} yen carried over by a move, refunded in full")
        db.session.flush()
        moves.refund_carried(booking, 100, reason="move", actor_id=None, now=now)
    return outcome
