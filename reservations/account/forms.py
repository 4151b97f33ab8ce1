import unicodedata

from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    HiddenField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TelField,
)
from wtforms.validators import AnyOf, DataRequired, Email, EqualTo, Length, Optional, Regexp

from ..i18n import lazy_gettext as _l
from ..models import Residency
from ..services.accounts import MIN_PASSWORD_LENGTH

RESIDENCY_CHOICES = [
    SelectChoice(Residency.RESIDENT.value, _l("I live in the ward")),
    SelectChoice(Residency.WORKER.value, _l("I work in the ward")),
    SelectChoice(Residency.STUDENT.value, _l("I study in the ward")),
    SelectChoice(Residency.OUTSIDE.value, _l("None of these (outside the ward)")),
]
# WTForms fills in %(max)d.
TOO_LONG = _l("Use at most %(max)d characters.")
# Each language is named in itself, so that anyone can find their own.
LOCALE_CHOICES = [SelectChoice("ja", "日本語", render_kw={"lang": "ja"}),
                  SelectChoice("en", "English", render_kw={"lang": "en"})]


def halfwidth(value: str | None) -> str | None:
    """Fold full-width letters, digits and symbols typed with a Japanese IME (ｙａｍａｄａ＠…, ０９０) and trim."""
    return unicodedata.normalize("NFKC", value).strip() if isinstance(value, str) else value


def trim(value: str | None) -> str | None:
    # Names keep their full-width kana; only surrounding spaces (the full-width one too) go.
    return value.strip() if isinstance(value, str) else value


def _name():
    return StringField(_l("Name"), filters=[trim], render_kw={"autocomplete": "name"},
                       validators=[DataRequired(_l("Enter your name.")), Length(max=100, message=TOO_LONG)])


def _email():
    return EmailField(_l("Email address"), filters=[halfwidth],
                      render_kw={"autocomplete": "email", "inputmode": "email", "spellcheck": "false"},
                      validators=[DataRequired(_l("Enter your email address.")),
                                  Email(_l("Enter an email address like name@example.jp.")),
                                  Length(max=254, message=TOO_LONG)])


def _new_password(label):
    return PasswordField(label, render_kw={"autocomplete": "new-password", "minlength": MIN_PASSWORD_LENGTH},
                         validators=[DataRequired(_l("Enter a password.")),
                                     Length(min=MIN_PASSWORD_LENGTH,
                                            message=_l("Use at least %(min)d characters for your password.",
                                                       min=MIN_PASSWORD_LENGTH))])


def _confirm():
    return PasswordField(_l("Password again"), render_kw={"autocomplete": "new-password"},
                         validators=[DataRequired(_l("Enter the password again.")),
                                     EqualTo("password", _l("The two passwords are not the same."))])


def _phone():
    return TelField(_l("Phone number (optional)"), filters=[halfwidth],
                    render_kw={"autocomplete": "tel", "inputmode": "tel"},
                    validators=[Optional(), Length(max=32, message=TOO_LONG),
                                Regexp(r"^\+?[0-9(][0-9 ()-]{5,30}$",
                                       message=_l("Enter a phone number with digits and hyphens, "
                                                  "like 03-1234-5678."))])


def _residency(*, placeholder: bool):
    # Our own message for a value outside the list, rather than WTForms' generic one.
    message = _l("Choose where you live, work or study.")
    choices = [SelectChoice("", _l("Choose one")), *RESIDENCY_CHOICES] if placeholder else RESIDENCY_CHOICES
    return SelectField(_l("Where do you live, work or study?"), choices=choices, validate_choice=False,
                       validators=[DataRequired(message), AnyOf([r.value for r in Residency], message)])


class SignupForm(FlaskForm):
    name = _name()
    email = _email()
    password = _new_password(_l("Password"))
    confirm = _confirm()
    residency = _residency(placeholder=True)
    phone = _phone()
    submit = SubmitField(_l("Create account"))


class LoginForm(FlaskForm):
    email = EmailField(_l("Email address"), filters=[halfwidth],
                       render_kw={"autocomplete": "username", "inputmode": "email", "spellcheck": "false"},
                       validators=[DataRequired(_l("Enter your email address."))])
    password = PasswordField(_l("Password"), render_kw={"autocomplete": "current-password"},
                             validators=[DataRequired(_l("Enter your password."))])
    next = HiddenField()
    submit = SubmitField(_l("Log in"))


class ResetRequestForm(FlaskForm):
    email = _email()
    submit = SubmitField(_l("Send me a link"))


class ResetPasswordForm(FlaskForm):
    password = _new_password(_l("New password"))
    confirm = _confirm()
    submit = SubmitField(_l("Set new password"))


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField(_l("Current password"), render_kw={"autocomplete": "current-password"},
                                     validators=[DataRequired(_l("Enter your current password."))])
    password = _new_password(_l("New password"))
    confirm = _confirm()
    # Named apart from the profile form's button: both forms share the profile page.
    change_password = SubmitField(_l("Change password"))


class VerificationMailForm(FlaskForm):
    submit = SubmitField(_l("Send the link again"))


class ProfileForm(FlaskForm):
    name = _name()
    phone = _phone()
    residency = _residency(placeholder=False)
    locale = SelectField(_l("Preferred language"), choices=LOCALE_CHOICES, validate_choice=False,
                         validators=[AnyOf([c.value for c in LOCALE_CHOICES], _l("Choose a language we offer."))])
    submit = SubmitField(_l("Save"))
