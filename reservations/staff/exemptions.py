"""Exemptions (減免) in the back office: the applications waiting for a decision, and the kinds the ordinance allows.

The decisions are staff's, for the bookings of the buildings they run (404 for any other, as everywhere in the
back office); the kinds are the ward's configuration: staff see them, admin change them (on /admin/, the
authorisation matrix's rule for an admin-only page). The rules are services/exemptions.py.
"""
import re

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectMultipleField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..account.forms import TOO_LONG, halfwidth, trim
from ..admin import bp as admin_bp
from ..backoffice import admin_required, require_building
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Exemption, ExemptionKind, ExemptionState, GroupCategory
from ..public.routes import row_or_404
from ..services import exemptions
from ..timeutil import now_utc
from . import bp, staff_required
from .setup import no_control_characters

PARTY_LABELS = {
    GroupCategory.GENERAL.value: _l("General groups (一般団体)"),
    GroupCategory.WELFARE.value: _l("Welfare groups (福祉団体)"),
    GroupCategory.SCHOOL.value: _l("Schools (学校)"),
    GroupCategory.WARD.value: _l("The ward itself (区)"),
    exemptions.INDIVIDUAL: _l("A person booking as themselves"),
}


def party_label(code: str) -> str:
    return str(PARTY_LABELS.get(code, code))


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


# -- forms ------------------------------------------------------------------------------------------

class ApproveForm(FlaskForm):
    reason = TextAreaField(_l("Note (optional)"), filters=[trim], validators=[
        Optional(), Length(max=exemptions.REASON_MAX, message=TOO_LONG), no_control_characters])


class RefuseForm(FlaskForm):
    reason = TextAreaField(_l("Reason for refusing (told to the resident)"), filters=[trim], validators=[
        DataRequired(_l("Give the reason for refusing: the resident is told it.")),
        Length(max=exemptions.REASON_MAX, message=TOO_LONG), no_control_characters])


def approve_form(exemption_id: int, **kwargs) -> ApproveForm:
    return ApproveForm(prefix=f"approve{exemption_id}", **kwargs)


def refuse_form(exemption_id: int, **kwargs) -> RefuseForm:
    return RefuseForm(prefix=f"refuse{exemption_id}", **kwargs)


