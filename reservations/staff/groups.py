"""Registered groups (登録団体) in the back office: the applications to review, each group with its members, what
the identity checks found (the duplicate listings side by side) and its history; approve, reject, suspend,
reinstate and approve a renewal.

Groups are the ward's, not a building's: any member of staff (and admin) reviews them, whatever buildings they
run; finance and residents get 403 (staff_required). The rules are services/groups.py.
"""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import case, func, select
from sqlalchemy.orm import joinedload
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..account.forms import TOO_LONG, trim
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import AuditEntry, Group, GroupStatus, User
from ..public.routes import row_or_404
from ..services import groups as group_service
from ..services.groups import GroupError
from ..timeutil import business_date, now_utc
from . import bp, staff_required
from .setup import no_control_characters

REASON_MAX = 2000
LIST_LIMIT = 500
# The list's order: what waits for a decision first.
STATUS_ORDER = [GroupStatus.PENDING, GroupStatus.ACTIVE, GroupStatus.SUSPENDED, GroupStatus.EXPIRED,
                GroupStatus.REJECTED]


def _reason(label, required=None):
    validators = [DataRequired(required)] if required else [Optional()]
    return TextAreaField(label, filters=[trim], validators=[
        *validators, Length(max=REASON_MAX, message=TOO_LONG), no_control_characters])


class ApproveForm(FlaskForm):
    override_reason = _reason(_l("Reason for approving despite the findings"))


class RejectForm(FlaskForm):
    reason = _reason(_l("Reason for rejecting (told to the representative)"),
                     _l("Give the reason for rejecting: the representative is told it."))


class SuspendForm(FlaskForm):
    reason = _reason(_l("Reason for suspending (told to the representative)"),
                     _l("Give the reason for suspending: the representative is told it."))


class ReinstateForm(FlaskForm):
    note = _reason(_l("Note (optional)"))


class RenewalForm(FlaskForm):
    pass


FORMS = {"approve": ApproveForm, "reject": RejectForm, "suspend": SuspendForm, "reinstate": ReinstateForm,
         "renew": RenewalForm}


def _forms(**given) -> dict:
    """One form per action, each with its own prefix (so the page's ids are unique); `given` are the posted ones."""
    return {name: given.get(name) or form(prefix=name, formdata=None) for name, form in FORMS.items()}


def _history(group: Group) -> list[AuditEntry]:
    return list(db.session.scalars(
        select(AuditEntry).where(AuditEntry.subject == "group", AuditEntry.subject_id == group.id)
        .order_by(AuditEntry.at, AuditEntry.id).options(joinedload(AuditEntry.actor))))


@bp.context_processor
def group_labels() -> dict:
    return {"group_status_label": group_service.status_label, "group_category_label": group_service.category_label}


@bp.get("/groups/")
@staff_required
def group_list():
    status = request.args.get("status", "")
    if status not in {s.value for s in GroupStatus}:
        status = ""
    order = case({s.value: n for n, s in enumerate(STATUS_ORDER)}, value=Group.status, else_=len(STATUS_ORDER))
    statement = (select(Group).options(joinedload(Group.representative))
                 .order_by(order, Group.renewal_requested_at.is_(None), Group.created_at, Group.id))
    if status:
        statement = statement.where(Group.status == status)
    groups = db.session.scalars(statement.limit(LIST_LIMIT)).all()
    counts = dict(db.session.execute(select(Group.status, func.count()).group_by(Group.status)).all())
    return render_template("staff/groups/list.html", groups=groups, status=status, counts=counts,
                           statuses=STATUS_ORDER, limit=LIST_LIMIT)


def _detail_page(group: Group, status: int = 200, **forms):
    members = sorted(group.members, key=lambda m: m.id)
    accounts = {u.id: u for u in db.session.scalars(
        select(User).where(User.id.in_([m.user_id for m in members if m.user_id])))} if members else {}
    return render_template("staff/groups/detail.html", group=group, members=members, accounts=accounts,
                           history=_history(group), forms=_forms(**forms), today=business_date(now_utc())), status


@bp.get("/groups/<int:group_id>")
@staff_required
def group_detail(group_id: int):
    group = row_or_404(Group, group_id)
    return _detail_page(group)


def _decide(group_id: int, name: str, act, done: str):
    """Read the action's form; on a valid one call `act(group, form)`, commit and say `done`; else the page again."""
    group = row_or_404(Group, group_id)
    form = FORMS[name](prefix=name)
    if not form.validate_on_submit():
        return _detail_page(group, 422, **{name: form})
    try:
        done_now = act(group, form)
    except GroupError as exc:
        db.session.rollback()
        group = row_or_404(Group, group_id)
        form.form_errors.append(exc.message)
        return _detail_page(group, 409 if exc.code != "override_required" else 422, **{name: form})
    db.session.commit()
    if done_now is False:  # approve found something new: shown on the page, nothing decided
        flash(_("The checks found something new since the application: see the findings before deciding."),
              "error")
    else:
        flash(done, "success")
    return redirect(url_for("staff.group_detail", group_id=group_id), 303)


def _staff() -> User:
    return current_user._get_current_object()


@bp.post("/groups/<int:group_id>/approve")
@staff_required
def group_approve(group_id: int):
    return _decide(group_id, "approve",
                   lambda g, f: group_service.approve(g, _staff(), override_reason=f.override_reason.data or ""),
                   _("The group is registered. The representative is told by e-mail."))


@bp.post("/groups/<int:group_id>/reject")
@staff_required
def group_reject(group_id: int):
    return _decide(group_id, "reject", lambda g, f: group_service.reject(g, _staff(), reason=f.reason.data),
                   _("The application is rejected. The representative is told the reason by e-mail."))


@bp.post("/groups/<int:group_id>/suspend")
@staff_required
def group_suspend(group_id: int):
    return _decide(group_id, "suspend", lambda g, f: group_service.suspend(g, _staff(), reason=f.reason.data),
                   _("The group is suspended. The representative is told the reason by e-mail."))


@bp.post("/groups/<int:group_id>/reinstate")
@staff_required
def group_reinstate(group_id: int):
    return _decide(group_id, "reinstate", lambda g, f: group_service.reinstate(g, _staff(), note=f.note.data or ""),
                   _("The suspension is lifted."))


@bp.post("/groups/<int:group_id>/renew")
@staff_required
def group_renew(group_id: int):
    return _decide(group_id, "renew", lambda g, f: group_service.approve_renewal(g, _staff()),
                   _("The renewal is approved: the registration is extended."))
