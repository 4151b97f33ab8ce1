from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import force_locale, get_locale
from flask_login import current_user, login_required, login_user, logout_user

from .. import limits
from ..db_mode import writes
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..links import external_url
from ..mail import send_mail
from ..models import User
from ..services.accounts import (
    MIN_PASSWORD_LENGTH,
    AccountError,
    PasswordReset,
    SignUp,
    authenticate,
    change_password,
    check_reset_token,
    email_verification_token,
    log_out_everywhere,
    request_password_reset,
    reset_password,
    sign_up,
    update_profile,
    verify_email,
)
from ..views import safe_next
from . import bp
from .forms import (
    LoginForm,
    PasswordChangeForm,
    ProfileForm,
    ResetPasswordForm,
    ResetRequestForm,
    SignupForm,
    VerificationMailForm,
)


def _render(template: str, form, **context):
    """The form page; 422 when it is shown again with errors."""
    return render_template(template, form=form, **context), 422 if form.errors else 200


def _show_error(form, exc: AccountError) -> None:
    field = getattr(form, exc.field, None) if exc.field else None
    (field.errors if field is not None else form.form_errors).append(exc.message)


@bp.route("/signup", methods=["GET", "POST"])
@limits.signup
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("public.index"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            outcome = sign_up(name=form.name.data, email=form.email.data, password=form.password.data,
                              residency=form.residency.data, phone=form.phone.data, locale=str(get_locale()))
        except AccountError as exc:
            db.session.rollback()
            _show_error(form, exc)
        else:
            db.session.commit()
            _mail_signup(outcome)
            # The same answer whether the address was new or taken, and no log-in: logging the new
            # account in would set a session cookie that a taken address does not get, telling
            # anyone who tries an address whether it is registered. The mail carries the next step.
            return redirect(url_for("account.signup_sent"))
    return _render("account/signup.html", form, min_password_length=MIN_PASSWORD_LENGTH)


@bp.get("/signup/sent")
def signup_sent():
    return render_template("account/signup_sent.html")


@bp.get("/verify/<token>")
@writes  # marks the address confirmed and commits: a write on SQLite (db_mode)
def verify(token: str):
    """The link mailed at sign-up. Following it again, or when signed in as someone else, changes nothing more."""
    try:
        user = verify_email(token)
    except AccountError as exc:
        db.session.rollback()
        return render_template("account/verify_invalid.html", message=exc.message), 400
    db.session.commit()
    flash(_("Your email address is confirmed. You can now book."), "success")
    if current_user.is_authenticated and current_user.id == user.id:
        return redirect(url_for("public.index"))
    # The link proves the mailbox, not the password: it verifies, it does not log in.
    return redirect(url_for("account.login"))


@bp.route("/verify", methods=["GET", "POST"])
@login_required
@limits.verification_mail
def verification_mail():
    """Where an unverified user asks for the confirmation link again."""
    user = current_user._get_current_object()
    form = VerificationMailForm()
    if form.validate_on_submit():
        if user.email_verified:
            flash(_("Your email address is already confirmed."), "success")
            return redirect(url_for("account.profile"))
        _mail_verification_link(user, email_verification_token(user))
        flash(_("We have sent a new confirmation link to %(email)s.", email=user.email), "success")
        return redirect(url_for("account.verification_mail"))
    return render_template("account/verify.html", form=form)


@bp.route("/login", methods=["GET", "POST"])
@limits.login
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
            if not user.email_verified:
                flash(_("Please confirm your email address before you book: open the link we mailed you, "
                        "or ask for a new one."), "info")
            return redirect(safe_next(form.next.data))
    return _render("account/login.html", form)


@bp.post("/logout")
def logout():
    # POST only and CSRF-checked, so another site cannot log people out with a link or an <img>.
    if current_user.is_authenticated:
        log_out_everywhere(current_user._get_current_object())
        db.session.commit()
    logout_user()
    flash(_("You have logged out."), "success")
    return redirect(url_for("public.index"))


@bp.route("/reset", methods=["GET", "POST"])
@limits.reset
def reset_request():
    form = ResetRequestForm()
    if form.validate_on_submit():
        reset = request_password_reset(form.email.data)
        db.session.commit()
        mail_reset_link(reset)
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
            logout_user()  # every session of that user ended with the reset, this browser's too
            flash(_("Your password has been changed. Please log in with it."), "success")
            return redirect(url_for("account.login"))
    return _render("account/reset_password.html", form, min_password_length=MIN_PASSWORD_LENGTH)


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    user = current_user._get_current_object()
    form = ProfileForm(obj=user)
    password_form = PasswordChangeForm(formdata=None)
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
    return _render_profile(form, password_form)


@bp.post("/password")
@login_required
def password():
    user = current_user._get_current_object()
    form = PasswordChangeForm()
    if form.validate_on_submit():
        try:
            change_password(user, current_password=form.current_password.data, new_password=form.password.data)
        except AccountError as exc:
            db.session.rollback()
            _show_error(form, exc)
        else:
            db.session.commit()
            login_user(user)  # this browser stays in, under the new session version; all others are out
            flash(_("Your password has been changed. You have been logged out everywhere else."), "success")
            return redirect(url_for("account.profile"))
    return _render_profile(ProfileForm(obj=user), form)


def _render_profile(form, password_form):
    page = render_template("account/profile.html", form=form, password_form=password_form,
                           min_password_length=MIN_PASSWORD_LENGTH)
    return page, 422 if form.errors or password_form.errors else 200


def _mail_in_users_locale(user: User | None, to: str, template: str, subject, *, send: bool = True,
                          **context) -> None:
    """Render a mail in its reader's language and send it (after the commit), logging a failure.

    A failure never reaches the page: it would answer registered addresses differently from
    unknown ones. With send=False the mail is rendered and dropped, for an address nobody has.
    """
    with force_locale((user.locale if user else None) or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = str(subject)  # a lazy string, translated here
        body = render_template(template, user=user, **context)
    if not send:
        return
    try:
        send_mail(to, subject, body)
    except Exception:
        current_app.logger.exception("Could not send %s to user %s", template, user.id if user else None)


def _mail_verification_link(user: User, token: str) -> None:
    _mail_in_users_locale(user, user.email, "account/email/verify_email.txt", _l("Confirm your email address"),
                          link=external_url("account.verify", token=token),
                          days=max(1, current_app.config["EMAIL_VERIFY_MAX_AGE"] // 86400))


def _mail_signup(outcome: SignUp) -> None:
    if outcome.created:
        _mail_verification_link(outcome.user, outcome.verify_token)
        return
    # The address has an account already: tell its owner, who may just have forgotten.
    verify_link = None if outcome.user.email_verified else external_url("account.verify", token=outcome.verify_token)
    _mail_in_users_locale(outcome.user, outcome.user.email, "account/email/signup_existing.txt",
                          _l("Someone tried to sign up with your email address"),
                          login_link=external_url("account.login"), reset_link=external_url("account.reset_request"),
                          verify_link=verify_link,
                          days=max(1, current_app.config["EMAIL_VERIFY_MAX_AGE"] // 86400))


def mail_reset_link(reset: PasswordReset) -> None:
    # Rendered for an unknown address too, so that both answers take the same work; sent only to a real one.
    _mail_in_users_locale(reset.user, reset.user.email if reset.user else "", "account/email/reset_password.txt",
                          _l("Set a new password"), send=reset.user is not None,
                          link=external_url("account.reset_password", token=reset.token),
                          minutes=max(1, current_app.config["PASSWORD_RESET_MAX_AGE"] // 60))
