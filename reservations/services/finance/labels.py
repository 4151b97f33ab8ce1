"""The words finance pages and files use for the ledger's codes: one set, for every page, export and sheet."""
from ...i18n import lazy_gettext as _l
from .. import ledger
from ..exports import PAYMENT_METHODS

KIND_LABELS = {
    "capture": _l("Payment received"),
    "refund": _l("Refund paid"),
    "refund_reversal": _l("Refund reversed"),
    "dispute_withdrawal": _l("Dispute withdrawal"),
    "dispute_reinstatement": _l("Dispute reinstatement"),
    "fee": _l("Processor fee"),
    "fee_refund": _l("Processor fee returned"),
}
REFUND_KIND_LABELS = {"current": _l("Current-year refund"), "prior": _l("Prior-year expense")}
# The ledger says card | cash | terminal for what the payment calls stripe | cash | terminal.
METHOD_LABELS = {ledger.METHODS[provider]: label for provider, label in PAYMENT_METHODS.items()}
