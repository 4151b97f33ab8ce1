from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from ..extensions import db
from ..mail import send_mail
from ..services.accounts import (
    MIN_PASSWORD_LENGTH,
    AccountError,
    PasswordReset,
    authenticate,
    check_reset_token,
    request_password_reset,
    reset_password,
    sign_up,
    update_profile,
)
from ..views import safe_next
from . import bp
from .forms import LoginForm, ProfileForm, ResetPasswordForm, ResetRequestForm, SignupForm


def _render(template: str, form, **context):
    """The form page; 422 when it is shown again with errors."""
    return render_template(template, form=form, **context), 422 if form.errors else 200


def _show_error(form, exc: AccountError) -> None:
    field = getattr(form, exc.field, None) if exc.field else None
    (field.errors if field is not None else form.form_errors).append(exc.message)


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("public.index"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = sign_up(name=form.name.data, email=form.email.data, password=form.password.data,
                           residency=form.residency.data, phone=form.phone.data, locale=str(get_locale()))
        except AccountError as exc:
            db.session.rollback()
            _show_error(form, exc)
        else:
            db.session.commit()
            login_user(user)
            flash(_("Welcome! Your account is ready."), "success")
            return redirect(url_for("public.index"))
    return _render("account/signup.html", form, min_password_length=MIN_PASSWORD_LENGTH)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm(next=request.args.get("next", ""))
    if current_user.is_authenticated:
        return redirect(safe_next(form.next.data))
    if form.validate_on_submit():
        try:
            user = authenticate(form.email.data, form.password.data)
        except AccountError as exc:
            form.form_errors.append(exc.message)
        else:
            login_user(user)
            return redirect(safe_next(form.next.data))
    return _render("account/login.html", form)


@bp.post("/logout")
def logout():
    # POST only and CSRF-checked, so another site cannot log people out with a link or an <img>.
    logout_user()
    flash(_("You have logged out."), "success")
    return redirect(url_for("public.index"))


@bp.route("/reset", methods=["GET", "POST"])
def reset_request():
    form = ResetRequestForm()
    if form.validate_on_submit():
        reset = request_password_reset(form.email.data)
        db.session.commit()
        if reset is not None:
            _mail_reset_link(reset)
        # The same answer whether or not the address is registered.
        flash(_("If that address is registered, we have sent it a link to set a new password."), "success")
        return redirect(url_for("account.reset_request"))
    return _render("account/reset_request.html", form)


@bp.route("/reset/<token>", methods=["GET", "POST"], endpoint="reset_password")
def set_new_password(token: str):
    try:
        check_reset_token(token)
    except AccountError as exc:
        return render_template("account/reset_invalid.html", message=exc.message), 400
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            reset_password(token, form.password.data)
        except AccountError as exc:
            db.session.rollback()
            _show_error(form, exc)
        else:
            db.session.commit()
            logout_user()
            flash(_("Your password has been changed. Please log in with it."), "success")
            return redirect(url_for("account.login"))
    return _render("account/reset_password.html", form, min_password_length=MIN_PASSWORD_LENGTH)


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    user = current_user._get_current_object()
    form = ProfileForm(obj=user)
    if request.method == "GET" and user.locale is None:
        form.locale.data = str(get_locale())
    if form.validate_on_submit():
        try:
            update_profile(user, name=form.name.data, phone=form.phone.data,
                           residency=form.residency.data, locale=form.locale.data)
        except AccountError as exc:
            db.session.rollback()
            _show_error(form, exc)
        else:
            db.session.commit()
            session["lang"] = user.locale
            flash(_("Your profile has been saved."), "success")
            return redirect(url_for("account.profile"))
    return _render("account/profile.html", form)


def _mail_reset_link(reset: PasswordReset) -> None:
    link = url_for("account.reset_password", token=reset.token, _external=True)
    with force_locale(reset.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("Set a new password")
        body = render_template("account/email/reset_password.txt", user=reset.user, link=link,
                               minutes=max(1, current_app.config["PASSWORD_RESET_MAX_AGE"] // 60))
    try:
        send_mail(reset.user.email, subject, body)
    except Exception:
        # Failing here would answer registered addresses differently from unknown ones.
        current_app.logger.exception("Could not send the password reset mail to user %s", reset.user.id)
