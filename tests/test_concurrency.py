"""Many residents racing for the same slots: exactly one winner per contested range.

Eight threads, each with its own session and connection, meet at a barrier
before every attempt, so each round is eight truly simultaneous bookings. The
attempts of one day all contain the AFTERNOON division, so any two of them
overlap and exactly one may win; different days never overlap.
"""
import random
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from reservations.extensions import db
from reservations.models import Room, User
from reservations.services.booking import place_hold, reserve
from reservations.services.errors import BookingError
from reservations.services.rules import closure_reason, division_slot
from tests.helpers import run_together

THREADS = 8
VARIANTS = (["AFTERNOON"], ["MORNING", "AFTERNOON"], ["AFTERNOON", "EVENING"], ["MORNING", "AFTERNOON", "EVENING"])
REPEATS = 3  # each variant three times a day: 12 contested attempts per day
NOW = datetime(2027, 1, 5, 0, 0, tzinfo=UTC)  # January to March 2027 are open


@pytest.fixture
def uncapped(app):
    """Each racing resident books many times here: the per-user caps are not what this test is about."""
    app.config.update(MAX_ACTIVE_BOOKINGS=10_000, MAX_LIVE_HOLDS=10_000)


def overlapping_active_pairs() -> int:
    return db.session.scalar(text(
        "SELECT count(*) FROM bookings a JOIN bookings b ON a.room_id = b.room_id AND a.id < b.id "
        "WHERE a.state IN ('held','confirmed') AND b.state IN ('held','confirmed') "
        "AND a.start_at < b.end_at AND b.start_at < a.end_at"
    ))


def test_contested_bookings_have_exactly_one_winner_per_range(app, backend, room, make_user, uncapped):
    users = [make_user() for _ in range(THREADS)]
    days = [date(2027, 1, 7) + timedelta(days=i) for i in range(84)]
    days = [d for d in days if closure_reason(room, d) is None]
    attempts = [(day, variant) for day in days for variant in VARIANTS for _ in range(REPEATS)]
    random.Random(7).shuffle(attempts)
    attempts.sort(key=lambda a: a[0])  # neighbours in the list race for the same day
    rounds = [attempts[i:i + THREADS] for i in range(0, len(attempts), THREADS)]
    barrier = threading.Barrier(THREADS)
    outcomes: list[tuple[date, str]] = []
    lock = threading.Lock()
    room_id, user_ids = room.id, [u.id for u in users]
    db.session.rollback()  # end this thread's transaction: on SQLite it would hold the write lock

    def worker(n: int) -> None:
        for round_ in rounds:
            barrier.wait(timeout=60)
            if n >= len(round_):
                continue
            day, variant = round_[n]
            with app.app_context():
                try:
                    room = db.session.get(Room, room_id)
                    user = db.session.get(User, user_ids[n])
                    reserve(user, room, division_slot(room, day, variant), now=NOW)
                    db.session.commit()
                    outcome = "won"
                except BookingError as exc:
                    db.session.rollback()
                    outcome = exc.code
                except Exception as exc:  # counted, and must be zero
                    db.session.rollback()
                    outcome = f"error: {exc!r}"
                finally:
                    db.session.remove()
            with lock:
                outcomes.append((day, outcome))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    winners = Counter(day for day, outcome in outcomes if outcome == "won")
    kinds = Counter(outcome for _, outcome in outcomes)
    errors = sum(n for outcome, n in kinds.items() if outcome not in ("won", "slot_taken"))
    overlaps = overlapping_active_pairs()
    print(f"\n[{backend}] threads={THREADS} attempts={len(outcomes)} contested_ranges={len(days)} "
          f"winners={sum(winners.values())} overlaps={overlaps} errors={errors} outcomes={dict(kinds)}")

    assert len(outcomes) == len(attempts) >= 1000
    assert all(winners[day] == 1 for day in days), winners
    assert sum(winners.values()) == len(days)
    assert overlaps == 0
    assert errors == 0, kinds


# -- one resident, many rooms, one moment: the per-user caps --------------------------------------------

ROOMS = 12
CAPS = {
    # Online payment off: each reservation is confirmed at once and counts against MAX_ACTIVE_BOOKINGS.
    "bookings": ("MAX_ACTIVE_BOOKINGS", reserve, "too_many"),
    # Holds waiting for their payment count against MAX_LIVE_HOLDS too.
    "live_holds": ("MAX_LIVE_HOLDS", place_hold, "too_many_holds"),
}


@pytest.mark.parametrize("cap_name", CAPS)
def test_one_resident_reserving_in_many_rooms_at_once_never_passes_the_cap(
        app, backend, make_room, make_user, cap_name):
    setting, book, too_many = CAPS[cap_name]
    cap = app.config[setting]  # the real setting (config.py's default, or the suite's)
    assert ROOMS > cap + 5
    rooms = [make_room(f"第{n}会議室") for n in range(ROOMS)]
    user_id, room_ids = make_user().id, [r.id for r in rooms]
    day = date(2027, 2, 10)  # a plain Wednesday, open; the same division in every room: no overlap
    db.session.rollback()

    def attempt(room_id):
        def call():
            room = db.session.get(Room, room_id)
            try:
                book(db.session.get(User, user_id), room, division_slot(room, day, ["MORNING"]), now=NOW)
            except BookingError as exc:
                return exc.code
            return "won"
        return call

    results = run_together(app, *(attempt(room_id) for room_id in room_ids))

    outcomes = Counter(r if isinstance(r, str) else f"error: {r!r}" for r in results)
    held = db.session.scalar(text("SELECT count(*) FROM bookings WHERE user_id = :u AND state IN ('held','confirmed')"),
                             {"u": user_id})
    print(f"\n[{backend}] one user, {ROOMS} rooms at once, {setting}={cap}: attempts={len(results)} "
          f"won={outcomes['won']} active_in_db={held} outcomes={dict(outcomes)}")
    assert held == outcomes["won"] == cap
    assert outcomes == {"won": cap, too_many: ROOMS - cap}
