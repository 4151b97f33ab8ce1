"""What the payment tests share: a slot to pay for, localstripe seen from outside, signed events, races.

The booking day is two weeks ahead of the real clock, not a fixed date: the
webhook endpoint settles with the real time, so a hold made "now" in a test
must also be live for the endpoint.
"""
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import requests
from sqlalchemy import event, func, select

from reservations.extensions import db
from reservations.models import AttentionCase, AuditEntry
from reservations.services.booking import reserve
from reservations.services.rules import division_slot, is_holiday, is_year_end
from reservations.timeutil import business_date, now_utc

SECRET_KEY = "sk_test_localstripe"
OK_CARD = "4242424242424242"
THREE_D_SECURE_CARD = "4000002500003155"
DECLINED_CARD = "4000000000000341"


def booking_day() -> date:
    """A plain weekday (no public holiday) about two weeks ahead.

    Always inside the default booking window (which reaches at least a month
    ahead), outside the year-end break, and more than 7 days away, so the
    whole refund policy still lies ahead.
    """
    day = business_date(now_utc()) + timedelta(days=14)
    while is_holiday(day) or is_year_end(day):
        day += timedelta(days=1)
    return day


def book(user, room, codes=("MORNING",), *, now=None, day=None):
    """Reserve and commit, as the reserve page does: a held booking with a payment waiting."""
    slot = division_slot(room, day or booking_day(), list(codes))
    booking = reserve(user, room, slot, now=now or now_utc())
    db.session.commit()
    return booking


def attention_case(user, room, detail: str = "intent pi_123: 2800 yen") -> AttentionCase:
    """An open "paid after the slot was taken" case about a booking of `user` in `room`, committed."""
    booking = reserve(user, room, division_slot(room, date(2027, 2, 10), ["MORNING"]),
                      now=datetime(2027, 1, 10, 3, 0, tzinfo=UTC))
    db.session.flush()
    case = AttentionCase(booking_id=booking.id, building_id=room.building_id, reason="paid_after_slot_taken",
                         detail=detail)
    db.session.add(case)
    db.session.commit()
    return case


@contextmanager
def statements():
    """Every SQL statement the engine sends inside the block, in order."""
    sent: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def audit_actions(subject: str, subject_id: int) -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(AuditEntry.action, AuditEntry.data).where(AuditEntry.subject == subject,
                                                         AuditEntry.subject_id == subject_id)
        .order_by(AuditEntry.id)
    )
    return [(action, (data or {}).get("reason", "")) for action, data in rows]


