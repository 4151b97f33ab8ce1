"""The provider's webhook endpoint: verified, stored once, acted on, never a 500."""
from flask import Blueprint, current_app, jsonify, request

from ..extensions import csrf, db
from ..payments import GatewayError, InvalidWebhook, get_gateway
from ..services.webhooks import handle_event

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/stripe")
@csrf.exempt
def stripe_events():
    try:
        event = get_gateway().parse_webhook(request.get_data(), request.headers.get("Stripe-Signature"))
    except InvalidWebhook:
        return jsonify(error="invalid signature"), 400
    try:
        outcome = handle_event(event)
        db.session.commit()
    except GatewayError:
        # We could not re-fetch the object; ask the provider to send it again later.
        db.session.rollback()
        return jsonify(error="provider unreachable, retry later"), 503
    current_app.logger.info("webhook %s %s: %s", event.id, event.type, outcome)
    return jsonify(received=True, outcome=outcome)
