"""`flask finance ...`: export, close, reconcile. Each module of reservations/finance adds its commands here."""
from flask.cli import AppGroup

finance_cli = AppGroup("finance", help="The ledger's exports, the daily close and reconciliation with Stripe.")
