"""My groups, the application form, a group's page and the renewal request. Thin: the rules are services/groups.py."""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import or_, select

from ..extensions import db
from ..i18n import gettext as _
from ..models import Group, GroupMember, GroupStatus
from ..public.labels import catalog_lang
from ..public.routes import row_or_404
from ..services import groups as group_service
from ..services.groups import GroupError
from ..timeutil import business_date, now_utc
from . import bp
from .forms import RESIDENCY_LABELS, GroupForm, RenewForm


@bp.context_processor
def group_labels() -> dict:
    return {"group_status_label": group_service.status_label, "group_category_label": group_service.category_label,
            "member_residency_label": lambda code: str(RESIDENCY_LABELS.get(code, code)),
            "text_lang": catalog_lang, "renewal_opens": group_service.renewal_opens,
            "may_request_renewal": group_service.may_request_renewal}


def _my_group_or_404(group_id: int) -> Group:
    """The group, if the signed-in user represents it or is a listed member with this account; else 404."""
    group = row_or_404(Group, group_id)
    if group.representative_id != current_user.id and not any(m.user_id == current_user.id for m in group.members):
        abort(404)
    return group


@bp.get("/")
@login_required
def mine():
    member_of = select(GroupMember.group_id).where(GroupMember.user_id == current_user.id)
    groups = db.session.scalars(
        select(Group).where(or_(Group.representative_id == current_user.id, Group.id.in_(member_of)))
        .order_by(Group.created_at.desc(), Group.id.desc())).all()
    live = group_service.live_group_of(current_user.id)
    return render_template("groups/mine.html", groups=groups, live=live, today=business_date(now_utc()),
                           renew_form=RenewForm())


def _prefill() -> dict:
    """The contact and the first member row are the signed-in representative, as their account knows them."""
    me = current_user
    return {"contact_name": me.name, "contact_email": me.email, "contact_phone": me.phone or "",
            "members": [{"name": me.name, "kana": me.name_kana or "", "phone": me.phone or "",
                         "residency": me.residency, "email": me.email}]}


@bp.route("/apply", methods=["GET", "POST"])
@login_required
def apply():
    live = group_service.live_group_of(current_user.id)
    posted = request.method == "POST"
    if not current_user.email_verified or live is not None:
        # Nothing to apply for: the page says why (an unconfirmed address, or a group already represented).
        return render_template("groups/apply.html", form=None, live=live), 409 if posted else 200
    form = GroupForm() if posted else GroupForm(data=_prefill())
    if not posted:
        return render_template("groups/apply.html", form=form, live=None)
    if form.more_rows.data:  # more rows, nothing checked yet: what was typed stays
        form.add_rows()
        return render_template("groups/apply.html", form=form, live=None)
    if form.validate():
        try:
            group = group_service.apply_for_group(current_user._get_current_object(), form.application())
        except GroupError as exc:
            db.session.rollback()
            form.form_errors.append(exc.message)
        else:
            db.session.commit()
            flash(_("Your application is sent. Staff will review it; you will get an e-mail when they decide."),
                  "success")
            return redirect(url_for("groups.detail", group_id=group.id), 303)
    form.pad_rows()
    return render_template("groups/apply.html", form=form, live=None), 422


@bp.get("/<int:group_id>")
@login_required
def detail(group_id: int):
    group = _my_group_or_404(group_id)
    return render_template("groups/detail.html", group=group, today=business_date(now_utc()),
                           is_representative=group.representative_id == current_user.id, renew_form=RenewForm())


@bp.post("/<int:group_id>/renew")
@login_required
def renew(group_id: int):
    group = _my_group_or_404(group_id)
    form = RenewForm()
    if not form.validate_on_submit():
        flash(_("Your session expired or the form was tampered with. Please try again."), "error")
        return redirect(url_for("groups.detail", group_id=group.id), 303)
    was_expired = group.status == GroupStatus.EXPIRED
    try:
        group_service.request_renewal(group, current_user._get_current_object())
    except GroupError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash(_("Your renewal request is sent back for review: the group can book again once staff approve it.")
              if was_expired else _("Your renewal request is sent. Staff will review it before the registration "
                                    "runs out."), "success")
    return redirect(url_for("groups.detail", group_id=group.id), 303)
