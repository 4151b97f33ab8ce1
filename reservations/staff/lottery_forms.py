"""Forms of the staff lottery pages: a round's dates and caps, a room's standing rule, the steps of a round,
the application filters, and an application taken at the counter.

Every moment is typed in Tokyo time and stored in UTC. Two are days, not moments: applications are taken
until the last instant of the closing day (23:59:59 JST), and wins are paid by 23:59 of the pay-by day, to
its last instant, as rounds.windows_from_rule makes them.
"""
from datetime import UTC, date, datetime, time

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..account.forms import TOO_LONG, trim
from ..i18n import lazy_gettext as _l
from ..public.forms import INVALID_DATE, MonthField
from ..services.deadline import LAST_INSTANT_OF_THE_MINUTE
from ..services.lottery.rounds import CAP_FIELDS, LAST_INSTANT_OF_THE_DAY
from ..services.lottery.standing_rule import DAY_FIELDS
from ..timeutil import TOKYO, at_tokyo, business_date
from .setup import TIME_FORMATS, no_control_characters

# What <input type="datetime-local"> sends (with or without seconds), and what a person may type.
MOMENT_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]
INVALID_MOMENT = _l("Enter a date and a time like 2027-04-01 09:00.")
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)
TIERS = ("1", "2")  # tier 1: resident groups; tier 2: everyone else (config LOTTERY_*_TIER)
TIER_LABELS = {"1": _l("Tier 1: resident groups"), "2": _l("Tier 2: everyone else")}
CAP_LIMITS = {  # name: (lowest, highest, required)
    "max_applications": (1, 100, True),
    "max_koma_per_choice": (1, 20, True),
    "max_koma_total": (1, 1000, False),
    "max_wins": (1, 100, False),
    "max_weekday_wins": (0, 100, False),
    "max_holiday_wins": (0, 100, False),
    "pay_days_before": (0, 60, True),
}
CAP_LABELS = {
    "max_applications": _l("Ranked choices one party may file"),
    "max_koma_per_choice": _l("Divisions (koma) in one choice, at most"),
    "max_koma_total": _l("Divisions (koma) one party may win in the round"),
    "max_wins": _l("Wins one party may have"),
    "max_weekday_wins": _l("Weekday wins one party may have"),
    "max_holiday_wins": _l("Saturday, Sunday and holiday wins one party may have"),
    "pay_days_before": _l("A win is paid at the latest this many days before the day of use"),
}


class CheckboxesField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _in_range(form, field) -> None:
    value = field.data
    if value is None:
        return
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST <= day <= LATEST:
        raise ValidationError(INVALID_MOMENT if isinstance(value, datetime) else INVALID_DATE)


def _moment(label, *, required: bool = True) -> DateTimeLocalField:
    validators = [InputRequired(_l("Enter the date and the time."))] if required else [Optional()]
    return DateTimeLocalField(label, format=MOMENT_FORMATS, tz=TOKYO, invalid_value_message=INVALID_MOMENT,
                              validators=[*validators, _in_range])


def _day(label) -> DateField:
    return DateField(label, invalid_value_message=INVALID_DATE,
                     validators=[InputRequired(_l("Enter the date.")), _in_range])


def _number(label, low: int, high: int, *, required: bool = True) -> IntegerField:
    validators = [InputRequired(_l("Enter a number."))] if required else [Optional()]
    return IntegerField(label, invalid_value_message=_l("Enter a whole number, like 3."), validators=[
        *validators, NumberRange(low, high, message=_l("Enter a number from %(min)s to %(max)s."))])


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _add_caps(cls) -> None:
    for name in CAP_FIELDS:
        low, high, required = CAP_LIMITS[name]
        setattr(cls, name, _number(CAP_LABELS[name], low, high, required=required))


def cap_values(form) -> dict:
    return {name: form[name].data for name in CAP_FIELDS}


# -- a round's dates and caps -------------------------------------------------------------------------

