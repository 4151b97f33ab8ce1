"""Stripe, the only module that imports stripe.

The same code talks to localstripe (tests and the local default) and to real
Stripe (production keys from the environment). The few parameters localstripe
rejects are sent only when `live_params` is on. Every call that changes
something carries an idempotency key derived from our own ids.
"""
import json

import stripe

from . import CardDeclined, GatewayError, IntentView, InvalidWebhook, RefundView, WebhookEventView


def _error(exc: stripe.StripeError) -> GatewayError:
    if isinstance(exc, stripe.APIConnectionError):
        return GatewayError("The payment service cannot be reached.", code="unreachable", unreachable=True)
    if isinstance(exc, stripe.CardError):
        return CardDeclined(exc.user_message or "Your card was declined.", code=exc.code or "card_declined")
    return GatewayError(exc.user_message or "The payment service refused the request.",
                        code=getattr(exc, "code", "") or "")


def _id(value) -> str | None:
    """An expandable field: an id, an expanded object, or nothing."""
    if value is None or isinstance(value, str):
        return value
    return value["id"]


class StripeGateway:
    def __init__(self, secret_key: str, publishable_key: str, *, api_base: str | None, js_url: str,
                 webhook_secret: str, capture_method: str = "manual", live_params: bool = False,
                 timeout: int = 10):
        base = {"api": api_base} if api_base else None
        self.client = stripe.StripeClient(
            secret_key, base_addresses=base, max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )
        self.publishable_key = publishable_key
        self.js_url = js_url
        self.webhook_secret = webhook_secret
        self.capture_method = capture_method
        self.live_params = live_params

    @classmethod
    def from_config(cls, config) -> "StripeGateway":
        return cls(
            config["STRIPE_SECRET_KEY"], config["STRIPE_PUBLISHABLE_KEY"],
            api_base=config["STRIPE_API_BASE"] or None, js_url=config["STRIPE_JS_URL"],
            webhook_secret=config["STRIPE_WEBHOOK_SECRET"], capture_method=config["PAYMENT_CAPTURE_METHOD"],
            live_params=config["STRIPE_LIVE_PARAMS"],
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
        return IntentView(
            id=pi.id, status=pi.status, amount=pi.amount,
            amount_received=getattr(pi, "amount_received", None) or 0,
            client_secret=pi.client_secret or "",
            charge_id=_id(charge),
            error_code=(error["code"] if error and "code" in error else "") or "",
            error_message=(error["message"] if error and "message" in error else "") or "",
            metadata=pi.metadata.to_dict() if pi.metadata else {},
        )

    # -- intents ---------------------------------------------------------------------------

    def create_intent(self, *, amount: int, booking_id: int, payment_id: int, description: str) -> IntentView:
        """A PaymentIntent in JPY (whole yen) for one of our payments."""
        params = {
            "amount": amount, "currency": "jpy", "capture_method": self.capture_method,
            "payment_method_types": ["card"],
            "metadata": {"booking_id": str(booking_id), "payment_id": str(payment_id)},
        }
        if self.live_params:
            params["description"] = description
            params["payment_method_options"] = {"card": {"request_three_d_secure": "automatic"}}
        pi = self._call(self.client.v1.payment_intents.create, params,
                        {"idempotency_key": f"payment-{payment_id}-create"})
        return self._view(pi)

    def retrieve_intent(self, intent_id: str) -> IntentView:
        return self._view(self._call(self.client.v1.payment_intents.retrieve, intent_id))

    def confirm_with_token(self, intent_id: str, token: str, *, payment_id: int) -> IntentView:
        """Confirm the intent with a card tokenised by Stripe.js in the resident's browser.

        The token's card becomes the intent's payment method (set with modify:
        localstripe refuses confirm(payment_method=...)). A card that needs
        3-D Secure leaves the intent in requires_action for the page to finish.
        """
        tok = self._call(self.client.v1.tokens.retrieve, token)
        card_id = _id(tok.card)
        self._call(self.client.v1.payment_intents.update, intent_id, {"payment_method": card_id},
                   {"idempotency_key": f"payment-{payment_id}-method-{token}"})
        pi = self._call(self.client.v1.payment_intents.confirm, intent_id, None,
                        {"idempotency_key": f"payment-{payment_id}-confirm-{token}"})
        return self._view(pi)

    def confirm_with_method(self, intent_id: str, payment_method: str, *, payment_id: int) -> IntentView:
        """Confirm with a saved or test payment method id (pm_card_visa, ...)."""
        self._call(self.client.v1.payment_intents.update, intent_id, {"payment_method": payment_method},
                   {"idempotency_key": f"payment-{payment_id}-method-{payment_method}"})
        pi = self._call(self.client.v1.payment_intents.confirm, intent_id, None,
                        {"idempotency_key": f"payment-{payment_id}-confirm-{payment_method}"})
        return self._view(pi)

    def capture(self, intent_id: str, *, payment_id: int) -> IntentView:
        pi = self._call(self.client.v1.payment_intents.capture, intent_id, None,
                        {"idempotency_key": f"payment-{payment_id}-capture"})
        return self._view(pi)

    def cancel(self, intent_id: str, *, payment_id: int) -> IntentView:
        pi = self._call(self.client.v1.payment_intents.cancel, intent_id, None,
                        {"idempotency_key": f"payment-{payment_id}-cancel"})
        return self._view(pi)

    # -- refunds ---------------------------------------------------------------------------

    def refund(self, intent_id: str, amount: int, *, refund_id: int, reason: str = "") -> RefundView:
        params: dict = {"payment_intent": intent_id, "amount": amount,
                        "metadata": {"refund_id": str(refund_id)}}
        if self.live_params and reason == "slot_taken":
            params["reason"] = "requested_by_customer"
        re = self._call(self.client.v1.refunds.create, params, {"idempotency_key": f"refund-{refund_id}"})
        return self._refund_view(re)

    def retrieve_refund(self, refund_id: str) -> RefundView:
        return self._refund_view(self._call(self.client.v1.refunds.retrieve, refund_id))

    def list_refunds(self, charge_id: str) -> list[RefundView]:
        refunds = self._call(self.client.v1.refunds.list, {"charge": charge_id, "limit": 100})
        return [self._refund_view(r) for r in refunds.data]

    @staticmethod
    def _refund_view(re) -> RefundView:
        ours = (re.metadata.to_dict() if re.metadata else {}).get("refund_id", "")
        return RefundView(id=re.id, status=re.status, amount=re.amount,
                          refund_id=int(ours) if ours.isdigit() else None)

    # -- webhooks --------------------------------------------------------------------------

    def parse_webhook(self, payload: bytes, signature: str | None) -> WebhookEventView:
        """Verify the signature and read the event; InvalidWebhook when it is not genuine."""
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, self.webhook_secret)
            data = json.loads(payload)
        except (stripe.SignatureVerificationError, ValueError) as exc:
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

