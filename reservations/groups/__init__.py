"""A resident's registered groups (登録団体): apply for one, see its review, ask to renew it.

The rules are services/groups.py; staff review the applications on /staff/groups/ (staff/groups.py).
"""
from flask import Blueprint

bp = Blueprint("groups", __name__, url_prefix="/groups")

from . import routes  # noqa: E402,F401