def outbox(app) -> list:
    """The mails written so far, oldest first, parsed."""
    folder = Path(app.config["MAIL_OUTBOX_DIR"])
    if not folder.exists():
        return []
    return [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


# -- localstripe seen from outside (what the Stripe dashboard would show) ---------------------

def api(localstripe, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{localstripe.url}{path}", timeout=5,
                            headers={"Authorization": f"Bearer {SECRET_KEY}"}, **kwargs)


def fetch_intent(localstripe, intent_id: str) -> dict:
    response = api(localstripe, "GET", f"/v1/payment_intents/{intent_id}")
    response.raise_for_status()
    return response.json()


def intents_of(localstripe, payment_id: int) -> list[dict]:
    response = api(localstripe, "GET", "/v1/payment_intents", params={"limit": 100})
    response.raise_for_status()
    return [pi for pi in response.json()["data"] if pi["metadata"].get("payment_id") == str(payment_id)]


def refunds_at_provider(localstripe, charge_id: str) -> list[dict]:
    response = api(localstripe, "GET", "/v1/refunds", params={"charge": charge_id, "limit": 100})
    response.raise_for_status()
    return response.json()["data"]


def charge_id(intent: dict) -> str:
    charge = intent["latest_charge"]
    return charge if isinstance(charge, str) else charge["id"]


def finish_3d_secure(localstripe, intent_id: str, *, success: bool) -> requests.Response:
    """What the resident's bank page does at the end of the 3-D Secure challenge."""
    secret = fetch_intent(localstripe, intent_id)["client_secret"]
    return requests.post(f"{localstripe.url}/v1/payment_intents/{intent_id}/_authenticate",
                         params={"success": "true" if success else "false"},
                         json={"key": "pk_test_localstripe", "client_secret": secret}, timeout=5)


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def provider_down(app):
    """The payment provider cannot be reached: its address points at a closed port."""
    saved = app.config["STRIPE_API_BASE"]
    app.config["STRIPE_API_BASE"] = f"http://127.0.0.1:{closed_port()}"
    app.extensions.pop("payment_gateway", None)
    try:
        yield
    finally:
        app.config["STRIPE_API_BASE"] = saved
        app.extensions.pop("payment_gateway", None)


# -- webhooks --------------------------------------------------------------------------------

def signed(secret: str, payload: str, *, timestamp: int | None = None) -> dict:
    """The Stripe-Signature header Stripe computes for `payload`."""
    ts = timestamp or int(time.time())
    digest = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={ts},v1={digest}", "Content-Type": "application/json"}


def event_payload(event_type: str, obj: dict, *, event_id: str | None = None) -> str:
    return json.dumps({
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": event_type,
        "data": {"object": obj}, "created": int(time.time()), "api_version": "2020-08-27", "livemode": False,
    })


def post_event(client, localstripe, event_type: str, obj: dict, *, event_id: str | None = None):
    """Deliver a genuine (correctly signed) event to our endpoint, as Stripe would."""
    payload = event_payload(event_type, obj, event_id=event_id)
    return client.post("/webhooks/stripe", data=payload, headers=signed(localstripe.webhook_secret, payload))


# -- races -----------------------------------------------------------------------------------

def run_together(app, *calls, timeout: float = 60):
    """Run each call in its own thread, app context and database session, all released at once.

    Returns each call's result, or the exception it raised. The caller must
    have ended its own transaction first: on SQLite it would hold the write lock.
    """
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(n: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=timeout)
                results[n] = calls[n]()
                db.session.commit()
            except Exception as exc:  # reported to the test, which decides
                db.session.rollback()
                results[n] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout * 2)
    assert not any(t.is_alive() for t in threads), "a racing call never finished"
    return results


def suspension_for(booking_id: int) -> int:
    """A suspension in force of the booking's user, naming that booking as its no-show; made once, committed.

    For the back-office checks (the authorisation matrix, the page tour): the booking's building is the
    suspension's, so its staff see it and staff of other buildings do not.
    """
    from reservations.models import Booking, Suspension

    suspension = db.session.scalar(select(Suspension).where(Suspension.booking_ids == str(booking_id)))
    if suspension is None:
        start = now_utc()
        suspension = Suspension(user_id=db.session.get(Booking, booking_id).user_id, starts_at=start,
                                ends_at=start + timedelta(days=90), booking_ids=str(booking_id))
        db.session.add(suspension)
        db.session.flush()
    suspension_id = suspension.id
    db.session.commit()  # nothing left open: on SQLite the test's transaction would lock out a live server
    return suspension_id


def calendar_booking(user, room, day: date, code: str = "MORNING", *, state: str = "confirmed", price: int = 2800,
                     paid: bool = False, now: datetime | None = None, **fields):
    """A booking row of `room` on `day` in one division, in the state asked, written as it stands (no
    services): for pages that only show bookings (calendars, exports). `paid` adds a captured card payment.
    A held row's hold runs ten minutes past `now` unless `hold_expires_at` is given. Committed."""
    from reservations.models import Booking, Payment

    slot = division_slot(room, day, [code])
    if state == "held":
        fields.setdefault("hold_expires_at", (now or now_utc()) + timedelta(minutes=10))
    booking = Booking(user_id=user.id, room_id=room.id, start_at=slot.start_at, end_at=slot.end_at, state=state,
                      price=price, residency=user.residency, division_codes=code, **fields)
    db.session.add(booking)
    db.session.flush()
    if paid:
        db.session.add(Payment(booking_id=booking.id, amount=price, state="captured", captured_amount=price,
                               intent_id=f"pi_cal_{booking.id}_{uuid.uuid4().hex[:8]}"))
    db.session.commit()
    return booking


