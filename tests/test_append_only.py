"""The audit trail and the ledger are append-only, and it is the database that says so (migration 0007).

Each statement is sent as raw SQL, as a script or a person at a database prompt would send it:
the refusal must not depend on the app's models.
"""
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from reservations.extensions import db
from reservations.models import AuditEntry, LedgerEntry, record


@pytest.fixture
def audited(resident):
    record("booking", 1, "held", actor_id=resident.id, state_before=None, state_after="held")
    db.session.commit()
    return resident


def refused(sql: str, **params) -> str:
    with pytest.raises(DBAPIError) as caught:
        db.session.execute(text(sql), params)
        db.session.flush()
    db.session.rollback()
    assert "append_only" in str(caught.value)
    return str(caught.value)


def test_an_audit_entry_can_be_neither_changed_nor_removed(audited):
    refused("UPDATE audit_entries SET action = 'confirmed'")
    refused("UPDATE audit_entries SET data = '{}' WHERE id = (SELECT min(id) FROM audit_entries)")
    refused("DELETE FROM audit_entries")
    assert db.session.scalars(select(AuditEntry.action)).all() == ["held"]
    # Appending goes on as before.
    record("booking", 1, "confirmed", actor_id=audited.id)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == 2


@pytest.mark.payments
def test_a_ledger_row_can_be_neither_changed_nor_removed(paid):
    [entry] = db.session.scalars(select(LedgerEntry)).all()
    assert (entry.kind, entry.amount) == ("capture", 2800)
    refused("UPDATE ledger_entries SET amount = 1 WHERE id = :id", id=entry.id)
    refused("DELETE FROM ledger_entries WHERE id = :id", id=entry.id)
    assert db.session.scalars(select(LedgerEntry.amount)).all() == [2800]


@pytest.mark.payments
def test_the_tables_cannot_be_emptied_wholesale_either(audited, paid, backend):
    before = (db.session.scalar(select(func.count()).select_from(AuditEntry)),
              db.session.scalar(select(func.count()).select_from(LedgerEntry)))
    db.session.rollback()
    if backend == "postgresql":  # SQLite has no TRUNCATE: its DELETE is refused above
        refused("TRUNCATE audit_entries")
        refused("TRUNCATE ledger_entries CASCADE")
    refused("DELETE FROM ledger_entries")
    refused("DELETE FROM audit_entries WHERE action = 'held'")
    assert before == (db.session.scalar(select(func.count()).select_from(AuditEntry)),
                      db.session.scalar(select(func.count()).select_from(LedgerEntry)))
    assert before[1] == 1


def test_an_actor_of_the_audit_trail_is_closed_not_erased(audited):
    # Deleting the user would null the entries' actor: an UPDATE of the trail, refused.
    refused("DELETE FROM users WHERE id = :id", id=audited.id)
    assert db.session.scalar(select(AuditEntry.actor_id)) == audited.id


# -- the finance tables (migration 0011): a closed day and a ledger row's 入金日 are never undone ----------

@pytest.fixture
def settled(app, resident, room):
    """A cash capture on 1 April 2027, its day closed, and its 入金日 recorded against a payout. Committed."""
    from reservations.models import DayClose, LedgerSettlement, Payout
    from tests.helpers import ledger_booking

    booking = ledger_booking(resident, room, date(2027, 4, 20), at=datetime(2027, 4, 1, 1, 0, tzinfo=UTC))
    [entry] = db.session.scalars(select(LedgerEntry)).all()
    db.session.add(Payout(id="po_1", arrival_date=date(2027, 4, 5), gross=2800, net=2800))
    db.session.add(DayClose(business_date=date(2027, 4, 1), rows=1, net=2800))
    db.session.flush()
    db.session.add(LedgerSettlement(ledger_entry_id=entry.id, balance_transaction_id="txn_1", payout_id="po_1",
                                    arrival_date=date(2027, 4, 5)))
    db.session.commit()
    return booking


FINANCE_TABLES = {  # table: an UPDATE of one of its columns
    "ledger_entries": "UPDATE ledger_entries SET account_code = '02-01-01-22'",
    "day_closes": "UPDATE day_closes SET net = 0",
    "ledger_settlements": "UPDATE ledger_settlements SET arrival_date = '2027-04-06'",
}


@pytest.mark.parametrize("table", FINANCE_TABLES)
def test_the_finance_records_can_be_neither_changed_nor_removed(settled, backend, table):
    from reservations.models import DayClose, LedgerSettlement

    refused(FINANCE_TABLES[table])
    refused(f"DELETE FROM {table}")
    if backend == "postgresql":  # SQLite has no TRUNCATE
        refused(f"TRUNCATE {table} CASCADE")
    assert db.session.scalar(text(f"SELECT count(*) FROM {table}")) == 1
    # What each one said is still what it says.
    assert db.session.execute(select(LedgerEntry.account_code, LedgerEntry.amount)).one() == ("13-01-02-01", 2800)
    assert db.session.execute(select(DayClose.net, DayClose.rows)).one() == (2800, 1)
    assert db.session.scalar(select(LedgerSettlement.arrival_date)) == date(2027, 4, 5)


def test_a_closed_day_is_never_reopened_and_its_totals_never_rewritten(settled):
    """A close is final: a correction is a new movement on an open day, never an edit of the close."""
    refused("UPDATE day_closes SET business_date = '2027-04-02'")
    refused("UPDATE day_closes SET totals = '[]', rows = 0")
    refused("DELETE FROM day_closes WHERE business_date = '2027-04-01'")
    # Nor is a settlement moved to another ledger row or payout.
    refused("UPDATE ledger_settlements SET payout_id = 'po_1', balance_transaction_id = 'txn_2'")
