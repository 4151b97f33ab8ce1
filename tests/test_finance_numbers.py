"""Receipt numbers (領収書) and refund numbers (還付) run 1, 2, 3, ... within each fiscal year, with no gap and no
repeat, however many are written at once, and across the fiscal-year boundary (midnight, 31 March, Tokyo).

Receipt.serial is numbered by services/receipts.issue_receipt, LedgerEntry.refund_serial by
services/ledger.next_refund_serial: each reads the year's highest number and adds one, under a lock
(PostgreSQL: an advisory lock per fiscal year; SQLite: the write lock every writer takes at BEGIN).
The races use tests/helpers.run_together: threads with their own session each, released at once. The
services take the time as `now`, so half of each race is written at 23:59 on 31 March and half at
00:00 on 1 April (Tokyo) in the same moment.
"""
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, text

from reservations.extensions import db
from reservations.models import Booking, LedgerEntry, Payment, Receipt, Role, User
from reservations.services import counter, ledger, refunds
from reservations.services.booking import ROOM_LOCK_NAMESPACE, USER_LOCK_NAMESPACE
from reservations.services.receipts import issue_receipt
from reservations.timeutil import TOKYO
from tests.helpers import calendar_booking, ledger_booking, ledger_refund, run_together

LAST_MINUTE = datetime(2027, 3, 31, 23, 59, tzinfo=TOKYO).astimezone(UTC)  # FY2026
NEW_YEAR = datetime(2027, 4, 1, 0, 0, tzinfo=TOKYO).astimezone(UTC)  # FY2027
THREADS = 12
ROUNDS = 3


def numbers(model, serial) -> dict[int, list[int]]:
    """Each fiscal year's numbers, in order."""
    found = defaultdict(list)
    for year, number in db.session.execute(select(model.fiscal_year, serial).where(serial.is_not(None))
                                           .order_by(model.fiscal_year, serial)):
        found[year].append(number)
    return dict(found)


def consecutive(found: dict[int, list[int]], expected: dict[int, int]) -> None:
    """1..n in each year, n as expected: no gap, no repeat."""
    assert {year: len(serials) for year, serials in found.items()} == expected
    for year, serials in found.items():
        assert serials == list(range(1, len(serials) + 1)), (year, serials)


def errors(results) -> list:
    return [r for r in results if isinstance(r, Exception)]


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


