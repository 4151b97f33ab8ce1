"""Forms of the booking flow: the slot asked for, the reserve button, the card token, the cancel button."""
from datetime import timedelta

from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SelectField, SelectMultipleField, StringField, TextAreaField, TimeField
from wtforms.validators import InputRequired, Length, NumberRange, Optional, Regexp

from ..account.forms import TOO_LONG, trim
from ..i18n import lazy_gettext as _l
from ..models import Letting, Room
from ..public.forms import today
from ..services import rules
from ..services.errors import BookingError

# Dates further away than this are not a slot anyone can book; refusing them
# early also keeps the datetime arithmetic far from its limits.
DAYS_BACK, DAYS_AHEAD = 366, 3 * 366
EXEMPTION_NOTE_MAX = 1000


class SlotForm(FlaskForm):
    """A slot of a room: a date with divisions, or a date with a start time and a duration.

    The review page reads it from the query string (pass meta={"csrf": False});
    the reserve form posts the same fields.
    """

    date = DateField(validators=[InputRequired()])
    divisions = SelectMultipleField(validate_choice=False)
    start = TimeField(validators=[Optional()])
    minutes = IntegerField(validators=[Optional(), NumberRange(min=1, max=24 * 60)])

    def build_slot(self, room: Room) -> rules.Slot:
        """The slot asked for, or BookingError saying why it is not one."""
        if not room.bookable_online:
            # Before the rules: a room let by the hour may have no opening hours to build a slot with.
            raise BookingError("not_bookable")
        self.validate()
        if self.date.errors or self.date.data is None:
            raise BookingError("invalid_date")
        day = self.date.data
        if not today() - timedelta(days=DAYS_BACK) <= day <= today() + timedelta(days=DAYS_AHEAD):
            raise BookingError("invalid_date")
        if room.letting == Letting.DIVISION:
            return rules.division_slot(room, day, self.divisions.data or [])
        if self.start.errors:
            raise BookingError("outside_hours")
        if self.start.data is None or self.minutes.errors or self.minutes.data is None:
            raise BookingError("invalid_duration")
        return rules.hourly_slot(room, day, self.start.data, self.minutes.data)

    def query_args(self) -> dict:
        """The slot as query-string arguments, to send the resident back to it."""
        args: dict = {"date": self.date.raw_data[0] if self.date.raw_data else None}
        if self.divisions.data:
            args["divisions"] = list(self.divisions.data)
        for name in ("start", "minutes"):
            field = self[name]
            if field.raw_data and field.raw_data[0]:
                args[name] = field.raw_data[0]
        return args


class ReviewForm(SlotForm):
    """The slot, and who books it: the resident themselves ("") or one of their groups (its id), with an
    exemption kind (its id, or "" for none) and a note for staff. The review page reads it from the query
    string; the reserve form posts it. The choices are set by the view (the groups the resident may act for,
    the kinds that party may use); what was sent is judged by the booking service, not refused here."""

    book_as = SelectField(_l("Book as"), validate_choice=False, validators=[Optional()])
    exemption = SelectField(_l("Exemption"), validate_choice=False, validators=[Optional()])
    exemption_note = TextAreaField(_l("Note for the facility (optional)"), filters=[trim], validators=[
        Optional(), Length(max=EXEMPTION_NOTE_MAX, message=TOO_LONG)])

    def chosen_id(self, name: str) -> int | None:
        """The id sent for `name`, or None when nothing (or nothing like an id) was sent."""
        value = (self[name].data or "").strip()
        return int(value) if value.isdigit() and len(value) < 12 else None

    def party_args(self) -> dict:
        """The choices as query-string arguments, to show the review page again as it was."""
        return {name: self[name].data for name in ("book_as", "exemption") if self[name].data}


class ReserveForm(ReviewForm):
    """The "Reserve" button: the slot and the party again, and the price the resident was shown."""

    expected_price = IntegerField(validators=[InputRequired(), NumberRange(min=0)])
    # A POST form: Flask-WTF adds and checks csrf_token.


class CancelForm(FlaskForm):
    """The cancel button: nothing but the CSRF token."""


class PayForm(FlaskForm):
    """The card, as a token Stripe.js made in the browser; posted as JSON by pay.js.

    Build it with meta={"csrf": False}: the app-wide CSRFProtect has already
    checked the X-CSRFToken header before the view runs.
    """

    token = StringField(validators=[InputRequired(), Length(max=255), Regexp(r"^tok_[A-Za-z0-9_]+$")])
