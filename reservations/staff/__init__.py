"""Staff pages. For now: the "needs attention" list of cases the system could not settle alone."""
from functools import wraps

from flask import Blueprint, abort
from flask_login import current_user, login_required

bp = Blueprint("staff", __name__, url_prefix="/staff")


def staff_required(view):
    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_staff:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


from . import routes  # noqa: E402,F401
