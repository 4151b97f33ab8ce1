"""Fault drill (issue 11, "2. Fault drills"): the scheduler is stopped for an hour, then restarted.

No slot was ever blocked by an expired hold or a missed deadline, and the catch-up run is correct.
In-process on both databases against the real localstripe, the clock moved with time_machine and frozen at each
moment; the restart runs what reservations/jobs.py build_scheduler runs as it starts (every job at once,
next_run_time=now, each through run_scheduled), in the order of JOBS, at one frozen instant.
"""
from datetime import time, timedelta
from html import unescape

import pytest
import time_machine
from sqlalchemy import select

from reservations.extensions import db
from reservations.jobs import JOBS, run_scheduled
from reservations.models import Booking, BookingState, JobRun, LedgerEntry, PaymentState
from reservations.payments import get_gateway
from reservations.services import availability, checkout, deadline
from reservations.services.rules import is_year_end
from reservations.timeutil import at_tokyo, business_date, now_utc
from tests.helpers import audit_actions, book, count, fetch_intent, outbox

pytestmark = pytest.mark.payments


def at(moment):
    """The clock stands still at `moment` for everything in the block: pages, services, jobs and their ticks."""
    return time_machine.travel(moment, tick=False)


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def free_on_the_page(client, room, day, code: str) -> bool:
    """Whether the room's public day page offers the division (its checkbox is not disabled)."""
    html = text(client.get(f"/rooms/{room.id}/days/{day}"))
    if f'value="{code}" id="unit-{code}">' in html:
        return True
    assert f'value="{code}" id="unit-{code}" disabled>' in html
    return False


def reserve_on_page(client, login_as, user, room, day, code: str, price: int) -> int:
    login_as(user)
    response = client.post(f"/rooms/{room.id}/book", data={
        "date": day.isoformat(), "divisions": [code], "expected_price": str(price)})
    made = db.session.scalars(select(Booking).order_by(Booking.id.desc())).first()
    assert response.status_code == 302 and response.headers["Location"] == f"/bookings/{made.id}/pay"
    return made.id


def first_quiet_day():
    """A day D about a week ahead such that D-1 .. D+3 are all bookable online (no year-end break)."""
    day = business_date(now_utc()) + timedelta(days=7)
    while any(is_year_end(day + timedelta(days=k)) for k in range(-1, 4)):
        day += timedelta(days=1)
    return day


def actions(booking_id: int) -> list[str]:
    return [a for a, _ in audit_actions("booking", booking_id)]


