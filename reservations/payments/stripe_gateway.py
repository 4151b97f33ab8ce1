"""Stripe, the only module that imports stripe.

The same code talks to localstripe (tests and the local default) and to real
Stripe (production keys from the environment). The few parameters localstripe
rejects are sent only when `live_params` is on. Every call that changes
something carries an idempotency key built from the UUID kept in our row.

Where localstripe differs from Stripe (what the tests cannot see through it):
- it has no disputes at all: `retrieve_dispute` reads the event's copy of the
  dispute when not live (the tests post signed dispute events themselves);
- every refund it makes is `succeeded` at once (Stripe's may be `pending` for
  days, then `failed`), and it sends no refund events; the tests set a refund's
  status through its API and post the events themselves;
- it ignores idempotency keys, has no rate limits, lock timeouts or 5xx of its own;
- it has no processing state worth testing (half a second of a SEPA charge);
- after a declined charge its intent stays `requires_payment_method` even with a new card set, and
  refuses to confirm again; Stripe confirms the same intent with the new card. So a second card after a
  decline (a deadline booking keeps its reservation after one, services/checkout.pay) is Stripe-only;
- its intents have no `amount_received`: read as the full amount once succeeded
  (it captures only in full).
"""
import json

import stripe

from . import (
    CardDeclined,
    DisputeView,
    GatewayError,
    IntentView,
    InvalidWebhook,
    ProviderUnreachable,
    RefundView,
    TransientGatewayError,
    WebhookEventView,
)

# Codes Stripe sends with a 4xx that still mean "send it again later" (see payments/__init__.py).
TRANSIENT_CODES = {"lock_timeout", "idempotency_key_in_use", "rate_limit"}


def _error(exc: stripe.StripeError) -> GatewayError:
    """The provider's exception as one of our two kinds."""
    code = getattr(exc, "code", "") or ""
    message = exc.user_message or "The payment service refused the request."
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderUnreachable("The payment service cannot be reached.", code="unreachable")
    if isinstance(exc, stripe.CardError):
        return CardDeclined(exc.user_message or "Your card was declined.", code=code or "card_declined")
    status = exc.http_status or 0
    if (isinstance(exc, stripe.RateLimitError | stripe.APIError | stripe.AuthenticationError | stripe.PermissionError)
            or status == 429 or status >= 500 or code in TRANSIENT_CODES):
        return TransientGatewayError(message, code=code or f"http_{status}")
    return GatewayError(message, code=code or f"http_{status}")


def _id(value) -> str | None:
    """An expandable field: an id, an expanded object, or nothing."""
    if value is None or isinstance(value, str):
        return value
    return value["id"]


def _key(kind: str, uuid: str, action: str) -> str:
    """The idempotency key of one action on one of our payments or refunds (kind: payment | refund)."""
    return f"{kind}-{uuid}-{action}"


