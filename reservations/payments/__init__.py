"""The payment gateway: the interface the services use, and the Stripe implementation.

Only reservations.payments.stripe_gateway imports stripe. Services ask for the
gateway with `get_gateway()` and see plain dataclasses, never provider objects.
"""
from dataclasses import dataclass, field

from flask import current_app


class GatewayError(Exception):
    """The provider refused or could not be reached; `message` is safe to show."""

    def __init__(self, message: str, *, code: str = "", unreachable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.unreachable = unreachable


class CardDeclined(GatewayError):
    pass


class InvalidWebhook(Exception):
    pass


@dataclass(frozen=True)
class IntentView:
    """What we need to know of a PaymentIntent, fetched fresh from the provider."""

    id: str
    status: str  # requires_payment_method | requires_confirmation | requires_action |
    #              processing | requires_capture | succeeded | canceled
    amount: int
    amount_received: int
    client_secret: str
    charge_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RefundView:
    id: str
    status: str
    amount: int
    refund_id: int | None = None  # our Refund's id, when we asked for it (from the metadata we sent)


@dataclass(frozen=True)
class WebhookEventView:
    id: str
    type: str
    object_id: str
    object_type: str
    payload: dict


def get_gateway():
    from .stripe_gateway import StripeGateway

    ext = current_app.extensions
    if "payment_gateway" not in ext:
        ext["payment_gateway"] = StripeGateway.from_config(current_app.config)
    return ext["payment_gateway"]