class KindForm(FlaskForm):
    # Typed with a Japanese IME (ｗｅｌｆａｒｅ) or in lower case, it is still WELFARE.
    code = StringField(_l("Code"), filters=[lambda v: halfwidth(v).upper() if isinstance(v, str) else v], validators=[
        DataRequired(_l("Enter a code, like WELFARE50.")), Length(max=32, message=TOO_LONG)])
    name_ja = StringField(_l("Name in Japanese"), filters=[trim], validators=[
        DataRequired(_l("Enter the name in Japanese.")), Length(max=200, message=TOO_LONG), no_control_characters])
    name_en = StringField(_l("Name in English"), filters=[trim], validators=[
        Optional(), Length(max=200, message=TOO_LONG), no_control_characters])
    rate_pct = IntegerField(_l("Reduction (percent of the fee)"),
                            invalid_value_message=_l("Enter a whole number, like 50."),
                            validators=[InputRequired(_l("Enter the reduction, from 1 to 100.")),
                                        NumberRange(1, 100, message=_l("Enter a number from %(min)s to %(max)s."))])
    legal_ground = StringField(_l("Legal ground (article of the ordinance)"), filters=[trim], validators=[
        DataRequired(_l("Enter the article of the ordinance that allows it, like 条例第10条第1号.")),
        Length(max=300, message=TOO_LONG), no_control_characters])
    eligible = CheckboxesField(_l("Who may use it"), validators=[
        DataRequired(_l("Choose at least one kind of party that may use it."))])
    needs_approval = BooleanField(_l("Each use needs staff's approval"))
    active = BooleanField(_l("In use (offered to residents)"), default=True)
    submit = SubmitField(_l("Save"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.eligible.choices = [(p, party_label(p)) for p in exemptions.ELIGIBLE_PARTIES]

    def validate_code(self, field) -> None:
        if field.data and not re.fullmatch(r"[A-Z0-9_-]+", field.data):
            raise ValidationError(_l("Use capital letters, digits, - and _ only, like WELFARE50."))

    def values(self) -> dict:
        return {name: self[name].data for name in exemptions.KIND_FIELDS} | {"name_en": self.name_en.data or ""}


@bp.context_processor
def exemption_helpers() -> dict:
    """For the staff pages (the front page's count, the booking page's state): asked only when a page uses it."""
    return {"exemptions_waiting": lambda: exemptions.waiting_count(current_user, now_utc()),
            "exemption_overdue": lambda e: exemptions.is_overdue(e, now_utc()),
            "exemption_open": lambda e: (e.state == ExemptionState.PENDING
                                         and e.booking.hold_is_live(now_utc())),
            "party_label": party_label}


# -- the decisions ----------------------------------------------------------------------------------

def _list_page(forms: dict | None = None, status: int = 200):
    now = now_utc()
    waiting = exemptions.waiting(current_user, now)
    forms = forms or {}
    for e in waiting:
        forms.setdefault(("approve", e.id), approve_form(e.id, formdata=None))
        forms.setdefault(("refuse", e.id), refuse_form(e.id, formdata=None))
    return render_template("staff/exemptions/index.html", waiting=waiting, forms=forms, now=now,
                           overdue=lambda e: exemptions.is_overdue(e, now)), status


@bp.get("/exemptions/")
@staff_required
def exemptions_list():
    return _list_page()


def _exemption_in_scope(exemption_id: int) -> Exemption:
    """The exemption, if its booking's building is the caller's, read again under its lock; else 404 either way."""
    exemption = row_or_404(Exemption, exemption_id)
    require_building(exemption.booking.room.building_id)
    return exemptions.lock(exemption.id)


def _decide(exemption_id: int, verb: str):
    exemption = _exemption_in_scope(exemption_id)
    form = approve_form(exemption_id) if verb == "approve" else refuse_form(exemption_id)
    if not form.validate_on_submit():
        db.session.rollback()
        return _list_page({(verb, exemption_id): form}, 422)
    decide = exemptions.approve if verb == "approve" else exemptions.refuse
    try:
        decide(exemption, staff=current_user._get_current_object(), now=now_utc(), reason=form.reason.data or "")
    except exemptions.ExemptionError as exc:
        db.session.rollback()
        flash(exc.message, "info" if exc.code == "decided" else "error")
        return redirect(url_for(".exemptions_list"), 303)
    db.session.commit()
    if verb == "approve":
        flash(_("Exemption approved for booking %(number)s. The resident is told by mail.",
                number=exemption.booking_id), "success")
    else:
        flash(_("Exemption refused for booking %(number)s: the full fee is due by the payment deadline. "
                "The resident is told by mail.", number=exemption.booking_id), "success")
    return redirect(url_for(".exemptions_list"), 303)


@bp.post("/exemptions/<int:exemption_id>/approve")
@staff_required
def exemption_approve(exemption_id: int):
    return _decide(exemption_id, "approve")


@bp.post("/exemptions/<int:exemption_id>/refuse")
@staff_required
def exemption_refuse(exemption_id: int):
    return _decide(exemption_id, "refuse")


# -- the kinds --------------------------------------------------------------------------------------

@bp.get("/exemptions/kinds")
@staff_required
def exemption_kinds():
    return render_template("staff/exemptions/kinds.html", kinds=exemptions.kinds())


def _kind_page(form: KindForm, kind: ExemptionKind | None):
    if request.method == "POST" and form.validate_on_submit():
        try:
            kind, changed = exemptions.save_kind(current_user, form.values(), kind)
        except exemptions.ExemptionError as exc:
            db.session.rollback()
            form[exc.field].errors.append(exc.message)
        else:
            db.session.commit()
            if not changed:
                flash(_("Nothing changed."), "info")
            else:
                flash(_("The exemption kind %(code)s is saved.", code=kind.code), "success")
            return redirect(url_for("staff.exemption_kinds"), 303)
    return (render_template("staff/exemptions/kind_form.html", form=form, kind=kind),
            422 if request.method == "POST" else 200)


@admin_bp.route("/exemptions/kinds/new", methods=["GET", "POST"])
@admin_required
def exemption_kind_new():
    return _kind_page(KindForm(), None)


@admin_bp.route("/exemptions/kinds/<int:kind_id>", methods=["GET", "POST"])
@admin_required
def exemption_kind_edit(kind_id: int):
    kind = row_or_404(ExemptionKind, kind_id)
    form = KindForm(obj=kind if request.method == "GET" else None)
    if request.method == "GET":
        form.eligible.data = kind.eligible_list
    return _kind_page(form, kind)
