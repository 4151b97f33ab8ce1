"""Finance: closed days, payouts and what the provider reports, reconciliation runs.

The ledger itself is models.payment.LedgerEntry. What arrives later about a ledger row (its payout
and 入金日) is a LedgerSettlement row beside it, so that no ledger row is ever changed.
"""
from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import now_utc
from .types import UTCDateTime


class DayClose(db.Model):
    """A closed business day (日計表): its ledger rows are final, and the database refuses new ones for it.

    A movement recorded after the close lands on the next open day, marked late (services/ledger.py).
    A close is never undone (the row is append-only): a correction is a new movement on an open day.
    `totals` keeps the figures as they were printed at the close.
    """

    __tablename__ = "day_closes"

    business_date: Mapped[date] = mapped_column(Date, primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rows: Mapped[int] = mapped_column(default=0)
    net: Mapped[int] = mapped_column(default=0)
    totals: Mapped[list] = mapped_column(JSON, default=list)

    closed_by: Mapped["User | None"] = relationship()  # noqa: F821 (models/user.py)


class Payout(db.Model):
    """A payout (入金) from the provider to the ward's account: net of fees and refunds.

    gross − fees − refunds (as positive yen) + other (disputes, adjustments; signed) = net = amount.
    """

    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint("gross >= 0 AND fees >= 0 AND refunds >= 0", name="parts"),
        CheckConstraint("gross - fees - refunds + other = net", name="sum"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # po_...
    arrival_date: Mapped[date | None] = mapped_column(Date)  # 入金日
    gross: Mapped[int] = mapped_column(default=0)
    fees: Mapped[int] = mapped_column(default=0)
    refunds: Mapped[int] = mapped_column(default=0)
    other: Mapped[int] = mapped_column(default=0)
    net: Mapped[int] = mapped_column(default=0)
    source: Mapped[str] = mapped_column(String(16), default="report")  # api | report
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class ProviderTransaction(db.Model):
    """A balance transaction as the provider reported it: by its API, in a signed event, or in a payout report.

    amount is gross and signed (a refund is negative); fee is what Stripe charged (below 0 when it gave a fee
    back, as for a won dispute); net = amount − fee.
    """

    __tablename__ = "provider_transactions"
    __table_args__ = (
        CheckConstraint("net = amount - fee", name="net"),
        Index("ix_provider_transactions_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # txn_...
    type: Mapped[str] = mapped_column(String(32))  # charge, refund, adjustment, payment_refund, ...
    reporting_category: Mapped[str] = mapped_column(String(32), default="")  # charge, refund, dispute, fee, ...
    amount: Mapped[int]
    fee: Mapped[int] = mapped_column(default=0)
    net: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="jpy")
    source_id: Mapped[str | None] = mapped_column(String(64), index=True)  # ch_, re_, du_, ...
    intent_id: Mapped[str | None] = mapped_column(String(64))
    payout_id: Mapped[str | None] = mapped_column(ForeignKey("payouts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_via: Mapped[str] = mapped_column(String(16))  # api | event | report
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    payout: Mapped[Payout | None] = relationship()


class LedgerSettlement(db.Model):
    """入金日: the payout that brought a ledger row's money to the ward. Append-only, one per ledger row."""

    __tablename__ = "ledger_settlements"

    id: Mapped[int] = mapped_column(primary_key=True)
    ledger_entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    balance_transaction_id: Mapped[str] = mapped_column(String(64))
    payout_id: Mapped[str] = mapped_column(ForeignKey("payouts.id"), index=True)
    arrival_date: Mapped[date] = mapped_column(Date)  # 入金日
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    entry: Mapped["LedgerEntry"] = relationship()  # noqa: F821 (models/payment.py)
    payout: Mapped[Payout] = relationship()


class ReconciliationRun(db.Model):
    """One comparison of the ledger with the provider, over a range of business dates."""

    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    trigger: Mapped[str] = mapped_column(String(16))  # page | cli | job | import
    date_from: Mapped[date] = mapped_column(Date)
    date_to: Mapped[date] = mapped_column(Date)
    matched: Mapped[int] = mapped_column(default=0)
    only_in_stripe: Mapped[int] = mapped_column(default=0)
    only_in_ledger: Mapped[int] = mapped_column(default=0)
    mismatched: Mapped[int] = mapped_column(default=0)
    error: Mapped[str] = mapped_column(Text, default="")

    actor: Mapped["User | None"] = relationship()  # noqa: F821
    items: Mapped[list["ReconciliationItem"]] = relationship(back_populates="run", order_by="ReconciliationItem.id")


class ReconciliationItem(db.Model):
    __tablename__ = "reconciliation_items"
    __table_args__ = (
        CheckConstraint("status IN ('matched','only_in_stripe','only_in_ledger','mismatch')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    balance_transaction_id: Mapped[str | None] = mapped_column(String(64))
    ledger_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    stripe_amount: Mapped[int | None]
    ledger_amount: Mapped[int | None]
    payout_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)

    run: Mapped[ReconciliationRun] = relationship(back_populates="items")
    entry: Mapped["LedgerEntry | None"] = relationship()  # noqa: F821
