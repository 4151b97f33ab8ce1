from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, SelectMultipleField, StringField, SubmitField
from wtforms.validators import DataRequired, Email, Length
from wtforms.widgets import CheckboxInput, ListWidget

from ..account.forms import TOO_LONG, halfwidth, trim
from ..i18n import lazy_gettext as _l
from ..models import Role
from ..services.staff_accounts import BACK_OFFICE_ROLES, ROLE_LABELS


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class AccessForm(FlaskForm):
    role = SelectField(_l("Role"))
    buildings = CheckboxesField(_l("Buildings they run"), coerce=int)
    submit = SubmitField(_l("Save"))

    def __init__(self, *args, buildings=(), roles=tuple(ROLE_LABELS), **kwargs):
        super().__init__(*args, **kwargs)
        self.role.choices = [(r, str(ROLE_LABELS[r])) for r in roles]
        self.buildings.choices = [(b.id, name) for b, name in buildings]


class NewAccountForm(AccessForm):
    name = StringField(_l("Name"), filters=[trim],
                       validators=[DataRequired(_l("Enter the name.")), Length(max=100, message=TOO_LONG)])
    email = EmailField(_l("Email address"), filters=[halfwidth], validators=[
        DataRequired(_l("Enter the email address.")), Email(_l("Enter an email address like name@example.jp.")),
        Length(max=254, message=TOO_LONG)])
    submit = SubmitField(_l("Create the account and mail the link"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, roles=BACK_OFFICE_ROLES, **kwargs)
        if not self.role.data:
            self.role.data = Role.STAFF
