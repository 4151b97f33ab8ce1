"""What one set-based release batch of the expiry job writes, row by row, on both databases.

PostgreSQL releases a batch in one statement (INSERT ... SELECT for the audit rows), SQLite in three: the
audit rows, the rows' updated_at and the metrics must come out the same either way.
"""
from datetime import timedelta

import pytest
from sqlalchemy import select

from reservations import observability
from reservations.extensions import db
from reservations.models import AuditEntry, Booking, BookingState, Payment, PaymentState
from reservations.services import expiry
from reservations.services.booking import place_hold
from reservations.services.rules import closure_reason, division_slot
from reservations.timeutil import now_utc
from tests.helpers import booking_day
from tests.test_expiry_job import later, several_holds

pytestmark = pytest.mark.payments

EXPIRED = ("reservations_releases_total", {"state": "expired", "was": "held"})
CANCELLED = ("reservations_releases_total", {"state": "cancelled", "was": "held"})


def value(sample) -> float:
    name, labels = sample
    return observability.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_run_writes_one_audit_row_per_change_with_its_reason_and_counts_each_release_once(
        app, localstripe, room, make_user, now):
    holds = several_holds(make_user, room, 5, now)  # each with a payment never taken to the provider
    # several_holds took the first two open days' morning and afternoon, and the first one's evening.
    open_days = (booking_day() + timedelta(days=n) for n in range(60))
    second = [day for day in open_days if closure_reason(room, day) is None][1]
    bare = place_hold(make_user(), room, division_slot(room, second, ["EVENING"]), now=now)  # no payment at all
    db.session.commit()
    bookings = {b.id for b in [*holds, bare]}
    payments = {b.payment.id for b in holds}
    last_entry = db.session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    before = (value(EXPIRED), value(CANCELLED))
    started = now_utc()

    assert expiry.release_expired_holds(now=later(holds[-1]), batch=2) == {"released": 6}

    ended = now_utc()
    assert (value(EXPIRED) - before[0], value(CANCELLED) - before[1]) == (6, 0)
    entries = db.session.scalars(select(AuditEntry).where(AuditEntry.id > last_entry)).all()
    assert sorted((e.subject, e.subject_id) for e in entries) == sorted(
        [*(("booking", i) for i in bookings), *(("payment", i) for i in payments)])
    for entry in entries:
        assert entry.action == {"booking": "held->expired", "payment": "new->cancelled"}[entry.subject]
        assert entry.data == {"reason": expiry.NEVER_PAID} and entry.actor_id is None
        assert started <= entry.at <= ended
    for booking in db.session.scalars(select(Booking).where(Booking.id.in_(bookings))):
        assert booking.state == BookingState.EXPIRED and started <= booking.updated_at <= ended
    for payment in db.session.scalars(select(Payment).where(Payment.id.in_(payments))):
        assert payment.state == PaymentState.CANCELLED and started <= payment.updated_at <= ended


def test_a_batch_rolled_back_writes_and_counts_nothing_and_the_next_counts_once(
        app, localstripe, room, make_user, now):
    holds = several_holds(make_user, room, 3, now)
    ids = [b.id for b in holds]
    when = later(holds[-1])
    entries = db.session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    before = value(EXPIRED)

    assert expiry._release_unpaid_batch(when, 10) == 3
    db.session.rollback()

    assert value(EXPIRED) == before
    assert db.session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1)) == entries
    assert set(db.session.scalars(select(Booking.state).where(Booking.id.in_(ids)))) == {BookingState.HELD}

    assert expiry._release_unpaid_batch(when, 10) == 3
    db.session.commit()
    assert value(EXPIRED) - before == 3
    db.session.commit()  # a later, empty commit counts nothing again
    assert value(EXPIRED) - before == 3
