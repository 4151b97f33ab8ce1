from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import now_utc
from .types import UTCDateTime


class AuditEntry(db.Model):
    """Append-only record of every state change, written in the same transaction."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_subject", "subject", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int]
    action: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON, default=dict)

    actor: Mapped["User | None"] = relationship()  # noqa: F821 (models/user.py)
    # An entry about a payment not written yet (services/checkout.start_checkout) is given the payment itself:
    # the flush writes the payment first and the entry takes its id, so the opening of a payment needs no flush
    # of its own and its entry goes in one INSERT with the booking's.
    new_payment: Mapped["Payment | None"] = relationship(  # noqa: F821 (models/payment.py)
        primaryjoin="and_(AuditEntry.subject == 'payment', foreign(AuditEntry.subject_id) == Payment.id)",
        viewonly=False, sync_backref=False)


def record(subject: str, subject_id: int, action: str, *, actor_id: int | None = None, **data) -> AuditEntry:
    entry = AuditEntry(subject=subject, subject_id=subject_id, action=action, actor_id=actor_id, data=data)
    db.session.add(entry)
    return entry