def unpaid_bookings(make_user, room, n: int, *, first_day: date = date(2027, 4, 5)) -> list[int]:
    """`n` confirmed bookings with no payment and no receipt yet, each of its own resident, on distinct days."""
    ids = []
    for i in range(n):
        day = first_day + timedelta(days=i // 3)
        booking = calendar_booking(make_user(name=f"区民 {i}"), room, day, ("MORNING", "AFTERNOON", "EVENING")[i % 3])
        ids.append(booking.id)
    return ids


# -- receipts -------------------------------------------------------------------------------------------

def test_receipt_numbers_start_again_at_1_on_1_april_tokyo(app, make_user, room):
    ids = unpaid_bookings(make_user, room, 5)
    times = [LAST_MINUTE - timedelta(days=30), LAST_MINUTE + timedelta(seconds=59), NEW_YEAR, NEW_YEAR,
             LAST_MINUTE + timedelta(seconds=59.999)]  # 23:59:59.999 on 31 March is still FY2026
    made = [issue_receipt(db.session.get(Booking, i), now=at) for i, at in zip(ids, times, strict=True)]
    db.session.commit()
    assert [r.number for r in made] == ["2026-000001", "2026-000002", "2027-000001", "2027-000002", "2026-000003"]
    # Issued once: asking again gives the same receipt, and takes no number.
    again = issue_receipt(db.session.get(Booking, ids[0]), now=NEW_YEAR)
    assert again.number == "2026-000001" and again.id == made[0].id
    consecutive(numbers(Receipt, Receipt.serial), {2026: 3, 2027: 2})


def test_receipts_issued_at_once_across_the_year_boundary_are_gap_free(app, backend, make_user, room):
    ids = unpaid_bookings(make_user, room, THREADS * ROUNDS)
    db.session.rollback()  # nothing held: on SQLite this thread's transaction would keep the write lock

    def issue(booking_id: int, at: datetime):
        return lambda: issue_receipt(db.session.get(Booking, booking_id), now=at).serial

    results = []
    for r in range(ROUNDS):
        batch = ids[r * THREADS:(r + 1) * THREADS]
        results += run_together(app, *(issue(b, LAST_MINUTE if n % 2 else NEW_YEAR) for n, b in enumerate(batch)))

    found = numbers(Receipt, Receipt.serial)
    print(f"\n[{backend}] receipts at once: {len(results)} in {ROUNDS} rounds of {THREADS}, errors={errors(results)}"
          f" FY2026 1..{len(found.get(2026, []))} FY2027 1..{len(found.get(2027, []))}")
    assert errors(results) == []
    consecutive(found, {2026: THREADS * ROUNDS // 2, 2027: THREADS * ROUNDS // 2})


def test_counter_payments_taken_at_once_are_receipted_and_ledgered_without_gaps(app, backend, staff, make_user,
                                                                                room):
    """The counter's whole write (payment, ledger row, confirmation, receipt) in many transactions at once."""
    ids = unpaid_bookings(make_user, room, THREADS * ROUNDS)
    staff_id = staff.id
    db.session.rollback()

    def take(booking_id: int, method: str, at: datetime):
        def call():
            booking = db.session.get(Booking, booking_id)
            receipt = counter.record_counter_payment(booking, method, booking.price,
                                                     slip_number="T-1" if method == "terminal" else None,
                                                     staff=db.session.get(User, staff_id), now=at)
            return receipt.fiscal_year, receipt.serial
        return call

    results = []
    for r in range(ROUNDS):
        batch = ids[r * THREADS:(r + 1) * THREADS]
        results += run_together(app, *(take(b, ("cash", "terminal")[n % 4 // 2], LAST_MINUTE if n % 2 else NEW_YEAR)
                                       for n, b in enumerate(batch)))

    assert errors(results) == []
    half = THREADS * ROUNDS // 2
    consecutive(numbers(Receipt, Receipt.serial), {2026: half, 2027: half})
    # Each receipt's year is its ledger row's: one clock for both.
    pairs = db.session.execute(select(Receipt.fiscal_year, LedgerEntry.fiscal_year, LedgerEntry.paid_on)
                               .join(Payment, Payment.booking_id == Receipt.booking_id)
                               .join(LedgerEntry, LedgerEntry.payment_id == Payment.id)).all()
    assert Counter(pairs) == {(2026, 2026, date(2027, 3, 31)): half, (2027, 2027, date(2027, 4, 1)): half}


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has one write lock for everything, no advisory locks
def test_a_receipt_never_waits_on_a_booking_lock(app, backend, make_user, room):
    """The receipt's lock is its own: a transaction holding the lock of user or room 2026 (or 2027) does
    not hold up FY2026's (FY2027's) receipts. Were they one key, a hold being placed by user 2026 (user
    lock, then room lock) and a payment settling in that room (room lock, then the receipt) would deadlock."""
    [booking_id] = unpaid_bookings(make_user, room, 1)
    db.session.rollback()
    other = db.engine.connect()
    try:
        with other.begin():
            for namespace in (USER_LOCK_NAMESPACE, ROOM_LOCK_NAMESPACE):
                for key in (2026, 2027):
                    other.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": namespace, "key": key})
            db.session.execute(text("SET LOCAL lock_timeout = '3s'"))
            receipt = issue_receipt(db.session.get(Booking, booking_id), now=LAST_MINUTE)
            db.session.commit()
    finally:
        other.close()
    assert receipt.number == "2026-000001"


# -- refunds ----------------------------------------------------------------------------------------------

def test_refund_numbers_start_again_at_1_in_each_fiscal_year(app, resident, make_room):
    room = make_room()
    march, april = (ledger_booking(resident, room, date(2027, 4, 20), code=code, at=at)
                    for code, at in (("MORNING", datetime(2027, 3, 10, 1, 0, tzinfo=UTC)), ("AFTERNOON", NEW_YEAR)))
    made = [
        ledger_refund(march, 100, at=LAST_MINUTE),  # FY2026
        ledger_refund(april, 100, at=NEW_YEAR),  # FY2027
        ledger_refund(march, 100, at=NEW_YEAR + timedelta(days=30)),  # 現年度戻出: FY2026 again, in May
        ledger_refund(april, 100, at=NEW_YEAR + timedelta(days=31)),  # FY2027
        ledger_refund(march, 100, at=datetime(2027, 6, 1, 0, 0, tzinfo=TOKYO)),  # 過年度支出: FY2027
    ]
    assert [e.refund_number for e in made] == ["R2026-000001", "R2027-000001", "R2026-000002", "R2027-000002",
                                               "R2027-000003"]
    assert ledger.next_refund_serial(2026) == 3 and ledger.next_refund_serial(2028) == 1
    consecutive(numbers(LedgerEntry, LedgerEntry.refund_serial), {2026: 2, 2027: 3})


def test_a_refund_that_is_rolled_back_leaves_no_gap(app, resident, room):
    booking = ledger_booking(resident, room, date(2027, 4, 20), at=NEW_YEAR)
    payment_id = booking.payment.id
    first = ledger.post(booking.payment, "refund", 100, "r-lost", at=NEW_YEAR)
    assert first.refund_serial == 1
    db.session.rollback()  # the refund never happened: its number was never taken
    kept = ledger_refund(db.session.get(Payment, payment_id).booking, 100, at=NEW_YEAR)
    assert kept.refund_number == "R2027-000001"


def test_refunds_written_at_once_across_the_year_boundary_are_gap_free(app, backend, resident, room):
    """Counter refunds (services/refunds.refund, its ledger row and number in one transaction), many at once.

    A third of them refund fees paid on 31 March, at 23:59 that day (FY2026); a third, fees paid at
    midnight on 1 April, at that moment (FY2027); a third, fees paid on 10 March, at midnight on
    1 April: 現年度戻出, numbered in FY2026 while FY2027's numbers are being taken beside them.
    """
    groups = ((LAST_MINUTE - timedelta(hours=1), LAST_MINUTE, 2026), (NEW_YEAR, NEW_YEAR, 2027),
              (datetime(2027, 3, 10, 1, 0, tzinfo=UTC), NEW_YEAR, 2026))
    plan = []  # (payment id, refund time, expected fiscal year)
    for n in range(THREADS * ROUNDS):
        paid_at, refund_at, year = groups[n % 3]
        booking = ledger_booking(resident, room, date(2027, 4, 5) + timedelta(days=n // 3),
                                 code=("MORNING", "AFTERNOON", "EVENING")[n % 3], at=paid_at,
                                 method=("cash", "terminal")[n % 2])
        plan.append((booking.payment.id, refund_at, year))
    db.session.rollback()

    def refund(payment_id: int, at: datetime, year: int):
        def call():
            item = refunds.refund(db.session.get(Payment, payment_id), 1000, reason="staff", now=at)
            entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.reference == f"counter-refund-{item.id}"))
            return entry.fiscal_year == year, entry.refund_kind
        return call

    results = []
    for r in range(ROUNDS):
        results += run_together(app, *(refund(*p) for p in plan[r * THREADS:(r + 1) * THREADS]))

    found = numbers(LedgerEntry, LedgerEntry.refund_serial)
    print(f"\n[{backend}] refunds at once: {len(results)} in {ROUNDS} rounds of {THREADS}, errors={errors(results)}"
          f" FY2026 1..{len(found.get(2026, []))} FY2027 1..{len(found.get(2027, []))}")
    assert errors(results) == []
    assert Counter(results) == {(True, "current"): THREADS * ROUNDS}
    third = THREADS * ROUNDS // 3
    consecutive(found, {2026: 2 * third, 2027: third})


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite's writers are serialised at BEGIN
def test_a_writer_that_took_a_number_holds_the_year_until_it_commits(app, backend, resident, room):
    """The second writer of a year waits for the first to commit, then takes the number after; it never
    reads the same highest number (which the unique constraint would then refuse: a failed refund).

    PostgreSQL only: there the wait is on the year's advisory lock, which pg_locks shows; SQLite's writers
    wait at BEGIN IMMEDIATE for the one write lock (tests/test_sqlite_transactions.py)."""
    first, second = (ledger_booking(resident, room, date(2027, 4, 20), code=code, at=NEW_YEAR)
                     for code in ("MORNING", "AFTERNOON"))
    ids = first.payment.id, second.payment.id
    db.session.rollback()
    numbered, waiting = threading.Event(), threading.Event()

    def slow():
        entry = ledger.post(db.session.get(Payment, ids[0]), "refund", 100, "r-slow", at=NEW_YEAR)
        numbered.set()
        assert waiting.wait(timeout=30)  # commits only once the other one is seen waiting for it
        return entry.refund_serial

    def fast():
        assert numbered.wait(timeout=30)
        return ledger.post(db.session.get(Payment, ids[1]), "refund", 100, "r-fast", at=NEW_YEAR).refund_serial

    def watch():
        """Sets `waiting` when a writer waits for FY2027's refund-number lock."""
        assert numbered.wait(timeout=30)
        for _ in range(3000):
            if db.session.scalar(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND classid = :ns AND objid = 2027 AND objsubid = 2"), {"ns": ledger.LEDGER_LOCK_NAMESPACE}):
                waiting.set()
                return True
            time.sleep(0.01)
        waiting.set()
        return False

    assert run_together(app, slow, fast, watch) == [1, 2, True]
    consecutive(numbers(LedgerEntry, LedgerEntry.refund_serial), {2027: 2})
