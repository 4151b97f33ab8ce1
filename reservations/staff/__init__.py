"""Staff pages, scoped to the buildings each staff member runs (reservations/backoffice.py)."""
from flask import Blueprint

from ..backoffice import staff_required  # noqa: F401 (the views' decorator)

bp = Blueprint("staff", __name__, url_prefix="/staff")

from . import counter, exemptions, groups, lottery, operations, routes, setup  # noqa: E402,F401
