"""The provider's webhook endpoint: verified, stored once, acted on, never a 500."""
from flask import Blueprint, current_app, jsonify, request

from ..extensions import csrf, db
from ..payments import GatewayError, InvalidWebhook, get_gateway
from ..services.webhooks import handle_event

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/stripe")
@csrf.exempt
def stripe_events():
    # Provider events are a few KiB: a larger body is refused before it is read, let alone parsed.
    limit = current_app.config.get("WEBHOOK_MAX_BYTES", 256 * 1024)
    if request.content_length is not None and request.content_length > limit:
        return jsonify(error="payload too large"), 413
    payload = request.stream.read(limit + 1)
    if len(payload) > limit:
        return jsonify(error="payload too large"), 413
    try:
        event = get_gateway().parse_webhook(payload, request.headers.get("Stripe-Signature"))
    except InvalidWebhook:
        return jsonify(error="invalid signature"), 400
    try:
        outcome = handle_event(event)
        db.session.commit()
    except GatewayError as exc:
        db.session.rollback()
        if exc.transient:
            # We could not re-fetch the object; ask the provider to send it again later.
            return jsonify(error="provider unreachable, retry later"), 503
        # The provider says the object is not there (another account's, or not ours): sending
        # the event again would get the same answer, so it is acknowledged, logged, not stored.
        current_app.logger.warning("webhook %s %s: the provider refused (%s)", event.id, event.type, exc.code)
        return jsonify(received=True, outcome=f"refused by the provider: {exc.code}")
    current_app.logger.info("webhook %s %s: %s", event.id, event.type, outcome)
    return jsonify(received=True, outcome=outcome)
