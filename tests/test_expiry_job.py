"""The expiry job: holds past their expiry are settled from the provider's state, once, in batches."""
import dataclasses
import logging
import os
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from reservations.extensions import db
from reservations.jobs import JOBS, build_scheduler, run_job
from reservations.models import (
    AttentionCase,
    Booking,
    BookingState,
    JobRun,
    LedgerEntry,
    Payment,
    PaymentState,
    Receipt,
    Room,
    User,
)
from reservations.payments import get_gateway
from reservations.services import checkout
from reservations.services.expiry import NEVER_PAID, release_expired_holds
from reservations.services.rules import closure_reason, division_slot
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
    """The resident opened the pay page (an intent exists) and went no further, while the hold was live."""
    checkout.ensure_intent(booking.payment, now=booking.created_at)
    db.session.commit()
    return booking


def authorise(localstripe, booking):
    """The card was authorised at the provider; nothing of ours has settled it yet."""
    with_intent(booking)
    get_gateway().confirm_with_token(booking.payment.intent_id, localstripe.card_token(),
                                     payment_key=booking.payment.idempotency_key)
    return booking


def several_holds(make_user, room, n, now):
    """n held bookings of n residents, on different slots."""
    days, day = [], booking_day()
    while len(days) * 3 < n:
        if closure_reason(room, day) is None:
            days.append(day)
        day += timedelta(days=1)
    slots = [(days[i // 3], CODES[i % 3]) for i in range(n)]
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

def test_one_run_drains_every_expired_hold_in_set_based_batches(app, localstripe, room, make_user, now):
    holds = several_holds(make_user, room, 7, now)
    never_opened, opened = holds[:5], [with_intent(b) for b in holds[5:]]
    when = later(opened[-1])
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert release_expired_holds(now=when, batch=2) == {"released": 7}
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)

    # The five that never reached the pay page: three set-based UPDATEs (2 + 2 + 1), and none per booking.
    releases = [s for s in statements if "UPDATE bookings" in s and "never_paid" in s]
    assert len(releases) == 3
    assert len([s for s in statements if s.lstrip().startswith("UPDATE bookings")]) == len(opened)
    assert release_expired_holds(now=when, batch=2) == {}
    for booking in never_opened:
        assert booking.state == BookingState.EXPIRED and booking.payment.state == PaymentState.CANCELLED
        assert audit_actions("booking", booking.id) == [("held", ""), ("held->expired", NEVER_PAID)]
        assert [a for a, _ in audit_actions("payment", booking.payment.id)] == ["created", "new->cancelled"]
    for booking in opened:
        assert booking.state == BookingState.EXPIRED
        assert fetch_intent(localstripe, booking.payment.intent_id)["status"] == "canceled"


# Opt-in stress: EXPIRY_STRESS_ROUNDS=50 pytest -k two_job_runs (with another process keeping a core busy).
ROUNDS = int(os.environ.get("EXPIRY_STRESS_ROUNDS", "1"))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_job_runs_at_once_never_handle_a_hold_twice(app, localstripe, room, make_user, now, round_):
    holds = several_holds(make_user, room, 12, now)
    opened = [with_intent(b) for b in holds[:6]]  # six with an intent, six that never reached the pay page
    ids = [b.id for b in holds]
    when = later(holds[-1])
    db.session.rollback()

    results = run_together(app, lambda: release_expired_holds(now=when, batch=2),
                           lambda: release_expired_holds(now=when, batch=2))

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum((Counter(r) for r in results), Counter()) == {"released": 12}, results
    for booking_id in ids:
        booking = db.session.get(Booking, booking_id)
        assert booking.state == BookingState.EXPIRED
        assert [a for a, _ in audit_actions("booking", booking_id)] == ["held", "held->expired"]
        assert [a for a, _ in audit_actions("payment", booking.payment.id)] == (
            ["created", "new->pending", "pending->cancelled"] if booking_id in {b.id for b in opened}
            else ["created", "new->cancelled"])


@pytest.mark.parametrize("round_", range(3))
def test_the_job_and_a_booking_retiring_the_same_lapsed_hold_handle_it_once(
        app, localstripe, room, make_user, now, round_):
    from reservations.services.booking import place_hold

    lapsed = book(make_user(), room, (CODES[round_],), now=now)  # never reached the pay page
    lapsed_id, newcomer_id, room_id, when = lapsed.id, make_user().id, room.id, later(lapsed)
    db.session.rollback()

    def take_the_slot():
        newcomer = db.session.get(User, newcomer_id)
        room_now = db.session.get(Room, room_id)
        return place_hold(newcomer, room_now, division_slot(room_now, booking_day(), [CODES[round_]]), now=when).id

    job, new_id = run_together(app, lambda: release_expired_holds(now=when), take_the_slot)

    assert job in ({}, {"released": 1}), job
    assert not isinstance(new_id, Exception), new_id
    assert [a for a, _ in audit_actions("booking", lapsed_id)] == ["held", "held->expired"]
    assert db.session.get(Booking, new_id).state == BookingState.HELD


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


def test_every_run_logs_one_line_with_its_counts_and_the_jobs_commands_show_it(
        app, runner, caplog, localstripe, room, make_user):
    holds = several_holds(make_user, room, 3, now_utc() - timedelta(minutes=11))
    with_intent(holds[0])
    app.logger.setLevel(logging.NOTSET)  # as a fresh process has it: WARNING, inherited from the root logger
    try:
        result = runner.invoke(args=["jobs", "once", "release_expired_holds"])
        assert result.exit_code == 0, result.output
        job = {j.id: j for j in JOBS}["release_expired_holds"]
        run_job(job)  # nothing left: still one line
    finally:
        app.logger.setLevel(logging.NOTSET)
    # The structured line of each run (reservations/observability.py): its job, outcome, counts and run id.
    lines = [r for r in caplog.records if r.name == "reservations.jobs" and r.fields["job"] == "release_expired_holds"]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    assert [(r.getMessage(), r.fields["outcome"], r.fields["counts"]) for r in lines] == [
        ("job release_expired_holds ok", "ok", {"released": 3}), ("job release_expired_holds ok", "ok", {})]
    assert [r.request_id for r in lines] == [str(run.id) for run in db.session.scalars(
        select(JobRun).order_by(JobRun.id))]


def test_the_scheduler_runs_each_job_alone_and_coalesces_missed_runs(app):
    scheduler = build_scheduler(app)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {job.id for job in JOBS} >= {"release_expired_holds"}
    assert jobs["release_expired_holds"].trigger.interval.total_seconds() == 60
    assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())
    assert not scheduler.running  # building it never starts it: only `flask jobs run` does


# -- holds a booking retired over their lapsed slot --------------------------------------------------------

def retire_by_booking(room, make_user, lapsed, codes=("MORNING",)):
    """Another resident books the slot once `lapsed` ran out: place_hold retires it, no job involved."""
    from reservations.services.booking import place_hold

    when = later(lapsed)
    other = place_hold(make_user(), room, division_slot(room, booking_day(), list(codes)), now=when)
    db.session.commit()
    assert lapsed.state == BookingState.EXPIRED
    return other, when


@pytest.mark.parametrize("paid_after", [False, True])
def test_a_retired_hold_whose_intent_could_still_be_paid_is_settled_by_the_next_run(
        app, localstripe, room, resident, make_user, now, paid_after):
    lapsed = book(resident, room, now=now)
    outcome, intent = checkout.pay(lapsed.payment, token=localstripe.card_token(THREE_D_SECURE_CARD), now=now)
    db.session.commit()
    assert outcome == "requires_action"
    other, when = retire_by_booking(room, make_user, lapsed)
    # The booking could not ask the provider under the room lock: the payment is left for the job.
    assert lapsed.payment.state == PaymentState.PENDING
    if paid_after:  # the resident finishes 3-D Secure after the slot went, and no webhook arrives
        assert finish_3d_secure(localstripe, intent.id, success=True).ok

    assert release_expired_holds(now=when) == ({"refunded": 1} if paid_after else {"released": 1})

    assert lapsed.state == BookingState.EXPIRED and other.state == BookingState.HELD
    assert lapsed.payment.state == PaymentState.CANCELLED and lapsed.payment.captured_amount == 0
    assert fetch_intent(localstripe, intent.id)["status"] == "canceled"  # nothing can be charged on it now
    assert count(LedgerEntry) == 0
    assert count(AttentionCase) == (1 if paid_after else 0)  # paid after the slot went: staff are told
    assert [a for a, _ in audit_actions("booking", lapsed.id)] == ["held", "held->expired"]
    assert release_expired_holds(now=later(lapsed, 2)) == {}  # once


def test_a_payment_left_new_for_a_retired_hold_is_cancelled_by_the_next_run(app, localstripe, room, resident, now):
    """What a retirement left before it cancelled such payments, or one whose row was busy (SKIP LOCKED)."""
    from sqlalchemy import update

    lapsed = book(resident, room, now=now)
    db.session.execute(update(Booking).where(Booking.id == lapsed.id).values(state=BookingState.EXPIRED))
    db.session.commit()

    assert release_expired_holds(now=later(lapsed)) == {}

    assert lapsed.payment.state == PaymentState.CANCELLED
    assert [a for a, _ in audit_actions("payment", lapsed.payment.id)] == ["created", "new->cancelled"]
    assert count(Payment, Payment.state == PaymentState.NEW) == 0
