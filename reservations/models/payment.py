import enum
import uuid
from datetime import date, datetime

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


# Which way each kind of movement goes: the database refuses a row whose sign disagrees.
LEDGER_SIGNS = {
    "capture": 1,  # a card capture online, or cash / a terminal payment at the counter
    "refund": -1,  # a card refund, or cash paid out (or a terminal refund) at the counter
    "refund_reversal": 1,  # a refund that failed after it had succeeded: the money came back
    "dispute_withdrawal": -1,  # the provider took the amount for a dispute
    "dispute_reinstatement": 1,  # and gave it back
    "fee": -1,  # the provider's fee for a balance transaction: an expense (役務費), never netted
    "fee_refund": 1,  # a fee the provider gave back (a dispute won): a negative fee, back to the expense account
}
LEDGER_KIND_CHECK = "kind IN ({})".format(",".join(f"'{k}'" for k in LEDGER_SIGNS))
LEDGER_SIGN_CHECK = ("(kind IN ('capture','refund_reversal','dispute_reinstatement','fee_refund') AND amount > 0)"
                     " OR (kind IN ('refund','dispute_withdrawal','fee') AND amount < 0)")


class LedgerEntry(db.Model):
    """One movement of money in yen, signed (in > 0, out < 0), never changed or removed (migrations 0007, 0011).

    A row carries what finance needs to book and trace it without joining live data that may change:
    the booking, the payer and the place; the revenue account (歳入科目) it is booked under; 納付日
    (paid_on, the Tokyo business date of the movement) and the fiscal year it belongs to; the
    日計表 day it is counted on (business_date: paid_on, or the next open day when that day was
    already closed, a late movement); the method; and the provider's ids. 入金日 (the payout's arrival)
    comes later and is a row of its own (LedgerSettlement), so that this one never changes.
    services/ledger.py writes every row.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("kind", "reference", name="uq_ledger_entries_kind_reference"),
        UniqueConstraint("fiscal_year", "refund_serial", name="uq_ledger_entries_fiscal_year_refund_serial"),
        CheckConstraint(LEDGER_KIND_CHECK, name="kind"),
        CheckConstraint(LEDGER_SIGN_CHECK, name="amount_sign"),
        CheckConstraint("method IN ('card','cash','terminal')", name="method"),
        CheckConstraint("(kind = 'refund') = (refund_kind IS NOT NULL)", name="refund_kind"),
        CheckConstraint("refund_kind IS NULL OR refund_kind IN ('current','prior')", name="refund_kind_value"),
        CheckConstraint("(kind = 'refund') = (refund_serial IS NOT NULL)", name="refund_serial"),
        CheckConstraint("business_date >= paid_on", name="business_date"),
        Index("ix_ledger_entries_business_date", "business_date"),
        Index("ix_ledger_entries_paid_on", "paid_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)  # recorded
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int]  # signed: see LEDGER_SIGNS
    reference: Mapped[str] = mapped_column(String(64))  # the provider id it came from, or cash-<id> and the like
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True)
    payer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    payer_name: Mapped[str] = mapped_column(String(100))  # as it was when the money moved
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"), index=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    account_code: Mapped[str] = mapped_column(String(32))  # 歳入科目 (款項目節), or the expense account of a fee
    paid_on: Mapped[date]  # 納付日
    business_date: Mapped[date]  # the 日計表 day it is counted on
    fiscal_year: Mapped[int]
    method: Mapped[str] = mapped_column(String(16))  # card (online) | cash | terminal
    refund_kind: Mapped[str | None] = mapped_column(String(16))  # current: 現年度戻出 | prior: 過年度支出
    refund_serial: Mapped[int | None]  # 還付 number, consecutive within the fiscal year
    intent_id: Mapped[str | None] = mapped_column(String(64))
    charge_id: Mapped[str | None] = mapped_column(String(64))
    provider_refund_id: Mapped[str | None] = mapped_column(String(64))
    balance_transaction_id: Mapped[str | None] = mapped_column(String(64))

    payment: Mapped[Payment] = relationship()
    booking: Mapped[Booking] = relationship()

    @property
    def late(self) -> bool:
        """Counted on a later day than it happened, because its own day was already closed."""
        return self.business_date != self.paid_on

    @property
    def refund_number(self) -> str | None:
        return None if self.refund_serial is None else f"R{self.fiscal_year}-{self.refund_serial:06d}"


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