class RoundForm(FlaskForm):
    """A round's windows and caps, as staff override them for the month (the service checks their order)."""

    tier_1_from = _moment(_l("Resident groups (tier 1) may apply from"), required=False)
    tier_2_from = _moment(_l("Everyone else (tier 2) may apply from"), required=False)
    apply_until = _day(_l("Applications close at the end of"))
    draw_at = _moment(_l("The draw at"))
    publish_at = _moment(_l("Results published at"))
    pay_by = _day(_l("Wins are paid by the end of"))
    release_at = _moment(_l("What is left opens first-come at"))
    submit = SubmitField(_l("Save"))

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if not any(self[f"tier_{t}_from"].data or self[f"tier_{t}_from"].errors for t in TIERS):
            self.tier_1_from.errors.append(_l("Say from when at least one tier may apply."))
            ok = False
        return ok

    def windows(self) -> dict:
        """The windows as rounds.create_round/update_round take them (UTC)."""
        return {
            "tier_windows": {t: _utc(self[f"tier_{t}_from"].data) for t in TIERS if self[f"tier_{t}_from"].data},
            "apply_until": at_tokyo(self.apply_until.data, time(0)) + LAST_INSTANT_OF_THE_DAY,
            "draw_at": _utc(self.draw_at.data),
            "publish_at": _utc(self.publish_at.data),
            # 23:59 of the day, to its last instant, as the rule's pay-by (rounds.windows_from_rule).
            "pay_by": at_tokyo(self.pay_by.data, time(23, 59)) + LAST_INSTANT_OF_THE_MINUTE,
            "release_at": _utc(self.release_at.data),
        }

    def values(self) -> dict:
        return self.windows() | cap_values(self)


_add_caps(RoundForm)


def round_form_data(values: dict) -> dict:
    """The form's first values from a round's dates and caps (windows_from_rule, or a round's own)."""
    tiers = values.get("tier_windows") or {}
    data = {f"tier_{t}_from": _aware(tiers.get(t)) for t in TIERS}
    data.update(apply_until=business_date(values["apply_until"]), pay_by=business_date(values["pay_by"]),
                draw_at=values["draw_at"], publish_at=values["publish_at"], release_at=values["release_at"])
    data.update({name: values.get(name) for name in CAP_FIELDS})
    return data


def _aware(value) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value) if isinstance(value, str) else value


