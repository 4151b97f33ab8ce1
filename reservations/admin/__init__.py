"""Admin pages: the back-office accounts, their roles and the buildings each member of staff runs."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import routes  # noqa: E402,F401
