from flask import Blueprint

from .labels import GLOBALS

bp = Blueprint("public", __name__)


@bp.record_once
def _register_labels(state) -> None:
    # Labels (and get_locale, which base.html needs) are used by every blueprint's templates.
    state.app.jinja_env.globals.update(GLOBALS)


from . import routes  # noqa: E402,F401
