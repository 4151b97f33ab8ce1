"""The resident side of the lottery (抽選): the rounds, each round's public page and its published draw,
applying, and the applications in My bookings (templates/lottery/_my_applications.html)."""
from flask import Blueprint

from .labels import GLOBALS
from .pages import applications_for, party_label

bp = Blueprint("lottery", __name__, url_prefix="/lottery")


@bp.record_once
def _register_globals(state) -> None:
    # My bookings (the bookings blueprint's page) includes the lottery section: its words and rows are global.
    state.app.jinja_env.globals.update(GLOBALS, lottery_applications_for=applications_for,
                                       lottery_party_label=party_label)


from . import routes  # noqa: E402,F401
