"""Facility setup pages: buildings, rooms, how time is let, divisions, closures, booking rules and payment,
refund policy. The rules are services/setup.py; these views read forms, call it and commit.

Staff set up the buildings they run (404 for any other, as everywhere in the back office); admin set up
everything and are the only ones who add a building, on /admin/buildings/new (an admin-only page lives
under /admin/, the authorisation matrix's rule).
"""
import re

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_date
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    SubmitField,
    TimeField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from ..account.forms import TOO_LONG, halfwidth, trim
from ..admin import bp as admin_bp
from ..backoffice import admin_required
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Building, Closure, ClosureKind, Division, Letting, PaymentMode, RefundUnit, Room, RoomKind
from ..public.labels import kind_label, ordinal, weekday_name
from ..services import refund_policy
from ..services import setup as rules
from ..services.errors import BookingError
from ..timeutil import now_utc
from . import bp, staff_required
from .routes import _in_scope_or_404

MAX_FEE = 10_000_000  # yen: far above any ward fee, far below the database's integer
TIME_FORMATS = ["%H:%M", "%H:%M:%S"]  # what <input type="time"> sends, with or without seconds
TIER_ROWS = 6
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _choices(pairs) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


def no_control_characters(form, field) -> None:
    if isinstance(field.data, str) and _CONTROL.search(field.data):
        raise ValidationError(_l("Remove the control characters from this text."))


def _text(label, max_length: int, required=None, **kwargs) -> StringField:
    validators = [DataRequired(required)] if required else [Optional()]
    return StringField(label, filters=[trim], validators=[*validators, Length(max=max_length, message=TOO_LONG),
                                                          no_control_characters], **kwargs)


def _number(label, low: int, high: int, *, required: bool = True, message=None) -> IntegerField:
    validators = [InputRequired(_l("Enter a number."))] if required else [Optional()]
    return IntegerField(label, invalid_value_message=_l("Enter a whole number, like 60."), validators=[
        *validators, NumberRange(low, high, message=message or _l("Enter a number from %(min)s to %(max)s."))])


def _fee(label, *, required: bool = True) -> IntegerField:
    return _number(label, 0, MAX_FEE, required=required,
                   message=_l("Enter the fee in yen, from 0 to %(max)s, without commas."))


def _time(label, *, required: bool = True) -> TimeField:
    return TimeField(label, format=TIME_FORMATS,
                     validators=[InputRequired(_l("Enter a time like 09:00."))] if required else [Optional()])


# -- forms ------------------------------------------------------------------------------------------

class BuildingForm(FlaskForm):
    name = _text(_l("Name of the building"), 200, _l("Enter the building's name."))
    name_kana = _text(_l("Name in kana"), 200)
    name_en = _text(_l("English name"), 200)
    address = _text(_l("Address"), 300)
    submit = SubmitField(_l("Save"))