def movable_booking(booking_id: int) -> int:
    """A confirmed booking of the same user and room as `booking_id`, on 11 February 2027 (not paid: online
    payment may be on); made once, committed. For the page tour of the move page."""
    from reservations.models import Booking, BookingState

    like = db.session.get(Booking, booking_id)
    slot = division_slot(like.room, date(2027, 2, 11), ["MORNING"])
    booking = db.session.scalar(select(Booking).where(Booking.room_id == like.room_id,
                                                      Booking.start_at == slot.start_at))
    if booking is None:
        from reservations.services.booking import place_hold

        booking = place_hold(like.user, like.room, slot, now=datetime(2027, 1, 10, 3, 0, tzinfo=UTC))
        booking.transition(BookingState.CONFIRMED, reason="confirmed for the page tour")
        db.session.flush()
    movable_id = booking.id
    db.session.commit()
    return movable_id


def counter_booking(booking_id: int, staff_id: int, kind: str) -> int:
    """A walk-in's counter booking in the room of `booking_id` on 12 February 2027, made once and committed, for
    the back-office page tour: "cash" (paid, with its receipt), "cancelled" (paid, then cancelled for a ward
    reason: its printed notice) or "online" (to be paid by the deadline: its payment link)."""
    from reservations.models import Booking, User
    from reservations.services import counter
    from reservations.services.cancellation import cancel_by_staff

    codes = {"cash": "MORNING", "cancelled": "AFTERNOON", "online": "EVENING"}[kind]
    like, staff = db.session.get(Booking, booking_id), db.session.get(User, staff_id)
    slot = division_slot(like.room, date(2027, 2, 12), [codes])
    booking = db.session.scalar(select(Booking).where(Booking.room_id == like.room_id,
                                                      Booking.start_at == slot.start_at))
    at = datetime(2027, 1, 10, 3, 0, tzinfo=UTC)
    if booking is None:
        booking = counter.book_on_behalf(staff, like.room, slot, method="online" if kind == "online" else "cash",
                                         name="窓口 太郎", name_kana="マドグチ タロウ", phone="03-1234-5678",
                                         now=at).booking
        if kind == "cancelled":
            cancel_by_staff(booking, staff, "ward", "設備点検", now=at)
        db.session.flush()
    made_id = booking.id
    db.session.commit()
    return made_id


def ledger_booking(user, room, day: date, *, at: datetime, amount: int = 2800, method: str = "cash",
                   code: str = "MORNING", slip_number: str | None = None):
    """A confirmed booking of `room` on `day`, paid `amount` yen by `method` (cash, terminal or card) at `at`,
    with its one ledger row written by services/ledger.py, as the counter or checkout would. Committed.
    For finance tests that need money on given dates without going through the provider."""
    from reservations.models import Payment
    from reservations.services import ledger

    booking = calendar_booking(user, room, day, code, price=amount)
    provider = {"card": "stripe"}.get(method, method)
    payment = Payment(booking=booking, provider=provider, amount=amount, state="captured", captured_amount=amount,
                      slip_number=slip_number or ("T-1" if provider == "terminal" else None),
                      intent_id=f"pi_led_{booking.id}_{uuid.uuid4().hex[:8]}" if provider == "stripe" else None)
    db.session.add(payment)
    db.session.flush()
    reference = f"ch_led_{payment.id}" if provider == "stripe" else f"{provider}-{payment.id}"
    ledger.post(payment, "capture", amount, reference, at=at,
                charge_id=reference if provider == "stripe" else None)
    db.session.commit()
    return booking


def ledger_refund(booking, amount: int, *, at: datetime):
    """A refund of `amount` yen of `booking`'s payment that succeeded at `at`, with its ledger row. Committed."""
    from reservations.models import Refund
    from reservations.services import ledger

    payment = booking.payment
    refund = Refund(payment_id=payment.id, amount=amount, partial=amount < payment.captured_amount,
                    reason="staff", state="succeeded", created_at=at)
    payment.refunded_amount += amount
    db.session.add(refund)
    db.session.flush()
    entry = ledger.post(payment, "refund", amount, f"test-refund-{refund.id}", at=at)
    db.session.commit()
    return entry
