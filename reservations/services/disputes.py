"""Disputes (chargebacks): recorded against the payment, counted in what it holds, shown to staff.

The resident's bank opens a dispute on a charge; the provider withdraws the
disputed amount from us (funds_withdrawn) and gives it back if we win
(funds_reinstated). What a dispute has taken and not given back is the
payment's withdrawn_amount, and may not be refunded as well.
"""
from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Dispute, record
from ..payments import get_gateway
from . import ledger
from .attention import open_case
from .checkout import lock_payment, map_provider_id, payment_of
from .finance.reconcile import record_event_transactions


def sync_dispute(dispute_id: str, *, event_type: str, event_copy: dict) -> str:
    """Bring our record of a dispute in line with the provider's; returns what happened.

    Events may come twice or out of order, and (with localstripe) the event's
    copy is all we have: a closed dispute is never reopened by an older copy,
    and the money withdrawn or reinstated only ever grows.
    """
    view = get_gateway().retrieve_dispute(dispute_id, event_copy=event_copy)
    payment = payment_of(view.id, view.charge_id, view.intent_id)
    if payment is None:
        return "unknown payment"
    payment = lock_payment(payment)
    dispute = db.session.scalar(select(Dispute).where(Dispute.provider_dispute_id == view.id))
    opened = dispute is None
    if opened:
        if view.amount <= 0:
            return "ignored"
        dispute = Dispute(payment_id=payment.id, provider_dispute_id=view.id, status=view.status,
                          amount=view.amount, reason=view.reason[:64])
        db.session.add(dispute)
        db.session.flush()
        map_provider_id(view.id, "dispute", payment)
    was_closed, before = dispute.closed and not opened, (dispute.status, dispute.withdrawn_amount,
                                                         dispute.reinstated_amount)
    if not (was_closed and view.status not in Dispute.CLOSED):
        dispute.status = view.status
    withdrawn = view.withdrawn
    if not withdrawn and event_type == "charge.dispute.funds_withdrawn":
        withdrawn = view.amount  # the event says so, even when its copy lists no balance transactions
    withdrawn = max(dispute.withdrawn_amount, min(withdrawn, payment.captured_amount))
    reinstated = max(dispute.reinstated_amount, min(view.reinstated, withdrawn))
    # Its balance transactions as the event lists them (localstripe has none of its own; reconciliation reads them).
    record_event_transactions(view.transactions, intent_id=view.intent_id)
    if withdrawn and not dispute.withdrawn_amount:
        ledger.post(payment, "dispute_withdrawal", withdrawn, view.id, charge_id=view.charge_id,
                    balance_transaction_id=next((t.id for t in view.transactions if t.amount < 0), None))
    if reinstated and not dispute.reinstated_amount:
        ledger.post(payment, "dispute_reinstatement", reinstated, view.id, charge_id=view.charge_id,
                    balance_transaction_id=next((t.id for t in view.transactions if t.amount > 0), None))
    dispute.withdrawn_amount, dispute.reinstated_amount = withdrawn, reinstated
    db.session.flush()
    net = sum(d.withdrawn_amount - d.reinstated_amount
              for d in db.session.scalars(select(Dispute).where(Dispute.payment_id == payment.id)))
    payment.withdrawn_amount = max(0, min(net, payment.captured_amount))
    after = (dispute.status, dispute.withdrawn_amount, dispute.reinstated_amount)
    if after == before and not opened:
        return "unchanged"
    record("payment", payment.id, f"dispute {dispute.status}", dispute_id=dispute.id, provider_dispute_id=view.id,
           amount=dispute.amount, withdrawn=withdrawn, reinstated=reinstated, reason=dispute.reason)
    detail = (f"dispute {view.id}: {dispute.amount} yen, {dispute.reason or 'no reason given'}, "
              f"{dispute.status}; withdrawn {withdrawn} yen, reinstated {reinstated} yen")
    if opened:
        open_case(payment, "dispute_opened", detail, dispute=dispute)
    if dispute.closed and not was_closed:
        open_case(payment, "dispute_closed", detail, dispute=dispute)
    current_app.logger.info("dispute %s on payment %s: %s", view.id, payment.id, dispute.status)
    return "opened" if opened else f"dispute {dispute.status}"
