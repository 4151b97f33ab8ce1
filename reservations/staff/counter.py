"""Counter (窓口) pages: book on behalf, take cash or a terminal payment, block time, cancel with a reason.

(The issue-8 counter work fills this in; the endpoints exist so that the calendars can link to them.)
"""
from . import bp, staff_required


@bp.get("/counter/new")
@staff_required
def counter_new():
    return "", 204  # placeholder until the counter pages land


@bp.get("/blocks/new")
@staff_required
def block_new():
    return "", 204  # placeholder until the counter pages land
