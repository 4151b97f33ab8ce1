"""The audit trail and the ledger are append-only, and it is the database that says so (migration 0007).

Each statement is sent as raw SQL, as a script or a person at a database prompt would send it:
the refusal must not depend on the app's models.
"""
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
