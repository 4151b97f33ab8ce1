"""The expiry job: holds past their expiry are settled from the provider's state, once, in batches."""
import dataclasses
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.jobs import JOBS, build_scheduler
from reservations.models import Booking, BookingState, LedgerEntry, Payment, PaymentState, Receipt
from reservations.payments import get_gateway
from reservations.services import checkout
from reservations.services.expiry import release_expired_holds
from reservations.services.rules import division_slot
from reservations.timeutil import now_utc
from tests.helpers import (
    THREE_D_SECURE_CARD,
    audit_actions,
    book,
    booking_day,
    count,
    fetch_intent,
    finish_3d_secure,
    post_event,
    provider_down,
    run_together,
)

pytestmark = pytest.mark.payments

CODES = ("MORNING", "AFTERNOON", "EVENING")


def later(booking, minutes=1):
    return booking.hold_expires_at + timedelta(minutes=minutes)


def with_intent(booking):
    """The resident opened the pay page (an intent exists) and went no further."""
    checkout.ensure_intent(booking.payment)
    db.session.commit()
    return booking


def authorise(localstripe, booking):
    """The card was authorised at the provider; nothing of ours has settled it yet."""
    with_intent(booking)
    get_gateway().confirm_with_token(booking.payment.intent_id, localstripe.card_token(),
                                     payment_id=booking.payment.id)
    return booking