def test_an_hour_without_a_scheduler_blocks_no_slot_and_the_restart_catches_up_once(
        app, client, login_as, localstripe, make_room, make_user):
    """Drill "the scheduler is stopped for an hour, then restarted". From 23:30 to 00:30 Tokyo nobody runs a
    job while short holds lapse unpaid, a booking's pay-by deadline (23:59) passes and a reminder falls due
    (00:00, a deadline at 08:00). Meanwhile nothing is blocked: a lapsed hold's slot is booked by another
    resident (the booking retires it), and the public pages show lapsed holds and the missed deadline as
    free. At the restart every job runs once, as the scheduler runs them on start: each lapsed hold released
    once (the one authorised at the provider confirmed, its slot being free), the unpaid deadline booking
    cancelled and its intent released, the one retired by a booking over it told, the reminder sent once,
    nothing live touched; job_runs has one row per job, and a second scheduler at the same instant skips all."""
    now_room = make_room("音楽室")  # pay now: a ten-minute hold
    by_deadline = make_room("和室", payment_mode="deadline", deadline_days_before=3, deadline_time=time(23, 59),
                            reminder_days_before=0)
    early = make_room("会議室", payment_mode="deadline", deadline_days_before=3, deadline_time=time(8, 0),
                      reminder_days_before=1)
    people = [make_user(locale="en") for _ in range(8)]
    emails = [p.email for p in people]
    d = first_quiet_day()
    use_day, deadline_use_day, early_use_day = d + timedelta(days=2), d + timedelta(days=2), d + timedelta(days=3)
    t0 = at_tokyo(d - timedelta(days=1), time(23, 30))  # the scheduler stops
    restart = t0 + timedelta(hours=1)

    with at(t0):
        never_opened = book(people[0], now_room, ("MORNING",), day=use_day)  # no pay page: no intent
        opened = book(people[1], now_room, ("AFTERNOON",), day=use_day)
        checkout.ensure_intent(opened.payment)  # pay page opened, no card given
        authorised = book(people[2], now_room, ("EVENING",), day=use_day)
        checkout.ensure_intent(authorised.payment)
        db.session.commit()
        # Card authorised at the provider; the resident's browser went away and no event reached us.
        get_gateway().confirm_with_token(authorised.payment.intent_id, localstripe.card_token(),
                                         payment_key=authorised.payment.idempotency_key)
        unpaid = book(people[3], by_deadline, ("MORNING",), day=deadline_use_day)
        checkout.ensure_intent(unpaid.payment)
        db.session.commit()
        retired = book(people[4], by_deadline, ("AFTERNOON",), day=deadline_use_day)
        reminded = book(people[5], early, ("MORNING",), day=early_use_day)
    ids = {name: b.id for name, b in [("never_opened", never_opened), ("opened", opened), ("authorised", authorised),
                                      ("unpaid", unpaid), ("retired", retired), ("reminded", reminded)]}
    assert {b.pay_mode for b in (unpaid, retired, reminded)} == {"deadline"}
    assert unpaid.hold_expires_at <= t0 + timedelta(minutes=30) < reminded.hold_expires_at
    assert deadline.reminder_times(reminded)[deadline.DEADLINE_DAY] == t0 + timedelta(minutes=30)
    intents = {name: b.payment.intent_id for name, b in [("opened", opened), ("authorised", authorised),
                                                         ("unpaid", unpaid)]}

    # 23:50: the short holds ran out at 23:40, nobody released them. Their slots are free for everyone.
    with at(t0 + timedelta(minutes=20)):
        assert free_on_the_page(client, now_room, use_day, "AFTERNOON")
        assert free_on_the_page(client, now_room, use_day, "EVENING")
        statuses = {u.code: u.status for u in availability.day_availability(now_room, use_day).units}
        assert statuses == {"MORNING": "free", "AFTERNOON": "free", "EVENING": "free"}
        newcomer = reserve_on_page(client, login_as, people[6], now_room, use_day, "MORNING", 2800)
        assert not free_on_the_page(client, now_room, use_day, "MORNING")  # the newcomer's live hold
    db.session.expire_all()
    assert db.session.get(Booking, ids["never_opened"]).state == BookingState.EXPIRED  # retired by that booking
    assert {db.session.get(Booking, ids[n]).state for n in ("opened", "authorised")} == {BookingState.HELD}

    # 00:15: the 23:59 deadline has passed unpaid, and no job cancelled it; its slot is free all the same.
    with at(t0 + timedelta(minutes=45)):
        assert free_on_the_page(client, by_deadline, deadline_use_day, "MORNING")
        assert free_on_the_page(client, by_deadline, deadline_use_day, "AFTERNOON")
    # 00:22: a last resident takes the other missed deadline's slot (a short hold now: the deadline is past).
    with at(t0 + timedelta(minutes=52)):
        late_comer = reserve_on_page(client, login_as, people[7], by_deadline, deadline_use_day, "AFTERNOON", 3600)
    db.session.expire_all()
    assert db.session.get(Booking, late_comer).pay_mode == "now"
    assert db.session.get(Booking, ids["retired"]).state == BookingState.EXPIRED
    assert db.session.get(Booking, ids["unpaid"]).state == BookingState.HELD  # still a row; it occupies nothing
    mails_before = len(outbox(app))

    # 00:30: the scheduler starts again and runs every job at once, in the order of the table.
    with at(restart):
        results = {job.id: run_scheduled(job) for job in JOBS}
        again = [run_scheduled(job) for job in JOBS]  # a second scheduler started at the same instant

    assert results["release_expired_holds"] == {"deadline_cancelled": 1, "deadline_told": 1, "released": 2,
                                                "confirmed": 1}
    assert results["send_payment_reminders"] == {"first": 0, "deadline_day": 1}
    assert results["capture_confirmed_authorisations"] == {}  # the confirmation captured at once
    assert again == [None] * len(JOBS)
    runs = db.session.execute(select(JobRun.job_id, JobRun.outcome)).all()
    assert sorted(runs) == sorted((job.id, "ok") for job in JOBS)

    get = {name: db.session.get(Booking, i) for name, i in ids.items()}
    # Each lapsed hold released once; the one paid at the provider confirmed, its slot being free.
    assert actions(ids["never_opened"]) == actions(ids["opened"]) == actions(newcomer) == ["held", "held->expired"]
    assert get["opened"].payment.state == PaymentState.CANCELLED
    assert fetch_intent(localstripe, intents["opened"])["status"] == "canceled"
    assert actions(ids["authorised"]) == ["held", "held->confirmed"]
    assert (get["authorised"].payment.state, get["authorised"].payment.captured_amount) == (
        PaymentState.CAPTURED, 3600)
    assert count(LedgerEntry) == 1
    # The missed deadlines: the unpaid one cancelled and its intent released; the retired one told; once each.
    assert actions(ids["unpaid"]) == ["held", "held->cancelled", deadline.TOLD]
    assert fetch_intent(localstripe, intents["unpaid"])["status"] == "canceled"
    assert actions(ids["retired"]) == ["held", "held->expired", deadline.TOLD]
    # Nothing live was touched: the late comer's hold, and the booking whose deadline is at 08:00 (reminded).
    assert actions(late_comer) == ["held"] and db.session.get(Booking, late_comer).state == BookingState.HELD
    assert actions(ids["reminded"]) == ["held", "payment reminder sent"]
    assert (get["reminded"].state, get["reminded"].reminders_sent) == (BookingState.HELD, deadline.DEADLINE_DAY)
    # The mails of the catch-up, once each (the second scheduler sent none).
    mails = {(m["To"], str(m["Subject"])) for m in outbox(app)[mails_before:]}
    assert len(outbox(app)) - mails_before == len(mails) == 4, mails
    told = "Your booking was cancelled: it was not paid by the deadline"
    assert {(emails[3], told), (emails[4], told), (emails[5], "Today is the payment deadline of your booking")} < mails
    assert {to for to, _ in mails} == {emails[n] for n in (2, 3, 4, 5)}  # and the confirmed one's receipt
