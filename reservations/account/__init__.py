from flask import Blueprint

from ..extensions import db, login_manager
from ..models import User

bp = Blueprint("account", __name__, url_prefix="/account")


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


from . import routes  # noqa: E402,F401
