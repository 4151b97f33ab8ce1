"""The provider's errors come in two kinds: transient (ask again later, same key) and permanent."""
import pytest
import stripe

from reservations.payments import CardDeclined, GatewayError, ProviderUnreachable, TransientGatewayError
from reservations.payments.stripe_gateway import _error


@pytest.mark.parametrize(("error", "kind", "code"), [
    (stripe.APIConnectionError("no route to host"), ProviderUnreachable, "unreachable"),
    (stripe.RateLimitError("too many requests", http_status=429), TransientGatewayError, "http_429"),
    (stripe.APIError("internal error", http_status=500), TransientGatewayError, "http_500"),
    (stripe.APIError("bad gateway", http_status=502), TransientGatewayError, "http_502"),
    (stripe.InvalidRequestError("locked", param=None, code="lock_timeout", http_status=400),
     TransientGatewayError, "lock_timeout"),
    (stripe.InvalidRequestError("in flight", param=None, code="idempotency_key_in_use", http_status=409),
     TransientGatewayError, "idempotency_key_in_use"),
    (stripe.AuthenticationError("invalid api key", http_status=401), TransientGatewayError, "http_401"),
    (stripe.InvalidRequestError("already refunded", param=None, code="charge_already_refunded", http_status=400),
     GatewayError, "charge_already_refunded"),
    (stripe.InvalidRequestError("no such refund", param="id", code="resource_missing", http_status=404),
     GatewayError, "resource_missing"),
    (stripe.InvalidRequestError("cannot cancel", param=None, code="payment_intent_unexpected_state",
                                http_status=400), GatewayError, "payment_intent_unexpected_state"),
    (stripe.IdempotencyError("key reused with other parameters", http_status=400), GatewayError, "http_400"),
    (stripe.CardError("Your card was declined.", None, "card_declined", http_status=402), CardDeclined,
     "card_declined"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_provider_errors_are_sorted_into_transient_and_permanent(error, kind, code):
    ours = _error(error)

    assert type(ours) is kind and ours.code == code
    assert ours.transient == issubclass(kind, TransientGatewayError)
    assert ours.message  # safe to show
