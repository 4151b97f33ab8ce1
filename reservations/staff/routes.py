from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm

from ..extensions import db
from ..models import AttentionCase
from ..public.routes import MAX_ID
from ..services import attention
from . import bp, staff_required


class ResolveForm(FlaskForm):
    pass


@bp.get("/attention")
@staff_required
def attention_list():
    return render_template("staff/attention.html", cases=attention.open_cases(), form=ResolveForm(),
                           case_label=attention.case_label, refund_state_label=attention.refund_state_label)


@bp.post("/attention/<int:case_id>/resolve")
@staff_required
def resolve(case_id: int):
    form = ResolveForm()
    if not 0 < case_id <= MAX_ID:
        abort(404)  # PostgreSQL's integer ids stop there; a larger one would be a 500, not "not found"
    case = db.get_or_404(AttentionCase, case_id)
    if form.validate_on_submit():
        attention.resolve(case, current_user)
        db.session.commit()
        flash(_("The case is marked as resolved."), "success")
    return redirect(url_for(".attention_list"))
