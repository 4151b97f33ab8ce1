"""Forms of the counter pages: a booking on someone's behalf, a block, a cancellation with a reason."""
import re
from datetime import date, time

from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TelField,
    TimeField,
)
from wtforms.validators import AnyOf, DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..account.forms import TOO_LONG, halfwidth, trim
from ..bookings.forms import DAYS_AHEAD, DAYS_BACK
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Letting, Residency, Room
from ..public.forms import today
from ..public.labels import RESIDENCIES, division_label
from ..services import rules
from ..services.blocks import block_slot
from ..services.cancellation import STAFF_REASONS
from ..services.errors import BookingError

METHOD_CHOICES = [
    SelectChoice("cash", _l("Cash, now")),
    SelectChoice("terminal", _l("Card on the counter's terminal, now")),
    SelectChoice("online", _l("Online by the payment deadline (a payment link)")),
]
CUSTOMER_CHOICES = [SelectChoice("walk_in", _l("A walk-in: name, reading and phone")),
                    SelectChoice("registered", _l("A registered resident: find them below"))]

PHONE = re.compile(r"^\+?[0-9(][0-9 ()-]{5,30}$")  # as the profile's phone number (account/forms.py)


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def slot_args(args: MultiDict) -> dict:
    """The slot a link asks for (the day view's free cells): ?date=YYYY-MM-DD&division=CODE, or &start=HH:MM&minutes=N.

    Anything that does not parse is left out (the form then asks for it).
    """
    data: dict = {}
    try:
        data["date"] = date.fromisoformat(args.get("date", ""))
    except ValueError:
        pass
    codes = [c for c in args.getlist("division") + args.getlist("divisions") if c][:20]
    if codes:
        data["divisions"] = codes
    try:
        data["start"] = time.fromisoformat(args.get("start", ""))
    except ValueError:
        pass
    minutes = args.get("minutes", "")
    if minutes.isdigit() and len(minutes) < 5:
        data["minutes"] = int(minutes)
    return data


