"""The opening rush's two requests, the review page and the reserve POST, each in a constant and small number
of SQL statements whatever the outcome (issue 11: at most 8 database round trips per attempt). Each request
starts with an empty session, as in a server: nothing is served from the test's identity map."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AuditEntry, Booking, BookingState, Payment
from tests.helpers import booking_day, statements

# The review page: the user, then the catalog's token with all the page asks (no groups, no kinds); the first
# review of a room since the catalog changed also reads the room, which the process then keeps. The reserve: the
# user, the two locks, the standing (with the token), and for a win the booking, its payment, and both their
# audit entries in one INSERT. A win with the room kept is 2 + 6 = 8 round trips, a loss 2 + 3.
REVIEW_MAX, RESERVE_MAX, RESERVE_LOSS_MAX = 2, 6, 3


def sign_in(client, user_key: str) -> None:
    with client.session_transaction() as sess:
        sess["_user_id"] = user_key


def queries(sent: list[str]) -> list[str]:
    """The statements, without SQLite's BEGIN (PostgreSQL's is implicit in the driver, not seen here)."""
    return [statement for statement in sent if not statement.lstrip().upper().startswith("BEGIN")]


def attempt(client, room_id: int, day) -> tuple[list[str], list[str], str]:
    with statements() as review:
        page = client.get(f"/rooms/{room_id}/book?date={day.isoformat()}&divisions=MORNING")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    price = re.search(r'name="expected_price" value="(\d+)"', html).group(1)
    with statements() as reserve:
        answer = client.post(f"/rooms/{room_id}/book", data={
            "csrf_token": token, "date": day.isoformat(), "divisions": "MORNING", "expected_price": price})
    assert answer.status_code == 302
    return queries(review), queries(reserve), answer.headers["Location"]


@pytest.mark.payments
def test_a_win_and_a_loss_each_take_a_few_statements(app, client, localstripe, make_user, room,
                                                     fresh_session_per_request):
    day = booking_day() + timedelta(days=1)
    winner, loser = (make_user(email=f"{who}@example.com").get_id() for who in ("winner", "loser"))
    room_id = room.id
    db.session.remove()

    sign_in(client, winner)
    win_review, win_reserve, win_to = attempt(client, room_id, day)
    sign_in(client, loser)
    loss_review, loss_reserve, loss_to = attempt(client, room_id, day)

    assert "/pay" in win_to and "/days/" in loss_to  # the winner pays; the loser is sent back to the day
    [booking] = db.session.scalars(select(Booking)).all()
    assert booking.state == BookingState.HELD and db.session.scalar(select(Payment.booking_id)) == booking.id
    assert len(win_review) == REVIEW_MAX + 1 and "FROM rooms" in win_review[-1], win_review  # read, then kept
    assert len(loss_review) <= REVIEW_MAX and not any("FROM rooms" in q for q in loss_review), loss_review
    assert len(win_reserve) <= RESERVE_MAX, win_reserve
    assert len(loss_reserve) <= RESERVE_LOSS_MAX, loss_reserve
    entries = db.session.execute(select(AuditEntry.subject, AuditEntry.subject_id, AuditEntry.action)
                                 .order_by(AuditEntry.id)).all()
    payment_id = db.session.scalar(select(Payment.id))
    assert [tuple(entry) for entry in entries] == [("booking", booking.id, "held"),
                                                   ("payment", payment_id, "created")]
    # Nothing is read again once the answer is decided: the last statement of a win is its last write.
    assert re.match(r"\s*INSERT", win_reserve[-1]), win_reserve[-1]