class RoomForm(FlaskForm):
    name = _text(_l("Name of the room"), 200, _l("Enter the room's name."))
    name_kana = _text(_l("Name in kana"), 200)
    name_en = _text(_l("English name"), 200)
    kind = SelectField(_l("Kind of room"), validators=[InputRequired(_l("Choose the kind of room."))])
    capacity = _number(_l("Capacity (people)"), 1, 100_000, required=False)
    active = BooleanField(_l("In use (offered for booking)"))
    submit = SubmitField(_l("Save"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind.choices = _choices((k.value, kind_label(k)) for k in RoomKind)


class LettingForm(FlaskForm):
    letting = RadioField(_l("How time is let"), validators=[InputRequired(_l("Choose how the room's time is let."))],
                         choices=_choices([(Letting.DIVISION.value, _l("In fixed divisions (morning, afternoon, ...)")),
                                           (Letting.HOURLY.value, _l("By the hour"))]))
    open_time = _time(_l("Opens at"), required=False)
    close_time = _time(_l("Closes at"), required=False)
    step_minutes = _number(_l("Start times every (minutes)"), 5, 720, required=False)
    min_minutes = _number(_l("Shortest booking (minutes)"), 5, 1440, required=False)
    max_minutes = _number(_l("Longest booking (minutes)"), 5, 1440, required=False)
    hourly_unit_minutes = _number(_l("The rate is per (minutes)"), 1, 1440, required=False)
    weekday_hourly_fee = _fee(_l("Rate on weekdays (yen)"), required=False)
    holiday_hourly_fee = _fee(_l("Rate on Saturdays, Sundays and holidays (yen)"), required=False)
    submit = SubmitField(_l("Save"))


class DivisionForm(FlaskForm):
    # Typed with a Japanese IME (ｍｏｒｎｉｎｇ) or in lower case, it is still MORNING.
    code = StringField(_l("Code"), filters=[lambda v: halfwidth(v).upper() if isinstance(v, str) else v], validators=[
        DataRequired(_l("Enter a code, like MORNING.")), Length(max=32, message=TOO_LONG)])
    start_time = _time(_l("Starts at"))
    end_time = _time(_l("Ends at"))
    weekday_fee = _fee(_l("Fee on weekdays (yen)"))
    holiday_fee = _fee(_l("Fee on Saturdays, Sundays and holidays (yen)"))
    submit = SubmitField(_l("Save the division"))

    def validate_code(self, field) -> None:
        if field.data and not re.fullmatch(r"[A-Z0-9_]+", field.data):
            raise ValidationError(_l("Use capital letters, digits and _ only, like MORNING or EVENING_2."))


class ClosureForm(FlaskForm):
    kind = RadioField(_l("Kind of closure"), validators=[InputRequired(_l("Choose the kind of closure."))],
                      choices=_choices([(ClosureKind.WEEKLY.value, _l("Every week, on a day of the week")),
                                        (ClosureKind.MONTHLY.value, _l("Every month, on the nth day of the week")),
                                        (ClosureKind.PERIOD.value, _l("One period, from a date to a date"))]))
    weekday = SelectField(_l("Day of the week"), validators=[Optional()])
    nth = SelectField(_l("Week of the month"), validators=[Optional()])
    start_date = DateField(_l("First day"), validators=[Optional()])
    end_date = DateField(_l("Last day"), validators=[Optional()])
    reason = _text(_l("Reason (shown to residents)"), 200, _l("Enter the reason, like 定休日 or 設備点検."))
    submit = SubmitField(_l("Save the closure"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weekday.choices = _choices([("", _("Choose…"))] + [(str(d), weekday_name(d)) for d in range(7)])
        self.nth.choices = _choices([("", _("Choose…"))] + [(str(n), ordinal(n)) for n in range(1, 6)])

    def values(self) -> dict:
        return {"kind": self.kind.data, "reason": self.reason.data or "",
                "weekday": int(self.weekday.data) if self.weekday.data else None,
                "nth": int(self.nth.data) if self.nth.data else None,
                "start_date": self.start_date.data, "end_date": self.end_date.data}


class RulesForm(FlaskForm):
    nonresident_multiplier_pct = _number(_l("Fee for non-residents (percent of the fee)"), 100, 1000,
                                         message=_l("Enter a percentage from %(min)s to %(max)s (150 = 1.5 times)."))
    window_months = _number(_l("Booking opens this many months ahead"), 0, 24)
    window_open_day = _number(_l("Booking opens on this day of the month"), 1, 28)
    window_open_time = _time(_l("Booking opens at this time"))
    close_hours_before = _number(_l("Online booking closes this many hours before the start"), 0, 8760)
    max_active_per_user = _number(_l("Active bookings one user may have in this room"), 1, 100, required=False)
    hold_minutes = _number(_l("Minutes a booking is held for its payment"), 1, 120, required=False)
    payment_mode = RadioField(
        _l("When bookings are paid"), validators=[InputRequired(_l("Choose when bookings are paid."))],
        choices=_choices([(PaymentMode.NOW.value, _l("At once, when booking (held for the minutes above)")),
                          (PaymentMode.DEADLINE.value, _l("By a deadline before the day of use"))]))
    deadline_days_before = _number(_l("Deadline: days before the day of use"), 0, 365)
    deadline_time = _time(_l("Deadline: time of day"))
    reminder_days_before = _number(_l("First reminder: days before the deadline"), 0, 60)
    submit = SubmitField(_l("Save"))


class RefundTiersForm(FlaskForm):
    policy = RadioField(_l("Refund policy of this room"), validators=[InputRequired(_l("Choose a policy."))],
                        choices=_choices([("kind", _l("Use the default of the room's kind")),
                                 ("own", _l("Use this room's own tiers (below)"))]))
    submit = SubmitField(_l("Save the refund policy"))

    def rows(self):
        return [(n, self[f"tier_{n}_count"], self[f"tier_{n}_unit"], self[f"tier_{n}_percent"])
                for n in range(1, TIER_ROWS + 1)]

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if self.policy.data != "own":
            return ok
        for _n, count, _unit, percent in self.rows():
            if count.data is not None and percent.data is None and not percent.errors:
                percent.errors.append(_("Enter the percentage refunded, or empty the row."))
                ok = False
            if percent.data is not None and count.data is None and not count.errors:
                count.errors.append(_("Enter how many days or months before, or empty the row."))
                ok = False
        return ok

    def tiers(self) -> list[rules.TierInput] | None:
        if self.policy.data != "own":
            return None
        return [rules.TierInput(unit.data, count.data, percent.data)
                for _n, count, unit, percent in self.rows() if count.data is not None]


for _n in range(1, TIER_ROWS + 1):
    setattr(RefundTiersForm, f"tier_{_n}_count", _number(_l("Tier %(n)d: how long before", n=_n), 0, 366,
                                                          required=False))
    setattr(RefundTiersForm, f"tier_{_n}_unit", SelectField(_l("Tier %(n)d: days or months", n=_n), choices=_choices([
        (RefundUnit.DAYS.value, _l("days before the day of use")),
        (RefundUnit.MONTHS.value, _l("months before the day of use"))]), default=RefundUnit.DAYS.value))
    setattr(RefundTiersForm, f"tier_{_n}_percent", _number(_l("Tier %(n)d: refund (%%)", n=_n), 0, 100,
                                                            required=False))


class RemoveForm(FlaskForm):
    item = HiddenField(validators=[InputRequired()])

    def item_id(self) -> int | None:
        value = self.item.data or ""
        return int(value) if value.isdigit() and len(value) < 12 else None


# -- helpers ----------------------------------------------------------------------------------------

def _room(room_id: int) -> Room:
    return _in_scope_or_404(Room, room_id, lambda r: r.building_id)


def _values(form, names) -> dict:
    return {name: "" if form[name].data is None and isinstance(form[name], StringField) else form[name].data
            for name in names}


def _page(template: str, form, **context):
    """The form's page: 422 when it comes back from a POST (errors, or bookings to decide on), else 200."""
    return render_template(template, form=form, **context), 422 if request.method == "POST" else 200


def _refused(form, exc: rules.SetupError) -> None:
    db.session.rollback()
    if exc.field and exc.field in form:
        form[exc.field].errors.append(exc.message)
    else:
        form.form_errors.append(exc.message)


def _saved(changed: bool, message: str) -> None:
    flash(message if changed else _("Nothing changed."), "success" if changed else "info")


# -- decisions on the bookings a closure or new opening hours would hit --------------------------------

DECISION_FIELD = re.compile(r"decision_(\d{1,11})")


def _decisions() -> dict[int, str]:
    """What the form decided for each hit booking, by booking id (only valid choices)."""
    out = {}
    for key, value in request.form.items():
        if (match := DECISION_FIELD.fullmatch(key)) and value in rules.DECISIONS:
            out[int(match.group(1))] = value
    return out


def _with_decisions(form_cls, hits):
    """The form, with a required choice for each hit booking (decision_<booking id>)."""
    fields = {}
    for booking in hits:
        if booking.is_block:
            label = _("Block %(number)s", number=booking.id)
            choices = _choices([(rules.CANCEL, _("Cancel the block")),
                                (rules.KEEP, _("Keep the block as an exception (a case on the attention list)"))])
        else:
            label = _("Booking %(number)s", number=booking.id)
            choices = _choices([(rules.CANCEL, _("Cancel it: refund it in full and send the user a notice")),
                                (rules.KEEP, _("Keep it as an exception (a case on the attention list)"))])
        fields[f"decision_{booking.id}"] = RadioField(
            label, choices=choices, validators=[InputRequired(_("Choose what happens to this booking."))])
    return type(form_cls.__name__, (form_cls,), fields)


def _ask_for_decisions(form_cls, hits):
    """The form again, listing the hit bookings; their choices show errors once they were asked for."""
    form = _with_decisions(form_cls, hits)()
    if "decisions_shown" in request.form:
        form.validate()
    return form


def _booking_refused(form, exc: BookingError) -> None:
    db.session.rollback()
    form.form_errors.append(_("Booking %(number)s could not be cancelled: %(why)s Nothing was saved.",
                              number=exc.details.get("booking_id", "?"), why=exc.message))


def _done_message(saved: str, done: dict | None) -> str:
    if not done or not (done["cancelled"] or done["kept"]):
        return saved
    return " ".join([saved, _("Bookings cancelled: %(cancelled)d. Kept as exceptions: %(kept)d.",
                              cancelled=len(done["cancelled"]), kept=len(done["kept"]))])


def hm(value) -> str:
    return value.strftime("%H:%M") if value else "—"


ROOM_STATUS = {
    "inactive": _l("Not in use: not offered for booking"),
    "no divisions": _l("Not bookable online yet: it has no divisions"),
    "no fees": _l("Not bookable online yet: fees are missing"),
    "no opening hours": _l("Not bookable online yet: opening hours are missing"),
}


def room_status(room: Room) -> str:
    """Whether the room is offered online, and if not what its setup still lacks."""
    reason = room.unbookable_reason()
    if reason is None:
        return _("Bookable online")
    if reason.startswith("catalog flaw"):
        return _("Not bookable online: the catalog import found a flaw (%(issue)s)", issue=room.import_issue)
    return str(ROOM_STATUS.get(reason, reason))


@bp.context_processor
def _setup_helpers() -> dict:
    return {"room_status": room_status, "hm": hm, "closure_words": closure_words}


# -- buildings --------------------------------------------------------------------------------------

@admin_bp.route("/buildings/new", methods=["GET", "POST"])
@admin_required
def building_new():
    form = BuildingForm()
    if form.validate_on_submit():
        building = rules.create_building(current_user, _values(form, rules.BUILDING_FIELDS))
        db.session.commit()
        flash(_("The building is added. Add its rooms next."), "success")
        return redirect(url_for("staff.building_setup", building_id=building.id))
    return _page("staff/setup/building.html", form, building=None)


@bp.route("/buildings/<int:building_id>/setup", methods=["GET", "POST"])
@staff_required
def building_setup(building_id: int):
    building = _in_scope_or_404(Building, building_id, lambda b: b.id)
    form = BuildingForm(obj=building if request.method == "GET" else None)
    if form.validate_on_submit():
        changed = rules.update_building(building, current_user, _values(form, rules.BUILDING_FIELDS))
        db.session.commit()
        _saved(changed, _("The building is saved."))
        return redirect(url_for(".building_setup", building_id=building.id))
    return _page("staff/setup/building.html", form, building=building)


# -- rooms ------------------------------------------------------------------------------------------

@bp.route("/buildings/<int:building_id>/rooms/new", methods=["GET", "POST"])
@staff_required
def room_new(building_id: int):
    building = _in_scope_or_404(Building, building_id, lambda b: b.id)
    form = RoomForm(data={"active": True, "kind": RoomKind.OTHER.value} if request.method == "GET" else None)
    if form.validate_on_submit():
        room = rules.create_room(building, current_user, _values(form, rules.ROOM_FIELDS))
        db.session.commit()
        flash(_("The room is added. Set how its time is let and its fees before it can be booked."), "success")
        return redirect(url_for(".room_setup", room_id=room.id))
    return _page("staff/setup/room_new.html", form, building=building)


@bp.route("/rooms/<int:room_id>/setup", methods=["GET", "POST"])
@staff_required
def room_setup(room_id: int):
    room = _room(room_id)
    form = RoomForm(obj=room if request.method == "GET" else None)
    if form.validate_on_submit():
        changed = rules.update_room(room, current_user, _values(form, rules.ROOM_FIELDS))
        db.session.commit()
        _saved(changed, _("The room is saved."))
        return redirect(url_for(".room_setup", room_id=room.id))
    return _page("staff/setup/room.html", form, room=room, section="details")


@bp.route("/rooms/<int:room_id>/letting", methods=["GET", "POST"])
@staff_required
def room_letting(room_id: int):
    room = _room(room_id)
    form = LettingForm(obj=room if request.method == "GET" else None)
    hits = None
    if form.validate_on_submit():
        try:
            done = rules.set_letting(room, current_user, form.letting.data, _values(form, rules.HOURLY_FIELDS),
                                     _decisions(), now_utc())
        except rules.DecisionsNeeded as need:
            db.session.rollback()
            hits = need.hits
            form = _ask_for_decisions(LettingForm, hits)
        except rules.SetupError as exc:
            _refused(form, exc)
        except BookingError as exc:
            _booking_refused(form, exc)
        else:
            db.session.commit()
            flash(_done_message(_("How the room's time is let is saved."), done) if done else _("Nothing changed."),
                  "success" if done is not None else "info")
            return redirect(url_for(".room_letting", room_id=room.id))
    return _page("staff/setup/letting.html", form, room=room, section="letting", hits=hits)


# -- divisions --------------------------------------------------------------------------------------

@bp.route("/rooms/<int:room_id>/divisions", methods=["GET", "POST"])
@staff_required
def room_divisions(room_id: int):
    room = _room(room_id)
    form = DivisionForm()
    if form.validate_on_submit():
        try:
            rules.add_division(room, current_user, _values(form, rules.DIVISION_FIELDS))
        except rules.SetupError as exc:
            _refused(form, exc)
        else:
            db.session.commit()
            flash(_("The division is added."), "success")
            return redirect(url_for(".room_divisions", room_id=room.id))
    return _page("staff/setup/divisions.html", form, room=room, section="divisions", remove=RemoveForm(formdata=None))


@bp.route("/divisions/<int:division_id>", methods=["GET", "POST"])
@staff_required
def division_edit(division_id: int):
    division = _in_scope_or_404(Division, division_id, lambda d: d.room.building_id)
    room = division.room
    form = DivisionForm(obj=division if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            changed = rules.update_division(division, current_user, _values(form, rules.DIVISION_FIELDS), now_utc())
        except rules.SetupError as exc:
            _refused(form, exc)
        else:
            db.session.commit()
            _saved(changed, _("The division is saved. Bookings already made keep their price."))
            return redirect(url_for(".room_divisions", room_id=room.id))
    return _page("staff/setup/division.html", form, room=room, division=division, section="divisions")


@bp.post("/rooms/<int:room_id>/divisions/remove")
@staff_required
def division_remove(room_id: int):
    room = _room(room_id)
    form = RemoveForm()
    if form.validate_on_submit():
        try:
            division = rules.remove_division(room, form.item_id(), current_user, now_utc())
        except rules.SetupError as exc:
            db.session.rollback()
            flash(exc.message, "error")
        else:
            db.session.commit()
            flash(_("The division %(code)s is removed.", code=division.code), "success")
    else:
        flash(_("Choose the division to remove."), "error")
    return redirect(url_for(".room_divisions", room_id=room.id))


# -- closures ---------------------------------------------------------------------------------------

@bp.route("/rooms/<int:room_id>/closures", methods=["GET", "POST"])
@staff_required
def room_closures(room_id: int):
    room = _room(room_id)
    form = ClosureForm()
    hits = None
    if form.validate_on_submit():
        try:
            _closure, done = rules.add_closure(room, current_user, form.values(), _decisions(), now_utc())
        except rules.DecisionsNeeded as need:
            db.session.rollback()
            hits = need.hits
            form = _ask_for_decisions(ClosureForm, hits)
        except rules.SetupError as exc:
            _refused(form, exc)
        except BookingError as exc:
            _booking_refused(form, exc)
        else:
            db.session.commit()
            flash(_done_message(_("The closure is saved."), done), "success")
            return redirect(url_for(".room_closures", room_id=room.id))
    return _page("staff/setup/closures.html", form, room=room, section="closures", hits=hits,
                 remove=RemoveForm(formdata=None))


@bp.post("/rooms/<int:room_id>/closures/remove")
@staff_required
def closure_remove(room_id: int):
    room = _room(room_id)
    form = RemoveForm()
    if form.validate_on_submit():
        try:
            rules.remove_closure(room, form.item_id(), current_user)
        except rules.SetupError as exc:
            db.session.rollback()
            flash(exc.message, "error")
        else:
            db.session.commit()
            flash(_("The closure is removed: the room is open on those days again."), "success")
    else:
        flash(_("Choose the closure to remove."), "error")
    return redirect(url_for(".room_closures", room_id=room.id))


def closure_words(closure: Closure) -> str:
    if closure.kind == ClosureKind.WEEKLY:
        return _("Every %(weekday)s", weekday=weekday_name(closure.weekday))
    if closure.kind == ClosureKind.MONTHLY:
        return _("The %(nth)s %(weekday)s of every month", nth=ordinal(closure.nth),
                 weekday=weekday_name(closure.weekday))
    return _("%(first)s to %(last)s", first=format_date(closure.start_date, "medium"),
             last=format_date(closure.end_date, "medium"))


# -- booking rules, payment, refunds ------------------------------------------------------------------

@bp.route("/rooms/<int:room_id>/rules", methods=["GET", "POST"])
@staff_required
def room_rules(room_id: int):
    room = _room(room_id)
    form = RulesForm(obj=room if request.method == "GET" else None)
    if form.validate_on_submit():
        changed = rules.update_rules(room, current_user, _values(form, rules.RULE_FIELDS))
        db.session.commit()
        _saved(changed, _("The booking rules are saved. Bookings already made keep their price and payment terms."))
        return redirect(url_for(".room_rules", room_id=room.id))
    return _page("staff/setup/rules.html", form, room=room, section="rules",
                 ward_cap=current_app.config["MAX_ACTIVE_BOOKINGS"], ward_hold=current_app.config["HOLD_MINUTES"])


@bp.route("/rooms/<int:room_id>/refunds", methods=["GET", "POST"])
@staff_required
def room_refunds(room_id: int):
    room = _room(room_id)
    kind_tiers = refund_policy.kind_tiers(room.kind)
    if request.method == "GET":
        shown = refund_policy.tiers_for(room)
        data = {"policy": "own" if room.refund_tiers else "kind"}
        for n, tier in enumerate(shown[:TIER_ROWS], start=1):
            data.update({f"tier_{n}_count": tier.count, f"tier_{n}_unit": tier.unit, f"tier_{n}_percent": tier.percent})
        form = RefundTiersForm(data=data)
    else:
        form = RefundTiersForm()
    if form.validate_on_submit():
        try:
            changed = rules.replace_refund_tiers(room, current_user, form.tiers())
        except rules.SetupError as exc:
            _refused(form, exc)
        else:
            db.session.commit()
            _saved(changed, _("The refund policy is saved. It applies to cancellations from now on."))
            return redirect(url_for(".room_refunds", room_id=room.id))
    return _page("staff/setup/refunds.html", form, room=room, section="refunds", kind_tiers=kind_tiers)