class StripeGateway:
    def __init__(self, secret_key: str, publishable_key: str, *, api_base: str | None, js_url: str,
                 webhook_secret: str, capture_method: str = "manual", live_params: bool = False,
                 timeout: int = 10, webhook_tolerance: int = 300):
        base = {"api": api_base} if api_base else None
        self.client = stripe.StripeClient(
            secret_key, base_addresses=base, max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )
        self.publishable_key = publishable_key
        self.js_url = js_url
        self.webhook_secret = webhook_secret
        self.webhook_tolerance = webhook_tolerance
        self.capture_method = capture_method
        self.live_params = live_params

    @classmethod
    def from_config(cls, config) -> "StripeGateway":
        return cls(
            config["STRIPE_SECRET_KEY"], config["STRIPE_PUBLISHABLE_KEY"],
            api_base=config["STRIPE_API_BASE"] or None, js_url=config["STRIPE_JS_URL"],
            webhook_secret=config["STRIPE_WEBHOOK_SECRET"], capture_method=config["PAYMENT_CAPTURE_METHOD"],
            live_params=config["STRIPE_LIVE_PARAMS"],
            webhook_tolerance=config.get("WEBHOOK_TOLERANCE_SECONDS", 300),
        )

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise _error(exc) from exc

    @staticmethod
    def _view(pi) -> IntentView:
        error = pi.last_payment_error
        charge = pi.latest_charge
        received = getattr(pi, "amount_received", None)
        if received is None:  # localstripe has no amount_received; it captures only in full
            received = pi.amount if pi.status == "succeeded" else 0
        return IntentView(
            id=pi.id, status=pi.status, amount=pi.amount,
            amount_received=received,
            client_secret=pi.client_secret or "",
            charge_id=_id(charge),
            error_code=(error["code"] if error and "code" in error else "") or "",
            error_message=(error["message"] if error and "message" in error else "") or "",
            metadata=pi.metadata.to_dict() if pi.metadata else {},
        )

    # -- intents ---------------------------------------------------------------------------

    def create_intent(self, *, amount: int, booking_id: int, payment_id: int, payment_key: str,
                      description: str) -> IntentView:
        """A PaymentIntent in JPY (whole yen) for one of our payments."""
        params = {
            "amount": amount, "currency": "jpy", "capture_method": self.capture_method,
            "payment_method_types": ["card"],
            "metadata": {"booking_id": str(booking_id), "payment_id": str(payment_id), "payment_key": payment_key},
        }
        if self.live_params:
            params["description"] = description
            params["payment_method_options"] = {"card": {"request_three_d_secure": "automatic"}}
        pi = self._call(self.client.v1.payment_intents.create, params,
                        {"idempotency_key": _key("payment", payment_key, "create")})
        return self._view(pi)

    def retrieve_intent(self, intent_id: str) -> IntentView:
        return self._view(self._call(self.client.v1.payment_intents.retrieve, intent_id))

    def confirm_with_token(self, intent_id: str, token: str, *, payment_key: str) -> IntentView:
        """Confirm the intent with a card tokenised by Stripe.js in the resident's browser.

        The token's card becomes the intent's payment method (set with modify:
        localstripe refuses confirm(payment_method=...)). A card that needs
        3-D Secure leaves the intent in requires_action for the page to finish.
        """
        tok = self._call(self.client.v1.tokens.retrieve, token)
        card_id = _id(tok.card)
        self._call(self.client.v1.payment_intents.update, intent_id, {"payment_method": card_id},
                   {"idempotency_key": _key("payment", payment_key, f"method-{token}")})
        pi = self._call(self.client.v1.payment_intents.confirm, intent_id, None,
                        {"idempotency_key": _key("payment", payment_key, f"confirm-{token}")})
        return self._view(pi)

    def capture(self, intent_id: str, *, payment_key: str) -> IntentView:
        pi = self._call(self.client.v1.payment_intents.capture, intent_id, None,
                        {"idempotency_key": _key("payment", payment_key, "capture")})
        return self._view(pi)

    def cancel(self, intent_id: str, *, payment_key: str) -> IntentView:
        pi = self._call(self.client.v1.payment_intents.cancel, intent_id, None,
                        {"idempotency_key": _key("payment", payment_key, "cancel")})
        return self._view(pi)

    # -- refunds ---------------------------------------------------------------------------

    def refund(self, intent_id: str, amount: int, *, refund_id: int, refund_key: str, reason: str = "") -> RefundView:
        params: dict = {"payment_intent": intent_id, "amount": amount,
                        "metadata": {"refund_id": str(refund_id), "refund_key": refund_key}}
        if self.live_params and reason == "slot_taken":
            params["reason"] = "requested_by_customer"
        re = self._call(self.client.v1.refunds.create, params,
                        {"idempotency_key": _key("refund", refund_key, "create")})
        return self._refund_view(re)

    def retrieve_refund(self, refund_id: str) -> RefundView:
        return self._refund_view(self._call(self.client.v1.refunds.retrieve, refund_id))

    def list_refunds(self, charge_id: str) -> list[RefundView]:
        refunds = self._call(self.client.v1.refunds.list, {"charge": charge_id, "limit": 100})
        return [self._refund_view(r) for r in refunds.data]

    @staticmethod
    def _refund_view(re) -> RefundView:
        metadata = re.metadata.to_dict() if re.metadata else {}
        return RefundView(id=re.id, status=re.status, amount=re.amount, charge_id=_id(getattr(re, "charge", None)),
                          refund_key=metadata.get("refund_key") or None,
                          failure_reason=getattr(re, "failure_reason", None) or "")

    # -- disputes --------------------------------------------------------------------------

    def retrieve_dispute(self, dispute_id: str, *, event_copy: dict) -> DisputeView:
        """The dispute as the provider has it now.

        localstripe has no disputes: when not live, the event's own copy is read
        instead (the caller then guards against events that arrive out of order).
        """
        if self.live_params:
            return self._dispute_view(self._call(self.client.v1.disputes.retrieve, dispute_id).to_dict())
        if event_copy.get("id") != dispute_id:
            raise GatewayError("not this dispute", code="resource_missing")
        return self._dispute_view(event_copy)

    @staticmethod
    def _dispute_view(obj: dict) -> DisputeView:
        try:
            txns = obj.get("balance_transactions") or []
            if not isinstance(txns, list):
                raise TypeError("balance_transactions")
            amounts = [t["amount"] for t in txns if isinstance(t, dict) and isinstance(t.get("amount"), int)]
            amount = obj["amount"]
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise TypeError("amount")
            return DisputeView(
                id=obj["id"], charge_id=_id(obj.get("charge")), intent_id=_id(obj.get("payment_intent")),
                status=str(obj.get("status") or ""), amount=amount, reason=str(obj.get("reason") or ""),
                withdrawn=-sum(a for a in amounts if a < 0), reinstated=sum(a for a in amounts if a > 0),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise GatewayError("not a dispute", code="invalid_dispute") from exc

    # -- webhooks --------------------------------------------------------------------------

    def parse_webhook(self, payload: bytes, signature: str | None) -> WebhookEventView:
        """Verify the signature and its age, and read the event; InvalidWebhook when it is not genuine.

        An event signed more than `webhook_tolerance` seconds ago (300 by default, as
        Stripe's own libraries) is refused like a forgery: a copied event cannot be replayed.
        """
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, self.webhook_secret,
                                                  tolerance=self.webhook_tolerance)
            data = json.loads(payload)
        except (stripe.SignatureVerificationError, ValueError, RecursionError) as exc:
            raise InvalidWebhook(str(exc)) from exc
        # A genuine signature does not make a well-formed event (a misconfigured
        # sender, a replayed test body): anything without an id, a type and an
        # object is refused like a forgery, not left to fail later as a 500.
        try:
            obj = data["data"]["object"]
            view = WebhookEventView(id=data["id"], type=data["type"], object_id=obj["id"],
                                    object_type=obj.get("object", ""), payload=data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidWebhook("not an event") from exc
        if not all(isinstance(v, str) and 0 < len(v) <= 64 for v in (view.id, view.type, view.object_id)):
            raise InvalidWebhook("not an event")  # our columns hold 64 characters
        return view
