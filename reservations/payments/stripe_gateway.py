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

Balance transactions (what reconciliation reads, services/finance/reconcile.py):
- live, `list_balance_transactions` asks `/v1/balance_transactions` with `created[gte]`/`created[lt]` and,
  for one payout, `payout=`; localstripe refuses every filter ("Unexpected created"), so when not live the
  whole list is read and filtered by `created` here, and a payout's list is empty: localstripe makes no
  automatic payouts and links no transaction to one. (It also routes `/v1/balance/history`, but that path
  answers 500; the SDK's `/v1/balance_transactions` works.) `list_intents` is read the same way;
- localstripe's fee is always 0 (Stripe's is about 3.6 % for a Japanese card), so no fee row is ever written
  in development, and it makes a balance transaction only on a capture and on a refund: disputes, their
  withdrawals and reinstatements have none there (the tests put them in the dispute events they post);
- an intent's charge, and so its balance transaction, comes inside the intent from localstripe; live, the
  capture and the retrieval ask for it (`expand[]=latest_charge`), which localstripe refuses on a capture.
"""
import json
from datetime import UTC, datetime

import stripe

from ..observability import provider_error
from . import (
    BalanceTransactionView,
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


def _moment(value) -> datetime | None:
    """A Unix time as an aware UTC datetime (None when absent or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, UTC)


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def _within(created, since: datetime | None, until: datetime | None) -> bool:
    """Whether a Unix time falls in [since, until): the filter localstripe cannot apply itself."""
    moment = _moment(created)
    return moment is not None and (since is None or moment >= since) and (until is None or moment < until)


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
            error = _error(exc)
            provider_error(error)  # the metric, by the kind just decided
            raise error from exc

    @staticmethod
    def _view(pi) -> IntentView:
        error = pi.last_payment_error
        charge = pi.latest_charge
        # Only an expanded charge (localstripe's always are; live, see _expanded) names its balance transaction.
        txn = None if charge is None or isinstance(charge, str) else getattr(charge, "balance_transaction", None)
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
            balance_transaction_id=_id(txn),
        )

    def _expanded(self) -> dict | None:
        """Live, ask for the intent's charge with it (its balance transaction); localstripe sends it anyway."""
        return {"expand": ["latest_charge"]} if self.live_params else None

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
        return self._view(self._call(self.client.v1.payment_intents.retrieve, intent_id, self._expanded()))

    def list_intents(self, created_from: datetime, created_to: datetime) -> list[IntentView]:
        """The intents created in [created_from, created_to), whoever made them (see the module docstring)."""
        if self.live_params:
            params = {"created": {"gte": _timestamp(created_from), "lt": _timestamp(created_to)}, "limit": 100}
            return [self._view(pi) for pi in self._every(self.client.v1.payment_intents.list, params)]
        return [self._view(pi) for pi in self._every(self.client.v1.payment_intents.list, {"limit": 100})
                if _within(pi.created, created_from, created_to)]

    def _every(self, list_call, params: dict) -> list:
        """Every item of a list, page after page: each page is a request, and any of them may fail."""
        page = self._call(list_call, params)
        return self._call(lambda: list(page.auto_paging_iter()))

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
        pi = self._call(self.client.v1.payment_intents.capture, intent_id, self._expanded(),
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
                          failure_reason=getattr(re, "failure_reason", None) or "",
                          balance_transaction_id=_id(getattr(re, "balance_transaction", None)))

    # -- health ------------------------------------------------------------------------------

    def ping(self) -> None:
        """One cheap authenticated read (a single balance transaction), for /healthz; raises GatewayError."""
        self._call(self.client.v1.balance_transactions.list, {"limit": 1})

    # -- balance transactions ----------------------------------------------------------------

    def list_balance_transactions(self, created_from: datetime | None = None, created_to: datetime | None = None,
                                  payout: str | None = None) -> list[BalanceTransactionView]:
        """The balance transactions created in [created_from, created_to), or those of one payout.

        Live, Stripe filters them; localstripe cannot, and links none to a payout (module docstring).
        """
        if self.live_params:
            params: dict = {"limit": 100}
            created = {k: _timestamp(v) for k, v in (("gte", created_from), ("lt", created_to)) if v is not None}
            if created:
                params["created"] = created
            if payout:
                params["payout"] = payout
            found = self._every(self.client.v1.balance_transactions.list, params)
        elif payout:
            return []
        else:
            found = [t for t in self._every(self.client.v1.balance_transactions.list, {"limit": 100})
                     if _within(t.created, created_from, created_to)]
        return [self._transaction_view(t.to_dict(), payout_id=payout) for t in found]

    @staticmethod
    def _transaction_view(obj: dict, *, payout_id: str | None = None,
                          source_id: str | None = None) -> BalanceTransactionView:
        """A balance transaction object (of the API, or inside a dispute) as ours; TypeError/KeyError if not one.

        A copy inside a dispute may leave out what the dispute says itself: its source is the dispute, and
        its fee and net follow from the amount.
        """
        amount, fee = obj["amount"], obj.get("fee") or 0
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (amount, fee)):
            raise TypeError("amount")
        net = obj.get("net", amount - fee)
        if not isinstance(net, int) or isinstance(net, bool) or not isinstance(obj["id"], str):
            raise TypeError("net")
        category = str(obj.get("reporting_category") or "")
        return BalanceTransactionView(
            id=obj["id"], type=str(obj.get("type") or category), reporting_category=category,
            amount=amount, fee=fee, net=net, currency=str(obj.get("currency") or "jpy"),
            source_id=_id(obj.get("source")) or source_id, created=_moment(obj.get("created")),
            available_on=_moment(obj.get("available_on")), payout_id=payout_id,
        )

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
            transactions = tuple(StripeGateway._transaction_view(t, source_id=obj["id"]) for t in txns
                                 if isinstance(t, dict) and isinstance(t.get("id"), str)
                                 and isinstance(t.get("amount"), int))
            return DisputeView(
                id=obj["id"], charge_id=_id(obj.get("charge")), intent_id=_id(obj.get("payment_intent")),
                status=str(obj.get("status") or ""), amount=amount, reason=str(obj.get("reason") or ""),
                withdrawn=-sum(a for a in amounts if a < 0), reinstated=sum(a for a in amounts if a > 0),
                transactions=transactions,
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
