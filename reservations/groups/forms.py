"""The group application: the group, its contact and a variable number of member rows (blank rows are ignored)."""
import re
import unicodedata

from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    FieldList,
    Form,
    FormField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TelField,
    TextAreaField,
)
from wtforms.validators import AnyOf, DataRequired, Email, Length, Optional, Regexp, ValidationError

from ..account.forms import TOO_LONG, halfwidth, trim
from ..i18n import lazy_gettext as _l
from ..models import GroupCategory, Residency
from ..public.labels import RESIDENCIES
from ..services.groups import CATEGORY_LABELS, GroupApplication, MemberInput

ROWS = 10  # member rows the empty form shows
MORE_ROWS = 10  # added by "Add more rows"
MAX_ROWS = 100  # rows read from one form (more are dropped by FieldList)
PHONE = r"^\+?[0-9(][0-9 ()-]{5,30}$"
PHONE_MESSAGE = _l("Enter a phone number with digits and hyphens, like 03-1234-5678.")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Hiragana, katakana (half-width folded by NFKC), the long vowel mark, the middle dot and spaces.
_KANA = re.compile(r"[\u3041-\u3096\u30a1-\u30fa\u30fc\u30fb\u3099-\u309c\s]+")

RESIDENCY_LABELS = {r.value: RESIDENCIES[r] for r in Residency}  # the words the other pages use


def no_control_characters(form, field) -> None:
    if isinstance(field.data, str) and _CONTROL.search(field.data):
        raise ValidationError(_l("Remove the control characters from this text."))


def is_kana(text: str) -> bool:
    return bool(_KANA.fullmatch(unicodedata.normalize("NFKC", text)))


def kana_only(form, field) -> None:
    if field.data and not is_kana(field.data):
        raise ValidationError(_l("Enter the reading in kana, like やまだ はなこ."))


def _text(label, max_length: int, required=None, *, extra=(), **kwargs) -> StringField:
    validators = [DataRequired(required)] if required else [Optional()]
    return StringField(label, filters=[trim], validators=[
        *validators, Length(max=max_length, message=TOO_LONG), no_control_characters, *extra], **kwargs)


class MemberForm(Form):
    """One member row. A row left blank (no name, kana, phone or address) is ignored; a started row needs
    the name, the reading, the phone and where the member lives, works or studies."""

    name = _text(_l("Name"), 100)
    kana = _text(_l("Reading in kana"), 100, extra=[kana_only])
    phone = TelField(_l("Phone number"), filters=[halfwidth], render_kw={"inputmode": "tel"},
                     validators=[Optional(), Length(max=32, message=TOO_LONG), Regexp(PHONE, message=PHONE_MESSAGE)])
    residency = SelectField(_l("Lives, works or studies in the ward?"), validate_choice=False, choices=[
        SelectChoice("", _l("Choose one")), *(SelectChoice(k, v) for k, v in RESIDENCY_LABELS.items())])
    email = EmailField(_l("E-mail of their account here (optional)"), filters=[halfwidth],
                       render_kw={"inputmode": "email", "spellcheck": "false"},
                       validators=[Optional(), Email(_l("Enter an email address like name@example.jp.")),
                                   Length(max=254, message=TOO_LONG)])

    def is_blank(self) -> bool:
        typed = (self.name, self.kana, self.phone, self.email)
        return not any(isinstance(f.data, str) and f.data.strip() for f in typed)

    def validate(self, extra_validators=None) -> bool:
        if self.is_blank():
            return True
        ok = super().validate(extra_validators)
        needed = ((self.name, _l("Enter the member's name.")), (self.kana, _l("Enter the reading in kana.")),
                  (self.phone, _l("Enter the member's phone number.")))
        for field, message in needed:
            if not field.data and not field.errors:
                field.errors.append(message)
                ok = False
        if self.residency.data not in RESIDENCY_LABELS:
            self.residency.errors = [_l("Choose where the member lives, works or studies.")]
            ok = False
        return ok

    def member(self) -> MemberInput:
        return MemberInput(name=self.name.data or "", kana=self.kana.data or "", phone=self.phone.data or "",
                           residency=self.residency.data or "", email=self.email.data or "")


class GroupForm(FlaskForm):
    name = _text(_l("Name of the group"), 200, _l("Enter the group's name."))
    name_kana = _text(_l("Name of the group in kana"), 200, _l("Enter the reading of the group's name in kana."),
                      extra=[kana_only])
    category = SelectField(_l("Kind of group"), validate_choice=False, choices=[
        SelectChoice(k.value, v) for k, v in CATEGORY_LABELS.items()],
        validators=[AnyOf([c.value for c in GroupCategory], _l("Choose the kind of group."))])
    activity_kind = _text(_l("Activity"), 100, _l("Say what the group does, for example choir or table tennis."))
    purpose = TextAreaField(_l("Purpose of the group"), filters=[trim], validators=[
        DataRequired(_l("Say what the group is for.")), Length(max=2000, message=TOO_LONG), no_control_characters])
    contact_name = _text(_l("Contact person"), 100, _l("Enter the contact person's name."))
    contact_email = EmailField(_l("Contact e-mail address"), filters=[halfwidth],
                               render_kw={"autocomplete": "email", "inputmode": "email", "spellcheck": "false"},
                               validators=[DataRequired(_l("Enter the contact e-mail address.")),
                                           Email(_l("Enter an email address like name@example.jp.")),
                                           Length(max=254, message=TOO_LONG)])
    contact_phone = TelField(_l("Contact phone number"), filters=[halfwidth],
                             render_kw={"autocomplete": "tel", "inputmode": "tel"},
                             validators=[DataRequired(_l("Enter the contact phone number.")),
                                         Length(max=32, message=TOO_LONG), Regexp(PHONE, message=PHONE_MESSAGE)])
    members = FieldList(FormField(MemberForm), min_entries=ROWS, max_entries=MAX_ROWS)
    submit = SubmitField(_l("Apply for registration"))
    more_rows = SubmitField(_l("Add more member rows"))

    def has_errors(self) -> bool:
        """Any message to show (FieldList's errors are a list of each row's, empty rows included: not a test)."""
        return bool(self.form_errors) or any(f.errors for f in self if f.name != "members") or any(
            f.errors for entry in self.members for f in entry.form)

    def filled_members(self) -> list[MemberForm]:
        return [entry.form for entry in self.members if not entry.form.is_blank()]

    def add_rows(self, count: int = MORE_ROWS) -> None:
        for _ in range(min(count, MAX_ROWS - len(self.members))):
            self.members.append_entry()

    def pad_rows(self) -> None:
        """Shown again: the rows typed, and blank rows up to ROWS (at least three)."""
        self.add_rows(max(ROWS - len(self.members), 3 - (len(self.members) - len(self.filled_members())), 0))

    def application(self) -> GroupApplication:
        return GroupApplication(
            name=self.name.data, name_kana=self.name_kana.data, contact_name=self.contact_name.data,
            contact_email=self.contact_email.data, contact_phone=self.contact_phone.data,
            category=self.category.data, purpose=self.purpose.data, activity_kind=self.activity_kind.data,
            members=[m.member() for m in self.filled_members()])


class RenewForm(FlaskForm):
    submit = SubmitField(_l("Ask to renew"))
