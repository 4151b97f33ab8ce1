import enum
import uuid
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..timeutil import now_utc
from .audit import record
from .booking import Booking
from .types import UTCDateTime


class PaymentState(enum.StrEnum):
    NEW = "new"  # our row exists; the provider's intent may not yet
    PENDING = "pending"  # intent created, waiting for a card or its 3-D Secure challenge
    AUTHORIZED = "authorized"  # authorised, not yet captured (for a confirmed booking: the capture is on its way)
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
    # Money that arrives after a release we could not complete at the provider is still recorded.
    PaymentState.CANCELLED: frozenset({PaymentState.AUTHORIZED, PaymentState.CAPTURED}),
}


class PaymentStateError(Exception):
    pass


def new_key() -> str:
    return str(uuid.uuid4())


class Payment(db.Model):
    """One payment per booking, carried by one provider intent (retries reuse it)."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("captured_amount >= 0 AND captured_amount <= amount", name="captured"),
        # Never refund more than was captured: the database says no too.
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= captured_amount", name="refunded"),
        CheckConstraint("withdrawn_amount >= 0 AND withdrawn_amount <= captured_amount", name="withdrawn"),
        CheckConstraint(
            "state IN ('new','pending','authorized','captured','failed','cancelled')", name="state"
        ),
        CheckConstraint("provider IN ('stripe','cash','terminal')", name="provider"),
        CheckConstraint("provider <> 'terminal' OR slip_number IS NOT NULL", name="terminal_slip"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), unique=True)
    # stripe: online by card; cash: at the counter; terminal: a card on the counter's terminal (its slip number).
    # Cash and terminal payments are captured when staff record them (services/counter.py).
    provider: Mapped[str] = mapped_column(String(16), default="stripe")
    slip_number: Mapped[str | None] = mapped_column(String(64))
    intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="jpy")
    state: Mapped[str] = mapped_column(String(16), default=PaymentState.NEW)
    captured_amount: Mapped[int] = mapped_column(default=0)
    refunded_amount: Mapped[int] = mapped_column(default=0)  # pending and succeeded refunds
    # What disputes have taken back and not (yet) given back: withdrawn − reinstated, over all its disputes.
    withdrawn_amount: Mapped[int] = mapped_column(default=0)
    # Our half of every idempotency key sent for this payment: unique across databases that share
    # one provider account (staging and live, a restored backup), which integer ids are not.
    idempotency_key: Mapped[str] = mapped_column(String(36), unique=True, default=new_key)
    failure_message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    booking: Mapped[Booking] = relationship(backref=db.backref("payment", uselist=False))
    refunds: Mapped[list["Refund"]] = relationship(back_populates="payment", order_by="Refund.id")

    @property
    def refundable(self) -> int:
        """What may still be refunded: captured, less refunds pending or made, less what a dispute withdrew."""
        return max(0, self.captured_amount - self.refunded_amount - self.withdrawn_amount)

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
    """The provider's refund states, in our spelling.

    pending: recorded and counted against what may be refunded; not yet sent
    (provider_refund_id is empty) or in transit at the provider. succeeded: the
    money went back (a ledger row is written then). failed / cancelled: no money
    went back, and the amount may be refunded again. A succeeded refund can still
    fail later (the card was closed): the provider says so and we follow.
    """

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


REFUND_TRANSITIONS: dict[RefundState, frozenset[RefundState]] = {
    RefundState.PENDING: frozenset({RefundState.SUCCEEDED, RefundState.FAILED, RefundState.CANCELLED}),
    RefundState.SUCCEEDED: frozenset({RefundState.FAILED}),
    RefundState.FAILED: frozenset(),
    RefundState.CANCELLED: frozenset(),
}


class Refund(db.Model):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("state IN ('pending','succeeded','failed','cancelled')", name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        # The retry job's query: pending refunds whose next attempt is due.
        Index("ix_refunds_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int]
    partial: Mapped[bool]
    reason: Mapped[str] = mapped_column(String(32))  # policy | slot_taken | staff | external (made at the provider)
    state: Mapped[str] = mapped_column(String(16), default=RefundState.PENDING)
    provider_refund_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(36), unique=True, default=new_key)
    # Sending it: how many times we tried, when to try (or ask about it) next, and what went wrong last.
    # next_attempt_at is empty once there is nothing left to do by itself (final, or given up: a staff case).
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    payment: Mapped[Payment] = relationship(back_populates="refunds")

    @property
    def sent(self) -> bool:
        return self.provider_refund_id is not None


class Dispute(db.Model):
    """A dispute (chargeback) the resident's bank opened on one of our charges, as the provider reports it.

    withdrawn_amount and reinstated_amount are what the provider took from us
    for it and gave back; the payment's withdrawn_amount sums them over its disputes.
    """

    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("withdrawn_amount >= 0 AND reinstated_amount >= 0 AND reinstated_amount <= withdrawn_amount",
                        name="funds"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    provider_dispute_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(32))  # the provider's: needs_response, under_review, won, lost, ...
    amount: Mapped[int]
    reason: Mapped[str] = mapped_column(String(64), default="")
    withdrawn_amount: Mapped[int] = mapped_column(default=0)
    reinstated_amount: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    payment: Mapped[Payment] = relationship(backref=db.backref("disputes", order_by="Dispute.id"))

    CLOSED = frozenset({"won", "lost", "warning_closed"})

    @property
    def closed(self) -> bool:
        return self.status in self.CLOSED


class LedgerEntry(db.Model):
    """Append-only money movements in yen; the kind gives the direction (capture in, refund out)."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("kind", "reference", name="uq_ledger_entries_kind_reference"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "kind IN ('capture','refund','refund_reversal','dispute_withdrawal','dispute_reinstatement')", name="kind"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    # capture (in), refund (out), refund_reversal (a refund that failed after it succeeded: back in),
    # dispute_withdrawal (out), dispute_reinstatement (back in)
    kind: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int]
    reference: Mapped[str] = mapped_column(String(64))  # the provider id it came from


class WebhookEvent(db.Model):
    """Each provider event is stored once; a duplicate is a no-op."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)  # the retention job's
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
    # How it was paid: card (online), cash or terminal (at the counter); see Payment.provider.
    method: Mapped[str] = mapped_column(String(16), default="card", server_default="card")
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
    """A case staff must look at, e.g. a payment that arrived after its slot was taken, a refund that failed.

    Most are about a booking, and belong to its building. A webhook event that could not be applied
    may name nothing we know: it has no booking and no building, and only the unscoped (admin) see it.
    """

    __tablename__ = "attention_cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"), index=True)
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"), index=True)
    # What the case is about, when it is about money: the payment, and the refund or dispute if any.
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    dispute_id: Mapped[int | None] = mapped_column(ForeignKey("disputes.id"))
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolution_note: Mapped[str] = mapped_column(Text, default="")
    webhook_event_id: Mapped[str | None] = mapped_column(String(64))

    booking: Mapped[Booking | None] = relationship()
    resolved_by: Mapped["User | None"] = relationship()  # noqa: F821 (models/user.py)
    payment: Mapped[Payment | None] = relationship()
    refund: Mapped[Refund | None] = relationship()
    dispute: Mapped[Dispute | None] = relationship()