class NewRoundForm(RoundForm):
    room = SelectField(_l("Room"), coerce=int, validate_choice=False,
                       validators=[InputRequired(_l("Choose the room the round lets."))])
    with_rooms = CheckboxesField(_l("Rooms let with it (e.g. its 控室)"), coerce=int, validate_choice=False)
    month = MonthField(_l("Month let"), validators=[InputRequired(_l("Enter the month the round lets."))])
    title = StringField(_l("Title (optional)"), filters=[trim], validators=[
        Optional(), Length(max=200, message=TOO_LONG), no_control_characters])
    submit = SubmitField(_l("Create the round (as a draft)"))

    def __init__(self, *args, rooms=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.rooms_by_id = {room.id: room for room, _label in rooms}
        self.room.choices = [SelectChoice(room.id, label) for room, label in rooms]
        self.with_rooms.choices = [SelectChoice(room.id, label) for room, label in rooms]

    def validate_room(self, field) -> None:
        if field.data not in self.rooms_by_id:
            raise ValidationError(_l("Choose a room of the list."))

    def validate_with_rooms(self, field) -> None:
        if any(room_id not in self.rooms_by_id for room_id in field.data or []):
            raise ValidationError(_l("Choose rooms of the list."))

    def validate_month(self, field) -> None:
        if field.data is not None and not EARLIEST <= field.data <= LATEST:
            raise ValidationError(_l("Enter a month as YYYY-MM, for example 2026-12."))

    def chosen_rooms(self) -> list:
        """The room first (its rule made the dates; it names the round), then those let with it."""
        first = self.rooms_by_id[self.room.data]
        return [first] + [self.rooms_by_id[i] for i in dict.fromkeys(self.with_rooms.data or []) if i != first.id]


# -- a room's standing rule -----------------------------------------------------------------------------

class RuleForm(FlaskForm):
    months_ahead = _number(_l("The round of a month is held this many months before it"), 1, 12)
    tier_1_months = _number(_l("Resident groups (tier 1) start applying this many months before the month"), 1, 12,
                            required=False)
    tier_2_months = _number(_l("Everyone else (tier 2) starts applying this many months before the month"), 1, 12,
                            required=False)
    apply_from_day = _number(_l("Applications open on day"), 1, 28)
    apply_until_day = _number(_l("Applications close at the end of day"), 1, 28)
    draw_day = _number(_l("The draw on day (09:00)"), 1, 28)
    publish_day = _number(_l("Results published on day (12:00)"), 1, 28)
    pay_by_day = _number(_l("Wins are paid by the end of day"), 1, 28)
    release_day = _number(_l("What is left opens first-come on day"), 1, 28)
    release_time = TimeField(_l("What is left opens at"), format=TIME_FORMATS,
                             validators=[InputRequired(_l("Enter a time like 09:00."))])
    submit = SubmitField(_l("Save the rule"))

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        tiers = [self[f"tier_{t}_months"] for t in TIERS]
        if not any(f.data or f.errors for f in tiers):
            self.tier_1_months.errors.append(_l("Say how early at least one tier may apply."))
            ok = False
        for f in tiers:
            if f.data and self.months_ahead.data and f.data < self.months_ahead.data and not f.errors:
                f.errors.append(_l("A tier starts applying in the round's month or earlier: at least %(months)d.",
                                   months=self.months_ahead.data))
                ok = False
        days = [self[name] for name in DAY_FIELDS]
        for earlier, later in zip(days, days[1:], strict=False):
            if earlier.data and later.data and later.data < earlier.data and not later.errors:
                later.errors.append(_l("This day cannot come before the one above it."))
                ok = False
        return ok

    def values(self) -> dict:
        values = {name: self[name].data for name in ("months_ahead", *DAY_FIELDS, "release_time", *CAP_FIELDS)}
        values["tier_months"] = {t: self[f"tier_{t}_months"].data for t in TIERS if self[f"tier_{t}_months"].data}
        return values


_add_caps(RuleForm)


def rule_form_data(values: dict) -> dict:
    data = {name: value for name, value in values.items() if name != "tier_months"}
    data.update({f"tier_{t}_months": (values.get("tier_months") or {}).get(t) for t in TIERS})
    return data


# -- the steps of a round ----------------------------------------------------------------------------

class StepForm(FlaskForm):
    """A step that cannot be undone: ticked to say so, then sent."""

    confirm = BooleanField(_l("I have checked the round: do this now. It cannot be undone."),
                           validators=[DataRequired(_l("Tick the box to confirm."))])


class PublicValueForm(StepForm):
    value = StringField(_l("Public value"), filters=[trim], validators=[
        DataRequired(_l("Enter the public value.")), Length(max=200, message=TOO_LONG), no_control_characters])
    source = StringField(_l("Where it was published"), filters=[trim], validators=[
        DataRequired(_l("Say where anyone can check the value, e.g. the draw's name and date.")),
        Length(max=300, message=TOO_LONG), no_control_characters])


class CancelWinForm(FlaskForm):
    reason = TextAreaField(_l("Reason (recorded with the win)"), filters=[trim], validators=[
        DataRequired(_l("Give the reason for cancelling the win.")),
        Length(max=500, message=TOO_LONG), no_control_characters])
    confirm = BooleanField(_l("Cancel this win: its bookings are cancelled (a paid one refunded in full)."),
                           validators=[DataRequired(_l("Tick the box to confirm."))])


# -- the applications of a round -----------------------------------------------------------------------

STATUS_CHOICES = ("live", "withdrawn", "all")
KIND_CHOICES = ("", "person", "group")


class ApplicationFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET filter: nothing changes

    status = SelectField(_l("Applications"), default="live", choices=[
        SelectChoice("live", _l("Live")), SelectChoice("withdrawn", _l("Withdrawn")), SelectChoice("all", _l("All"))],
        invalid_choice_message=_l("Choose one of the list."))
    outcome = SelectField(_l("Outcome"), default="", invalid_choice_message=_l("Choose one of the list."))
    kind = SelectField(_l("Applied as"), default="", choices=[
        SelectChoice("", _l("Anyone")), SelectChoice("person", _l("A person, as themselves")),
        SelectChoice("group", _l("A group"))], invalid_choice_message=_l("Choose one of the list."))
    room = SelectField(_l("Room"), default="", invalid_choice_message=_l("Choose one of the list."))
    day = DateField(_l("Day of use"), validators=[Optional(), _in_range], invalid_value_message=INVALID_DATE)
    q = StringField(_l("Name, reading, e-mail or pseudonym"), filters=[trim],
                    validators=[Optional(), Length(max=100, message=TOO_LONG)])

    def __init__(self, *args, outcomes=(), rooms=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.outcome.choices = [SelectChoice("", _l("Any"))] + [SelectChoice(code, label) for code, label in outcomes]
        self.room.choices = [SelectChoice("", _l("Any room"))] + [SelectChoice(str(r.id), label) for r, label in rooms]


# -- an application at the counter ---------------------------------------------------------------------

class CounterApplyForm(FlaskForm):
    """One ranked choice filed by staff for a resident: as themselves or for a group they act for; the day,
    and the divisions of each room of the bundle (divisions_<room id>, added per round)."""

    party = RadioField(_l("Applying as"), validate_choice=False,
                       validators=[InputRequired(_l("Choose whom the application is for."))])
    day = DateField(_l("Day of use"), invalid_value_message=INVALID_DATE,
                    validators=[InputRequired(_l("Enter the day of use.")), _in_range])
    rank = IntegerField(_l("Rank of this choice (optional)"), invalid_value_message=_l("Enter a whole number, like 1."),
                        validators=[Optional(),
                                    NumberRange(1, 100, message=_l("Enter a number from %(min)s to %(max)s."))])
    exemption = SelectField(_l("Exemption (減免)"), default="", validate_choice=False)
    exemption_note = StringField(_l("Note on the exemption (optional)"), filters=[trim], validators=[
        Optional(), Length(max=500, message=TOO_LONG), no_control_characters])
    submit = SubmitField(_l("File the application"))

    def validate_party(self, field) -> None:
        if field.data not in {str(c.value) for c in field.choices}:
            raise ValidationError(_l("Choose whom the application is for."))

    def validate_exemption(self, field) -> None:
        if field.data and field.data not in {str(c.value) for c in field.choices}:
            raise ValidationError(_l("Choose one of the list."))


def counter_form_class(rooms_with_labels) -> type:
    """The counter's form for a round: a set of division boxes for each of its rooms."""
    from ..public.labels import division_label

    fields = {}
    for room, label in rooms_with_labels:
        field = CheckboxesField(label, validate_choice=False,
                                choices=[SelectChoice(d.code, division_label(d.code)) for d in room.divisions])
        fields[f"divisions_{room.id}"] = field
    return type("RoundCounterApplyForm", (CounterApplyForm,), fields)



class RoundFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET filter: nothing changes

    state = SelectField(_l("State"), default="", invalid_choice_message=_l("Choose one of the list."))
    month = MonthField(_l("Month let"), validators=[Optional()])

    def __init__(self, *args, states=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.state.choices = [SelectChoice("", _l("Any state"))] + [SelectChoice(code, label) for code, label in states]


class RoundRoomsForm(FlaskForm):
    """The first step of a new round: its rooms and its month, from which the dates are filled in (a GET)."""

    class Meta:
        csrf = False

    room = SelectField(_l("Room"), coerce=int, validate_choice=False,
                       validators=[InputRequired(_l("Choose the room the round lets."))])
    with_rooms = CheckboxesField(_l("Rooms let with it (e.g. its 控室)"), coerce=int, validate_choice=False)
    month = MonthField(_l("Month let"), validators=[InputRequired(_l("Enter the month the round lets."))])

    def __init__(self, *args, rooms=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.rooms_by_id = {room.id: room for room, _label in rooms}
        self.room.choices = [SelectChoice(room.id, label) for room, label in rooms]
        self.with_rooms.choices = [SelectChoice(room.id, label) for room, label in rooms]

    validate_room = NewRoundForm.validate_room
    validate_with_rooms = NewRoundForm.validate_with_rooms
    validate_month = NewRoundForm.validate_month
    chosen_rooms = NewRoundForm.chosen_rooms
