"""The payment gateway: the interface the services use, and the Stripe implementation.

Only reservations.payments.stripe_gateway imports stripe. Services ask for the
gateway with `get_gateway()` and see plain dataclasses, never provider objects.

Errors come in two kinds, and the services act on the kind, never on the provider's codes:

- **transient** (`TransientGatewayError`, `GatewayError.transient` is True): the provider could not
  answer this time, and the same request, sent again with the same idempotency key, may succeed.
  The provider is unreachable or timed out, rate-limited us (429), failed on its side (5xx), could
  not take a lock on the object (`lock_timeout`), is still working on an earlier request with the
  same key (`idempotency_key_in_use`, 409), or refused our credentials (a configuration fault an
  operator fixes; retrying after the fix works). Nothing may be concluded from it: a timeout may
  hide a request that did go through.
- **permanent** (everything else, `transient` is False): the provider answered and said no, and
  sending the same request again gets the same answer. An invalid request or an object it does not
  know, a card declined (`CardDeclined`), a charge already refunded, an intent that can no longer be
  cancelled or captured.

Every call that changes something carries an idempotency key built from a UUID stored in our row
(`Payment.idempotency_key`, `Refund.idempotency_key`), never from a local integer id alone: staging
and live, or a restored backup, sharing one provider account reuse integer ids.
"""
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app


class GatewayError(Exception):
    """The provider refused or could not be reached; `message` is safe to show, `code` is the provider's."""

    transient = False

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.message = message
        self.code = code


class TransientGatewayError(GatewayError):
    """Try again later with the same idempotency key (see the module docstring)."""

    transient = True


class ProviderUnreachable(TransientGatewayError):
    """No answer at all: the connection failed or timed out."""


class CardDeclined(GatewayError):
    """The card was refused: permanent for this card, another card may do."""


class InvalidWebhook(Exception):
    pass


@dataclass(frozen=True)
class IntentView:
    """What we need to know of a PaymentIntent, fetched fresh from the provider."""

    id: str
    status: str  # requires_payment_method | requires_confirmation | requires_action |
    #              processing | requires_capture | succeeded | canceled
    amount: int
    amount_received: int  # what was captured: the money that is ours once the status is succeeded
    client_secret: str
    charge_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    metadata: dict = field(default_factory=dict)
    # The charge's balance transaction once captured, when the charge came with the intent (see stripe_gateway).
    balance_transaction_id: str | None = None


@dataclass(frozen=True)
class RefundView:
    id: str
    status: str  # pending | requires_action | succeeded | failed | canceled, as the provider says
    amount: int
    charge_id: str | None = None
    refund_key: str | None = None  # our Refund's idempotency key, when we asked for it (from our metadata)
    failure_reason: str = ""
    balance_transaction_id: str | None = None  # the money going back, in the provider's balance


@dataclass(frozen=True)
class BalanceTransactionView:
    """One movement of the provider's balance (Stripe's balance transaction), in whole yen.

    `amount` is gross and signed (a refund or a dispute withdrawal is negative), `fee` what the provider
    kept for it, `net` = amount − fee. `source_id` is what it came from (ch_, re_, du_ ...). `payout_id`
    is the payout it was listed under, when it was listed by payout. `created` is None only for a copy
    inside an event that left it out.
    """

    id: str
    type: str
    reporting_category: str
    amount: int
    fee: int
    net: int
    currency: str
    source_id: str | None
    created: datetime | None
    available_on: datetime | None = None
    payout_id: str | None = None


@dataclass(frozen=True)
class DisputeView:
    """A dispute (chargeback) on one of our charges, as the provider describes it.

    `withdrawn` and `reinstated` are the money the provider took from us for it and
    gave back, from its balance transactions (fees not included: they are a cost,
    not the resident's money).
    """

    id: str
    charge_id: str | None
    intent_id: str | None
    status: str  # warning_needs_response | warning_under_review | warning_closed | needs_response |
    #              under_review | won | lost
    amount: int
    reason: str
    withdrawn: int
    reinstated: int
    # Its balance transactions (the withdrawal, the reinstatement), as the dispute object lists them.
    transactions: tuple[BalanceTransactionView, ...] = ()


@dataclass(frozen=True)
class WebhookEventView:
    id: str
    type: str
    object_id: str
    object_type: str
    payload: dict

    @property
    def object(self) -> dict:
        return self.payload["data"]["object"]


def get_gateway():
    from .stripe_gateway import StripeGateway

    ext = current_app.extensions
    if "payment_gateway" not in ext:
        ext["payment_gateway"] = StripeGateway.from_config(current_app.config)
    return ext["payment_gateway"]