class SlotFields(FlaskForm):
    """The slot: a date with divisions (a room let in divisions), or a date, a start and minutes (by the hour)."""

    date = DateField(_l("Date"), validators=[InputRequired(_l("Enter the date."))])
    divisions = CheckboxesField(_l("Divisions"), validate_choice=False)
    start = TimeField(_l("Start"), validators=[Optional()])
    minutes = IntegerField(_l("Minutes"), validators=[Optional(), NumberRange(min=1, max=24 * 60)])

    def __init__(self, *args, room: Room | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.room = room
        if room is not None and room.letting == Letting.DIVISION:
            self.divisions.choices = [SelectChoice(d.code, division_label(d.code)) for d in room.divisions]
        else:
            self.divisions.choices = []

    def _day(self) -> date:
        day = self.date.data
        if self.date.errors or day is None or not (
                today().toordinal() - DAYS_BACK <= day.toordinal() <= today().toordinal() + DAYS_AHEAD):
            raise BookingError("invalid_date")
        return day

    def booking_slot(self) -> rules.Slot:
        """The slot as a booking takes it (the room's divisions, or its hours and lengths)."""
        day = self._day()
        if self.room.letting == Letting.DIVISION:
            return rules.division_slot(self.room, day, list(self.divisions.data or []))
        if self.start.errors or self.minutes.errors or self.start.data is None or self.minutes.data is None:
            raise BookingError("invalid_duration")
        return rules.hourly_slot(self.room, day, self.start.data, self.minutes.data)

    def block_slot(self) -> rules.Slot:
        """The slot as a block takes it (any length within the opening hours)."""
        day = self._day()
        if self.start.errors or self.minutes.errors:
            raise BookingError("invalid_duration")
        return block_slot(self.room, day, codes=list(self.divisions.data or []), start=self.start.data,
                          minutes=self.minutes.data)


class CounterForm(SlotFields):
    customer = RadioField(_l("Who is the booking for?"), choices=CUSTOMER_CHOICES, default="walk_in",
                          validators=[InputRequired(_l("Choose who the booking is for.")),
                                      AnyOf([c.value for c in CUSTOMER_CHOICES])])
    user_id = RadioField(_l("Registered resident"), coerce=int, validate_choice=False, validators=[Optional()])
    name = StringField(_l("Name"), filters=[trim], validators=[Length(max=100, message=TOO_LONG)])
    name_kana = StringField(_l("Name in kana (reading)"), filters=[trim],
                            validators=[Length(max=100, message=TOO_LONG)])
    phone = TelField(_l("Phone number"), filters=[halfwidth], render_kw={"autocomplete": "off", "inputmode": "tel"},
                     validators=[Length(max=32, message=TOO_LONG)])
    residency = SelectField(_l("Residency class"), choices=[SelectChoice(r.value, RESIDENCIES[r]) for r in Residency],
                            default=Residency.RESIDENT.value, validate_choice=False,
                            validators=[AnyOf([r.value for r in Residency], _l("Choose one of the list."))])
    method = RadioField(_l("How is it paid?"), choices=METHOD_CHOICES,
                        validators=[InputRequired(_l("Choose how it is paid.")),
                                    AnyOf([c.value for c in METHOD_CHOICES], _l("Choose how it is paid."))])
    slip_number = StringField(_l("Terminal slip number"), filters=[halfwidth],
                              validators=[Length(max=64, message=TOO_LONG)])
    note = StringField(_l("Note for staff (optional)"), filters=[trim],
                       validators=[Length(max=500, message=TOO_LONG)])
    submit = SubmitField(_l("Book"))

    def __init__(self, *args, residents=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.user_id.choices = [SelectChoice(u.id, resident_choice_label(u)) for u in residents]

    def validate_user_id(self, field) -> None:
        if self.customer.data == "registered" and not field.data:
            raise ValidationError(_l("Choose the resident, or find them first."))

    def validate_name(self, field) -> None:
        if self.customer.data == "walk_in" and not field.data:
            raise ValidationError(_l("Enter the walk-in's name."))

    def validate_name_kana(self, field) -> None:
        if self.customer.data == "walk_in" and not field.data:
            raise ValidationError(_l("Enter the reading of the name in kana."))

    def validate_phone(self, field) -> None:
        if self.customer.data == "walk_in" and not field.data:
            raise ValidationError(_l("Enter a phone number to reach them."))
        if field.data and not PHONE.match(field.data):
            raise ValidationError(_l("Enter a phone number with digits and hyphens, like 03-1234-5678."))

    def validate_slip_number(self, field) -> None:
        if self.method.data == "terminal" and not field.data:
            raise ValidationError(BookingError("slip_required").message)


def resident_choice_label(user) -> str:
    """How a search result reads: name (reading) · address, or · phone (walk-in) for one booked at the counter."""
    kana = f"（{user.name_kana}）" if user.name_kana else ""
    if user.walk_in:
        walk_in = _("walk-in")
        return f"{user.name}{kana} · {user.phone or ''} · {walk_in}"
    phone = f" · {user.phone}" if user.phone else ""
    return f"{user.name}{kana} · {user.email}{phone}"


class BlockForm(SlotFields):
    note = StringField(_l("What is it for?"), filters=[trim],
                       validators=[DataRequired(_l("Say what the block is for.")),
                                   Length(max=200, message=TOO_LONG)])
    cancel_hits = BooleanField(_l("Cancel the bookings in the way: each is refunded in full and told"))
    submit = SubmitField(_l("Block this time"))


class StaffCancelForm(FlaskForm):
    kind = SelectField(_l("Why is it cancelled?"), choices=[SelectChoice(k, v) for k, v in STAFF_REASONS.items()],
                       validate_choice=False,
                       validators=[InputRequired(_l("Choose a reason.")),
                                   AnyOf(list(STAFF_REASONS), _l("Choose a reason."))])
    note = StringField(_l("Reason, in a few words"), filters=[trim],
                       validators=[DataRequired(_l("Say why, in a few words.")),
                                   Length(max=500, message=TOO_LONG)])
    submit = SubmitField(_l("Cancel the booking"))



class CounterPaymentForm(FlaskForm):
    """A booking waiting for its payment is paid at the counter instead: cash, or the card terminal."""

    method = RadioField(_l("How is it paid?"), choices=[c for c in METHOD_CHOICES if c.value != "online"],
                        validators=[InputRequired(_l("Choose how it is paid.")),
                                    AnyOf(["cash", "terminal"], _l("Choose how it is paid."))])
    slip_number = StringField(_l("Terminal slip number"), filters=[halfwidth],
                              validators=[Length(max=64, message=TOO_LONG)])
    submit = SubmitField(_l("Take the payment"))

    def validate_slip_number(self, field) -> None:
        if self.method.data == "terminal" and not field.data:
            raise ValidationError(BookingError("slip_required").message)
