from flask import render_template

from ..services.finance.overview import overview
from . import bp, finance_required


@bp.get("/")
@finance_required
def index():
    return render_template("finance/index.html", overview=overview())
