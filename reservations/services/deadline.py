"""Reserve now, pay by a deadline: when a booking of a room must be paid, and until when it is held.

A room's payment mode (Room.payment_mode) is "now" (the short hold of checkout, HOLD_MINUTES or the
room's own hold time) or "deadline": the booking is made at once and held until 23:59 (deadline_time)
`deadline_days_before` days before the day of use, payable online from My bookings until then.

Both are the same held booking: hold_expires_at is the end of the hold or the deadline, so everything
that already knows holds (active_clause, the overlap rule, settle's late payments, the expiry job)
knows deadlines too. An unpaid booking past its deadline occupies nothing, whether or not a job ran.
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import contains_eager

from ..aftercommit import after_commit
from ..extensions import db
from ..i18n import gettext as _
from ..links import external_url
from ..mail import send_mail
from ..models import Booking, BookingState, PaymentMode, Room, record
from ..timeutil import at_tokyo, business_date, now_utc
from .exemptions import is_pending


@dataclass(frozen=True)
class Hold:
    pay_mode: str  # "now" | "deadline" (Booking.pay_mode)
    expires_at: datetime


def hold_minutes(room: Room) -> int:
    return room.hold_minutes or current_app.config["HOLD_MINUTES"]


# "Pay by 23:59" includes the minute 23:59 itself: a payment at 23:59:30 is in time. The hold ends at
# the last instant of that minute (holds are live while hold_expires_at > now), and at 00:00 it has lapsed.
LAST_INSTANT_OF_THE_MINUTE = timedelta(minutes=1, microseconds=-1)


def payment_deadline(room: Room, start_at: datetime) -> datetime:
    """The end of the last minute to pay: the minute deadline_time (Tokyo) on the day `deadline_days_before`
    days before the day of use, to its last instant (pages show it as that minute, e.g. 23:59)."""
    day = business_date(start_at) - timedelta(days=room.deadline_days_before)
    return at_tokyo(day, room.deadline_time) + LAST_INSTANT_OF_THE_MINUTE


def hold_for(room: Room, start_at: datetime, now: datetime, *, deadline: bool | None = None) -> Hold:
    """How a new booking of `room` at `start_at` is held: by the room's payment mode, unless `deadline`
    says otherwise (a counter booking paid online by the deadline, whatever the room's mode).

    A deadline that is no later than a pay-now hold would be (a booking made within the last days)
    leaves nothing to wait for: it is paid now, on the short hold.
    """
    short = now + timedelta(minutes=hold_minutes(room))
    wants_deadline = room.payment_mode == PaymentMode.DEADLINE if deadline is None else deadline
    if wants_deadline:
        due = min(payment_deadline(room, start_at), start_at)
        if due > short:
            return Hold("deadline", due)
    return Hold("now", short)


# --- reminders ----------------------------------------------------------------------------------
#
# Booking.reminders_sent: 0 none yet, 1 the first (Room.reminder_days_before days before the deadline's day),
# 2 the one on the deadline's day. Each goes out once, at REMINDER_TIME (Tokyo) on its day, or at the start of
# the day when the deadline comes before that time. A reminder whose time had passed when the booking was made
# is never sent (the resident has just booked), and a job that was stopped sends only the latest one due.

REMINDER_TIME = time(9, 0)
FIRST, DEADLINE_DAY = 1, 2
# The audit action that says the resident was told their deadline booking ended unpaid (or that a payment
# after it was returned): the expiry job tells each resident once (services.expiry.cancel_unpaid_past_deadline).
TOLD = "told: ended unpaid at the payment deadline"


def _reminder_at(day: date, deadline: datetime) -> datetime:
    at = at_tokyo(day, REMINDER_TIME)
    return at if at < deadline else at_tokyo(day, time(0))


def reminder_times(booking: Booking) -> dict[int, datetime]:
    """When each reminder of a deadline booking is due: {FIRST: ..., DEADLINE_DAY: ...} (no FIRST when N is 0)."""
    deadline = booking.hold_expires_at
    day = business_date(deadline)
    times = {DEADLINE_DAY: _reminder_at(day, deadline)}
    if booking.room.reminder_days_before > 0:
        times[FIRST] = _reminder_at(day - timedelta(days=booking.room.reminder_days_before), deadline)
    return times


def reminder_due(booking: Booking, now: datetime) -> int:
    """The reminder to send now (FIRST or DEADLINE_DAY), or 0: only to a live, unpaid deadline booking."""
    if booking.pay_mode != "deadline" or not booking.hold_is_live(now) or booking.reminders_sent >= DEADLINE_DAY:
        return 0
    if is_pending(booking):
        return 0  # nothing is due until staff decide on its exemption
    for stage in (DEADLINE_DAY, FIRST):  # the latest one due, never two at once
        at = reminder_times(booking).get(stage)
        if at is not None and booking.reminders_sent < stage and booking.created_at < at <= now:
            return stage
    return 0


def send_payment_reminders(*, now: datetime | None = None) -> dict[str, int]:
    """The reminder job: mail each live deadline booking its reminder when due, once; returns the counts.

    Candidates are read without a lock, then each due one is claimed with FOR UPDATE SKIP
    LOCKED, judged again on the row as it is once locked, marked (reminders_sent, audited)
    and committed with its mail sent after the commit: a second run at the same moment skips
    the row or finds it marked, so a reminder goes out once.
    """
    now = now or now_utc()
    counts = {"first": 0, "deadline_day": 0}
    longest = db.session.scalar(select(func.max(Room.reminder_days_before))) or 0
    candidates = db.session.scalars(
        select(Booking).join(Room, Room.id == Booking.room_id)
        .where(Booking.state == BookingState.HELD, Booking.pay_mode == "deadline", Booking.hold_expires_at > now,
               Booking.hold_expires_at <= now + timedelta(days=longest + 1), Booking.reminders_sent < DEADLINE_DAY)
        .options(contains_eager(Booking.room)).order_by(Booking.hold_expires_at, Booking.id)
    ).all()
    due = [b.id for b in candidates if reminder_due(b, now)]
    db.session.rollback()
    for booking_id in due:
        booking = db.session.scalar(
            select(Booking).where(Booking.id == booking_id).with_for_update(skip_locked=True)
            .execution_options(populate_existing=True))
        stage = reminder_due(booking, now) if booking is not None else 0
        if not stage:
            db.session.rollback()  # another run holds it, sent it, or it was paid or cancelled meanwhile
            continue
        before, booking.reminders_sent = booking.reminders_sent, stage
        record("booking", booking.id, "payment reminder sent", reminder="first" if stage == FIRST else "deadline_day",
               before=before, after=stage)
        after_commit(_reminder_mail(booking, stage))
        db.session.commit()
        counts["first" if stage == FIRST else "deadline_day"] += 1
    return counts


def pay_url(booking: Booking) -> str:
    """Where a mail sends the resident to pay: My bookings' pay page, or the signed link for a counter booking
    (a walk-in has no account to sign in with)."""
    if booking.channel == "counter":
        return payment_link(booking)
    return external_url("bookings.pay_page", booking_id=booking.id)


def _reminder_mail(booking: Booking, stage: int):
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        if stage == FIRST:
            subject = _("Reminder: please pay for your booking by the deadline")
        else:
            subject = _("Today is the payment deadline of your booking")
        body = render_template("bookings/payment_reminder_mail.txt", booking=booking,
                               deadline_day=stage == DEADLINE_DAY, link=pay_url(booking))
    return partial(send_mail, booking.user.email, subject, body)


def cancelled_mail(booking: Booking):
    """The mail that tells the resident their unpaid booking was cancelled at the deadline (sent after the commit)."""
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("Your booking was cancelled: it was not paid by the deadline")
        body = render_template(
            "bookings/deadline_cancelled_mail.txt", booking=booking,
            link=external_url("bookings.detail", booking_id=booking.id) if booking.channel != "counter" else None,
            room_link=external_url("public.room", room_id=booking.room_id))
    return partial(send_mail, booking.user.email, subject, body)


# --- the signed payment link --------------------------------------------------------------------
#
# A counter booking paid online may be a walk-in's, who has no account: the link itself is the key, to
# that one booking's checkout only, until its deadline. It carries the booking id and the deadline, signed
# with SECRET_KEY (salt "payment-link"); the deadline inside is the link's expiry (its max age is the time
# from signing to the deadline), and a booking that is no longer payable does not open either.

LINK_SALT = "payment-link"


def _link_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=LINK_SALT)


def payment_link(booking: Booking) -> str:
    """The absolute, signed link that opens this booking's checkout without logging in, until its deadline."""
    return external_url("bookings.pay_by_link_page", token=link_token(booking))


def link_token(booking: Booking) -> str:
    return _link_serializer().dumps([booking.id, int(booking.hold_expires_at.timestamp())])


def booking_of_link(token: str, *, now: datetime | None = None, expired_too: bool = False) -> Booking | None:
    """The booking a payment link opens, or None: a forged or altered token, one past its deadline, or one
    for a booking that was never to be paid by a deadline.

    `expired_too` accepts a genuine link past its deadline: only to ask the provider how a payment
    begun before it ended (after 3-D Secure), which settles as a late payment, never to pay anew.
    """
    now = now or now_utc()
    try:
        payload = _link_serializer().loads(token)
    except BadSignature:
        return None
    if not (isinstance(payload, list) and len(payload) == 2 and all(type(v) is int for v in payload)):
        return None
    booking_id, until = payload
    if now.timestamp() >= until and not expired_too:
        return None  # expired: the deadline it was made for has passed
    booking = db.session.get(Booking, booking_id)
    if booking is None or booking.pay_mode != "deadline" or booking.is_block:
        return None
    return booking
