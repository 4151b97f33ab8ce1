"""Forms of the public pages. They are GET forms: no CSRF, data from the query string."""
import re
from datetime import date, timedelta

from flask_babel import get_locale
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, Field, IntegerField, SelectChoice, SelectField, SelectMultipleField
from wtforms.validators import NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget, MonthInput

from ..i18n import lazy_gettext as _l
from ..timeutil import business_date, now_utc, shift_months
from .labels import EQUIPMENT, KINDS

MONTH = re.compile(r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})")
INVALID_DATE = _l("Enter a real date as YYYY-MM-DD, for example 2026-12-03.")


def today() -> date:
    return business_date(now_utc())


class DaysFromToday:
    """The date must lie from `before` days ago up to `after` days ahead (Tokyo business dates)."""

    def __init__(self, before: int, after: int, message):
        self.before, self.after, self.message = before, after, message

    def __call__(self, form, field) -> None:
        if field.data is None:
            return
        now = today()
        if not now - timedelta(days=self.before) <= field.data <= now + timedelta(days=self.after):
            raise ValidationError(self.message)


class MonthField(Field):
    """A month as YYYY-MM; the data is the first day of that month."""

    widget = MonthInput()

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return self.data.strftime("%Y-%m") if self.data else ""

    def process_formdata(self, valuelist) -> None:
        if not valuelist or not valuelist[0]:
            return
        # Four ASCII digits, a dash, two digits: int() alone would take "２０２６", "2_026" or a
        # twenty-digit year, which date() then refuses with OverflowError (a 500), not ValueError.
        match = MONTH.fullmatch(valuelist[0])
        try:
            if match is None:
                raise ValueError(valuelist[0])
            self.data = date(int(match["year"]), int(match["month"]), 1)
        except ValueError as exc:
            self.data = None
            raise ValueError(_l("Enter a month as YYYY-MM, for example 2026-12.")) from exc


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SearchForm(FlaskForm):
    class Meta:
        csrf = False  # a search is a GET: nothing to protect, and the URL can be shared

    date = DateField(
        _l("Date"),
        validators=[Optional(), DaysFromToday(0, 366, _l("Choose a date from today up to one year ahead."))],
        invalid_value_message=INVALID_DATE,
    )
    kind = SelectField(
        _l("Kind of room"),
        choices=[SelectChoice("", _l("Any kind"))] + [SelectChoice(str(code), label) for code, label in KINDS.items()],
        default="",
        invalid_choice_message=_l("Choose a kind of room from the list."),
    )
    capacity = IntegerField(
        _l("Number of people"),
        validators=[
            Optional(),
            NumberRange(min=1, max=10000, message=_l("Enter a number of people from 1 to 10000.")),
        ],
        invalid_value_message=_l("Enter the number of people as a whole number, for example 20."),
    )
    building = SelectField(_l("Building"), default="", invalid_choice_message=_l("Choose a building from the list."))
    equipment = MultiCheckboxField(
        _l("Equipment and uses"),
        choices=[SelectChoice(code, label) for code, label in EQUIPMENT.items()],
        invalid_choice_message=_l("Choose equipment from the list."),
    )
    free_only = BooleanField(_l("Only rooms with a free slot on that date"))
    online_only = BooleanField(_l("Only rooms that can be booked online"))

    def validate_free_only(self, field) -> None:
        if field.data and not self.date.data and not self.date.errors:
            raise ValidationError(_l("Choose a date to see only rooms with a free slot."))

    def __init__(self, *args, buildings=(), **kwargs):
        """`buildings`: (building, its name as the page shows it). On an English page a building the
        catalog names only in Japanese is marked lang="ja", as catalog names in the page's body are."""
        super().__init__(*args, **kwargs)
        english = str(get_locale()) == "en"
        self.building.choices = [SelectChoice("", _l("Any building"))] + [
            SelectChoice(str(b.id), name, render_kw={"lang": "ja"} if english and name == b.name else None)
            for b, name in buildings
        ]


class RoomPageForm(FlaskForm):
    """Which month the calendar shows and which day is open below it."""

    class Meta:
        csrf = False

    month = MonthField(_l("Month"))
    date = DateField(_l("Date"), validators=[Optional()], invalid_value_message=INVALID_DATE)

    def validate_month(self, field) -> None:
        if field.data is None:
            return
        this_month = today().replace(day=1)
        if not shift_months(this_month, -12) <= field.data <= shift_months(this_month, 24):
            raise ValidationError(_l("Choose a month from a year ago up to two years ahead."))

    def validate_date(self, field) -> None:
        DaysFromToday(366, 731, _l("Choose a date from a year ago up to two years ahead."))(self, field)
