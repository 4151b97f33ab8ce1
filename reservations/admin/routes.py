from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from ..account.routes import _show_error, mail_reset_link
from ..backoffice import admin_required
from ..extensions import db
from ..i18n import gettext as _
from ..models import Building, User
from ..public.labels import building_name
from ..public.routes import row_or_404
from ..services import staff_accounts
from ..services.staff_accounts import ROLE_LABELS, StaffAccountError
from . import bp
from .forms import AccessForm, NewAccountForm


def _buildings() -> list[tuple[Building, str]]:
    return [(b, building_name(b)) for b in db.session.scalars(select(Building).order_by(Building.id))]


@bp.get("/accounts")
@admin_required
def accounts():
    return render_template("admin/accounts.html", users=staff_accounts.back_office_accounts(),
                           role_label=lambda r: str(ROLE_LABELS.get(r, r)))


@bp.route("/accounts/new", methods=["GET", "POST"])
@admin_required
def new_account():
    form = NewAccountForm(buildings=_buildings())
    if form.validate_on_submit():
        try:
            reset = staff_accounts.create_account(current_user, email=form.email.data, name=form.name.data,
                                                  role=form.role.data, building_ids=form.buildings.data or [])
        except StaffAccountError as exc:
            db.session.rollback()
            _show_error(form, exc)
        else:
            db.session.commit()
            mail_reset_link(reset)  # after the commit: a link to an account that was never saved helps nobody
            flash(_("The account is created. Its owner sets a password through the link we mailed."), "success")
            return redirect(url_for(".accounts"))
    return render_template("admin/account_form.html", form=form, user=None), 422 if form.errors else 200


@bp.route("/accounts/<int:user_id>", methods=["GET", "POST"])
@admin_required
def account(user_id: int):
    user = row_or_404(User, user_id)
    form = AccessForm(buildings=_buildings(), data={"role": user.role, "buildings": [b.id for b in user.buildings]})
    if form.validate_on_submit():
        try:
            changed = staff_accounts.update_account(current_user, user, role=form.role.data,
                                                    building_ids=form.buildings.data or [])
        except StaffAccountError as exc:
            db.session.rollback()
            _show_error(form, exc)
        else:
            db.session.commit()
            flash(_("Saved. The account's sessions have ended, so the change holds at once.") if changed
                  else _("Nothing was changed."), "success")
            return redirect(url_for(".accounts"))
    return render_template("admin/account_form.html", form=form, user=user), 422 if form.errors else 200
