"""Finance pages (/finance/): the ledger's exports, the daily close, reconciliation with the provider, the dashboard.

For the finance role and admin (reservations/backoffice.py). Finance sees money and what traces it:
booking number, payer name, building and room; no e-mail address, phone or other personal data.
Each page's rules live in services/finance/; the views here only read forms and render.
"""
from flask import Blueprint

from ..backoffice import role_required
from ..models import Role

bp = Blueprint("finance", __name__, url_prefix="/finance")
finance_required = role_required(Role.FINANCE, Role.ADMIN)

from . import close, dashboard, exports, reconcile, routes  # noqa: E402,F401
