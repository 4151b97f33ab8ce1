import enum
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import now_utc
from .audit import record
from .booking import Booking
from .types import UTCDateTime


class PaymentState(enum.StrEnum):
    NEW = "new"  # our row exists; the provider's intent may not yet
    PENDING = "pending"  # intent created, waiting for a card or its 3-D Secure challenge
    AUTHORIZED = "authorized"  # the card is authorised, not yet captured
    CAPTURED = "captured"  # the money is ours (refunds are tracked in refunded_amount)
    FAILED = "failed"  # declined or abandoned; no money moved
    CANCELLED = "cancelled"  # the authorisation was released; no money moved


PAYMENT_TRANSITIONS: dict[PaymentState, frozenset[PaymentState]] = {
    PaymentState.NEW: frozenset({PaymentState.PENDING, PaymentState.FAILED, PaymentState.CANCELLED,
                                 PaymentState.AUTHORIZED, PaymentState.CAPTURED}),
    PaymentState.PENDING: frozenset({PaymentState.AUTHORIZED, PaymentState.CAPTURED, PaymentState.FAILED,
                                     PaymentState.CANCELLED}),
    PaymentState.AUTHORIZED: frozenset({PaymentState.CAPTURED, PaymentState.CANCELLED}),
    # A success is final: no later failure may overwrite it.
    PaymentState.CAPTURED: frozenset(),
    # A declined card may be retried on the same intent while the hold lasts,
    # and a late success after a failure must still be recorded.
    PaymentState.FAILED: frozenset({PaymentState.PENDING, PaymentState.AUTHORIZED, PaymentState.CAPTURED,
                                    PaymentState.CANCELLED}),
    PaymentState.CANCELLED: frozenset({PaymentState.CAPTURED}),
}


class PaymentStateError(Exception):
    pass


class Payment(db.Model):
    """One payment per booking, carried by one provider intent (retries reuse it)."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("captured_amount >= 0 AND captured_amount <= amount", name="captured"),
        # Never refund more than was captured: the database says no too.
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= captured_amount", name="refunded"),
        CheckConstraint(
            "state IN ('new','pending','authorized','captured','failed','cancelled')", name="state"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), unique=True)
    provider: Mapped[str] = mapped_column(String(16), default="stripe")
    intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="jpy")
    state: Mapped[str] = mapped_column(String(16), default=PaymentState.NEW)
    captured_amount: Mapped[int] = mapped_column(default=0)
    refunded_amount: Mapped[int] = mapped_column(default=0)
    failure_message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    booking: Mapped[Booking] = relationship(backref=db.backref("payment", uselist=False))
    refunds: Mapped[list["Refund"]] = relationship(back_populates="payment", order_by="Refund.id")

    @property
    def refundable(self) -> int:
        return self.captured_amount - self.refunded_amount

    def can_become(self, target: PaymentState) -> bool:
        return target == self.state or target in PAYMENT_TRANSITIONS[PaymentState(self.state)]

    def transition(self, target: PaymentState, *, reason: str = "", actor_id: int | None = None) -> None:
        current = PaymentState(self.state)
        if target == current:
            return
        if target not in PAYMENT_TRANSITIONS[current]:
            raise PaymentStateError(f"payment {self.id}: {current} -> {target} is not allowed")
        self.state = target
        record("payment", self.id, f"{current}->{target}", actor_id=actor_id, reason=reason)


class ProviderObject(db.Model):
    """Maps the provider's ids (pi_, ch_, re_) to our payments."""

    __tablename__ = "provider_objects"

    provider_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # intent | charge | refund
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)


class RefundState(enum.StrEnum):
    PENDING = "pending"  # recorded, the provider not yet known to have done it
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(db.Model):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("state IN ('pending','succeeded','failed')", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int]
    partial: Mapped[bool]
    reason: Mapped[str] = mapped_column(String(32))  # policy | slot_taken | staff
    state: Mapped[str] = mapped_column(String(16), default=RefundState.PENDING)
    provider_refund_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    payment: Mapped[Payment] = relationship(back_populates="refunds")


class LedgerEntry(db.Model):
    """Append-only money movements in yen; the kind gives the direction (capture in, refund out)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("kind", "reference", name="uq_ledger_entries_kind_reference"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("kind IN ('capture','refund')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # capture | refund
    amount: Mapped[int]
    reference: Mapped[str] = mapped_column(String(64))  # the provider id it came from


class WebhookEvent(db.Model):
    """Each provider event is stored once; a duplicate is a no-op."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)


class Receipt(db.Model):
    """領収書: numbered consecutively within the fiscal year (from 1 April)."""

    __tablename__ = "receipts"
    __table_args__ = (
        UniqueConstraint("fiscal_year", "serial", name="uq_receipts_fiscal_year_serial"),
        CheckConstraint("amount >= 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), unique=True)
    fiscal_year: Mapped[int]
    serial: Mapped[int]
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    payer_name: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int]
    issuer: Mapped[str] = mapped_column(String(200))

    booking: Mapped[Booking] = relationship()

    @property
    def number(self) -> str:
        return f"{self.fiscal_year}-{self.serial:06d}"


class AttentionCase(db.Model):
    """A case staff must look at, e.g. a payment that arrived after its slot was taken."""

    __tablename__ = "attention_cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True)
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    booking: Mapped[Booking] = relationship()