def several_holds(make_user, room, n, now):
    """n held bookings of n residents, on different slots."""
    day = booking_day()
    slots = [(day + timedelta(days=7 * (i // 3)), CODES[i % 3]) for i in range(n)]
    return [book(make_user(), room, (code,), day=d, now=now) for d, code in slots]


# -- what the job does with one hold ----------------------------------------------------------------

def test_an_expired_unpaid_hold_is_released_and_its_intent_canceled(app, localstripe, room, resident, now):
    booking = with_intent(book(resident, room, now=now))

    assert release_expired_holds(now=later(booking)) == {"released": 1}

    assert booking.state == BookingState.EXPIRED and booking.payment.state == PaymentState.CANCELLED
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "canceled"
    assert ("held->expired", "hold expired") in audit_actions("booking", booking.id)


def test_an_expired_hold_whose_pay_page_was_never_opened_is_released_without_the_provider(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    with provider_down(app):
        assert release_expired_holds(now=later(booking)) == {"released": 1}
    assert booking.state == BookingState.EXPIRED and booking.payment.state == PaymentState.CANCELLED


def test_a_live_hold_is_left_alone(app, localstripe, room, resident, now):
    booking = with_intent(book(resident, room, now=now))
    assert release_expired_holds(now=booking.hold_expires_at - timedelta(seconds=1)) == {}
    assert booking.state == BookingState.HELD
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "requires_payment_method"


def test_an_authorised_hold_past_its_expiry_is_confirmed_when_the_slot_is_free(
        app, localstripe, room, resident, now):
    booking = authorise(localstripe, book(resident, room, now=now))

    assert release_expired_holds(now=later(booking)) == {"confirmed": 1}

    assert booking.state == BookingState.CONFIRMED
    assert booking.payment.captured_amount == booking.price
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "succeeded"


def test_a_hold_stuck_in_3d_secure_past_its_expiry_is_released_and_charges_nothing(
        app, localstripe, room, resident, now):
    booking = book(resident, room, now=now)
    outcome, intent = checkout.pay(booking.payment, token=localstripe.card_token(THREE_D_SECURE_CARD), now=now)
    db.session.commit()
    assert outcome == "requires_action"

    assert release_expired_holds(now=later(booking)) == {"released": 1}

    assert booking.state == BookingState.EXPIRED and booking.payment.state == PaymentState.CANCELLED
    assert fetch_intent(localstripe, intent.id)["status"] == "canceled"
    assert finish_3d_secure(localstripe, intent.id, success=True).status_code == 400  # too late to pay
    assert booking.payment.captured_amount == 0 and count(LedgerEntry) == 0


class ReportsProcessing:
    """The real gateway, except that every intent reads as still processing.

    localstripe has a processing state only for half a second of an
    asynchronous (SEPA) charge, too short to test with; this stands in for it.
    """

    def __init__(self, gateway):
        self._gateway = gateway

    def __getattr__(self, name):
        return getattr(self._gateway, name)

    def retrieve_intent(self, intent_id):
        return dataclasses.replace(self._gateway.retrieve_intent(intent_id), status="processing")


def test_a_hold_whose_payment_is_processing_is_kept_for_the_next_run(app, localstripe, room, resident, now):
    booking = authorise(localstripe, book(resident, room, now=now))
    app.extensions["payment_gateway"] = ReportsProcessing(get_gateway())

    assert release_expired_holds(now=later(booking)) == {"waiting": 1}

    assert booking.state == BookingState.HELD and booking.payment.state == PaymentState.PENDING
    assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "requires_capture"
    app.extensions.pop("payment_gateway")
    assert release_expired_holds(now=later(booking, 2)) == {"confirmed": 1}  # the provider has decided


def test_with_the_provider_down_the_job_leaves_the_hold_for_the_next_run(app, localstripe, room, make_user, now):
    paid_for, never_opened = several_holds(make_user, room, 2, now)
    with_intent(paid_for)

    with provider_down(app):
        assert release_expired_holds(now=later(paid_for)) == {"provider_unreachable": 1, "released": 1}

    db.session.expire_all()
    assert paid_for.state == BookingState.HELD and paid_for.payment.state == PaymentState.PENDING
    assert never_opened.state == BookingState.EXPIRED
    assert release_expired_holds(now=later(paid_for)) == {"released": 1}
    assert paid_for.state == BookingState.EXPIRED
    assert fetch_intent(localstripe, paid_for.payment.intent_id)["status"] == "canceled"


def test_holds_without_a_payment_are_expired_too(app, localstripe, room, resident, now):
    from reservations.services.booking import place_hold  # a hold made before payments were switched on

    booking = place_hold(resident, room, division_slot(room, booking_day(), ["MORNING"]), now=now)
    db.session.commit()
    assert release_expired_holds(now=later(booking)) == {"released": 1}
    assert booking.state == BookingState.EXPIRED


# -- in batches, and never twice ---------------------------------------------------------------------------

def test_the_job_works_in_batches(app, localstripe, room, make_user, now):
    holds = several_holds(make_user, room, 5, now)
    when = later(holds[-1])

    runs = [sum(release_expired_holds(now=when, batch=2).values()) for _ in range(4)]

    assert runs == [2, 2, 1, 0]
    assert {b.state for b in holds} == {BookingState.EXPIRED}


def test_two_job_runs_at_once_never_handle_a_hold_twice(app, localstripe, room, make_user, now):
    holds = [with_intent(b) for b in several_holds(make_user, room, 6, now)]
    ids = [b.id for b in holds]
    when = later(holds[-1])
    db.session.rollback()

    results = run_together(app, lambda: release_expired_holds(now=when),
                           lambda: release_expired_holds(now=when))

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum((Counter(r) for r in results), Counter()) == {"released": 6}
    for booking_id in ids:
        booking = db.session.get(Booking, booking_id)
        assert booking.state == BookingState.EXPIRED
        assert [a for a, _ in audit_actions("booking", booking_id)] == ["held", "held->expired"]
        assert [a for a, _ in audit_actions("payment", booking.payment.id)] == [
            "created", "new->pending", "pending->cancelled"]


# -- the job and the webhook at once ---------------------------------------------------------------------

@pytest.mark.parametrize("round_", range(3))
def test_the_job_and_the_webhook_settling_one_payment_at_once_agree(
        app, client, localstripe, room, resident, now, round_):
    booking = authorise(localstripe, book(resident, room, (CODES[round_],), now=now))
    booking_id, intent = booking.id, fetch_intent(localstripe, booking.payment.intent_id)
    when = later(booking)  # for the job the hold has run out; for the webhook (real time) it has not
    db.session.rollback()

    job, webhook = run_together(
        app, lambda: release_expired_holds(now=when),
        lambda: post_event(client, localstripe, "payment_intent.succeeded", intent))

    assert job in ({}, {"confirmed": 1}), job
    assert webhook.status_code == 200 and webhook.json["outcome"] == "confirmed"
    booking = db.session.get(Booking, booking_id)
    assert booking.state == BookingState.CONFIRMED
    assert booking.payment.state == PaymentState.CAPTURED and booking.payment.captured_amount == booking.price
    assert count(LedgerEntry, LedgerEntry.kind == "capture") == 1 and count(Receipt) == 1
    assert [a for a, _ in audit_actions("booking", booking_id)].count("held->confirmed") == 1
    assert db.session.scalars(select(Payment.state)).all() == [PaymentState.CAPTURED]


def test_the_jobs_command_runs_the_expiry_job_once(app, runner, localstripe, room, resident):
    booking = with_intent(book(resident, room, now=now_utc() - timedelta(minutes=11)))
    booking_id = booking.id

    result = runner.invoke(args=["jobs", "once", "release_expired_holds"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "release_expired_holds: {'released': 1}"
    assert db.session.get(Booking, booking_id).state == BookingState.EXPIRED


def test_the_scheduler_runs_each_job_alone_and_coalesces_missed_runs(app):
    scheduler = build_scheduler(app)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {job.id for job in JOBS} >= {"release_expired_holds"}
    assert jobs["release_expired_holds"].trigger.interval.total_seconds() == 60
    assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())
    assert not scheduler.running  # building it never starts it: only `flask jobs run` does
