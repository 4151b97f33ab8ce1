import re

from flask import Blueprint

from ..extensions import db, login_manager
from ..models import User

bp = Blueprint("account", __name__, url_prefix="/account")


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user a session belongs to, if that session has not been revoked.

    The session holds "<user id>:<session version>" (User.get_id). Logging out,
    changing or resetting the password bumps the version, so every cookie issued
    before (copied, stolen, or left on a shared computer) stops working at once.
    A bare id, from before versions existed, is refused: that user logs in again.
    """
    match = re.fullmatch(r"([0-9]{1,18}):([0-9]{1,18})", session_id)
    if match is None:
        return None
    user = db.session.get(User, int(match[1]))
    return user if user is not None and user.session_version == int(match[2]) else None


from . import routes  # noqa: E402,F401
