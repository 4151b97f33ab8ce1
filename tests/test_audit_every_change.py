"""Every state change leaves an audit entry, in the same transaction: a booking, a payment, a price,
the setup, a role. One walk through the back office's changes, then a check that each booking's and
each payment's current state is where its trail of "before->after" entries ends."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from reservations.extensions import db
from reservations.models import AuditEntry, Booking, Division, Payment, Role
from reservations.services import attendance, blocks, cancellation, counter, moves, setup, staff_accounts
from reservations.services.rules import division_slot
from tests.helpers import booking_day

pytestmark = pytest.mark.payments


def entries() -> int:
    return db.session.scalar(select(func.count(AuditEntry.id)))


def last(subject: str, subject_id: int) -> AuditEntry:
    return db.session.scalar(select(AuditEntry)
                             .where(AuditEntry.subject == subject, AuditEntry.subject_id == subject_id)
                             .order_by(AuditEntry.id.desc()).limit(1))


# How a row starts, by the entry that made it: a booking is held, or made confirmed (a block, a move).
CREATED_AS = {"held": "held", "confirmed": "confirmed", "blocked": "confirmed", "created": "new"}


def trail_ends_at(subject: str, subject_id: int) -> str:
    """Replay the entries of a row from the one that made it: the state its "before->after" entries leave."""
    state = None
    for action in db.session.scalars(select(AuditEntry.action).where(
            AuditEntry.subject == subject, AuditEntry.subject_id == subject_id).order_by(AuditEntry.id)):
        if "->" in action:
            before, after = action.split("->", 1)
            assert state in (None, before), f"{subject} {subject_id}: {action} after {state}"
            state = after
        elif state is None and action in CREATED_AS:
            state = CREATED_AS[action]
    return state


def test_each_change_is_audited_and_every_state_is_where_its_trail_ends(
        app, paid, room, make_room, make_user, resident, now):
    staff = make_user("staff@example.com", role=Role.STAFF)
    admin = make_user("admin@example.com", role=Role.ADMIN)
    day = booking_day()
    steps = []

    def step(name, action, subject_check):
        before = entries()
        action()
        db.session.commit()
        assert entries() > before, f"{name}: no audit entry"
        entry = subject_check()
        assert entry is not None, name
        steps.append((name, entry.action))

    # A price (the setup): before and after are kept, and who changed it.
    division = db.session.scalar(select(Division).where(Division.room_id == room.id, Division.code == "EVENING"))
    values = {name: getattr(division, name) for name in setup.DIVISION_FIELDS} | {"weekday_fee": 4000}
    step("price", lambda: setup.update_division(division, staff, values, now), lambda: last("division", division.id))
    entry = last("division", division.id)
    assert entry.actor_id == staff.id and entry.data["before"]["weekday_fee"] == 3600
    assert entry.data["after"]["weekday_fee"] == 4000
    # A role.
    other = make_user("other@example.com", role=Role.STAFF)
    step("role", lambda: staff_accounts.update_account(admin, other, role=Role.FINANCE, building_ids=[]),
         lambda: last("user", other.id))
    # A counter booking paid in cash, a block, a move, a staff cancellation, a no-show.
    held = {}
    step("counter cash", lambda: held.setdefault("b", counter.book_on_behalf(
        staff, room, division_slot(room, day, ["AFTERNOON"]), method="cash", user=resident, now=now).booking),
        lambda: last("payment", held["b"].payment.id))
    block = {}
    step("block", lambda: block.setdefault("b", blocks.place_block(
        staff, room, division_slot(room, day + timedelta(days=1), ["MORNING"]), note="点検", now=now)),
        lambda: last("booking", block["b"].id))
    moved = {}
    step("move", lambda: moved.setdefault("r", moves.move_booking(
        paid, room, division_slot(room, day + timedelta(days=2), ["MORNING"]), staff=staff, now=now)),
        lambda: last("booking", moved["r"].new.id))
    step("cancel", lambda: cancellation.cancel_by_staff(held["b"], staff, "ward", "設備故障", now=now),
         lambda: last("booking", held["b"].id))
    new = moved["r"].new
    step("no-show", lambda: attendance.mark_no_show(new, staff, now=new.start_at + timedelta(minutes=30)),
         lambda: last("booking", new.id))

    assert [name for name, _ in steps] == ["price", "role", "counter cash", "block", "move", "cancel", "no-show"]
    # Every booking and payment is in the state its own trail of transitions leads to: no change was silent.
    bookings, payments = db.session.scalars(select(Booking)).all(), db.session.scalars(select(Payment)).all()
    assert len(bookings) == 4 and len(payments) == 2  # paid + counter + block + the moved one; two payments
    for booking in bookings:
        assert trail_ends_at("booking", booking.id) == booking.state, booking.id
    for payment in payments:
        assert trail_ends_at("payment", payment.id) == payment.state, payment.id
