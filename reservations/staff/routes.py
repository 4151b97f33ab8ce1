from datetime import date, timedelta

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import DateField, IntegerField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from ..backoffice import building_scope, in_scope, require_building, scoped
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..links import external_url
from ..models import AttentionCase, Booking, Building, Room
from ..public.routes import MAX_ID, href_by_id, row_or_404
from ..services import attention, audit_trail, calendars, exports, feeds
from ..timeutil import business_date, now_utc
from . import bp, staff_required


class ResolveForm(FlaskForm):
    """Resolving a case says what was done about it. One per case on the page, each with its own prefix."""

    note = TextAreaField(_l("What was done"), validators=[
        DataRequired(_l("Say what was done about the case before marking it resolved.")),
        Length(max=attention.NOTE_MAX)])


class FeedForm(FlaskForm):
    pass


def resolve_form(case_id: int, **kwargs) -> ResolveForm:
    return ResolveForm(prefix=f"case{case_id}", **kwargs)


class UserField(StringField):
    """A user by e-mail address or number; `user_id` is who it names (0 when nobody has it)."""

    user_id: int | None = None

    def pre_validate(self, form) -> None:
        text = (self.data or "").strip()
        self.user_id = None
        if not text:
            return
        if not (text.isdigit() or "@" in text):
            raise ValidationError(_("Enter an e-mail address or a user number."))
        user = audit_trail.find_user(text)
        self.user_id = user.id if user else 0


class AuditSearchForm(FlaskForm):
    class Meta:
        csrf = False  # a GET search: nothing changes

    booking = IntegerField(_l("Booking number"), validators=[
        Optional(), NumberRange(min=1, max=MAX_ID, message=_l("Enter a booking number."))])
    user = UserField(_l("User (e-mail or number)"), validators=[Optional(), Length(max=254)])
    actor = UserField(_l("Done by (e-mail or number)"), validators=[Optional(), Length(max=254)])
    first = DateField(_l("From"), validators=[Optional()])
    last = DateField(_l("To"), validators=[Optional()])

    def validate_first(self, field) -> None:
        if field.data and not exports.EARLIEST <= field.data <= exports.LATEST:
            raise ValidationError(_("Enter the days as YYYY-MM-DD, for example 2027-04-01."))

    def validate_last(self, field) -> None:
        self.validate_first(field)
        if field.data and self.first.data and field.data < self.first.data:
            raise ValidationError(_("The last day must not be before the first day."))


def _in_scope_or_404(model, row_id: int, building_of):
    """The row, if it exists and its building (`building_of(row)`) is in the user's scope; else 404 either way."""
    row = row_or_404(model, row_id)
    require_building(building_of(row))
    return row


def _asked_date(name: str, default: date) -> date:
    """The date in the query argument `name`, or `default` (saying so) when it is not a date."""
    asked = request.args.get(name, "")
    if asked:
        try:
            day = date.fromisoformat(asked)
        except ValueError:
            day = None
        if day is not None and exports.EARLIEST <= day <= exports.LATEST:
            return day
        flash(_("Enter a date like %(example)s. Showing today.", example=default.isoformat()), "error")
    return default


def _scoped_buildings() -> list[Building]:
    return list(db.session.scalars(scoped(select(Building), Building.id, current_user).order_by(Building.id)))


# -- needs attention ------------------------------------------------------------------------------

def _attention_page(forms: dict | None = None, status: int = 200):
    buildings = _scoped_buildings()
    building_id = request.args.get("building", type=int)
    if building_id is not None and not any(b.id == building_id for b in buildings):
        building_id = None  # not one of the caller's: the whole list, as if not asked
    cases = attention.open_cases(current_user, building_id)
    forms = forms or {}
    for case in cases:
        forms.setdefault(case.id, resolve_form(case.id, formdata=None))
    return render_template("staff/attention.html", groups=attention.by_building(cases), forms=forms,
                           buildings=buildings, building_id=building_id, case_label=attention.case_label,
                           refund_state_label=attention.refund_state_label,
                           settled_by_action=attention.SETTLED_BY_ACTION), status


@bp.get("/attention")
@staff_required
def attention_list():
    return _attention_page()


@bp.post("/attention/<int:case_id>/resolve")
@staff_required
def resolve(case_id: int):
    case = _in_scope_or_404(AttentionCase, case_id, attention.case_building_id)
    if case.reason in attention.SETTLED_BY_ACTION:
        flash(_("This case is closed by confirming the booking or refunding the charge, on the finance "
                "reconciliation page: a note alone cannot close it."), "error")
        return redirect(url_for(".attention_list", building=request.args.get("building", type=int))), 303
    form = resolve_form(case_id)
    if not form.validate_on_submit():
        return _attention_page({case_id: form}, 422)
    if attention.resolve(case, current_user, form.note.data):
        db.session.commit()
        flash(_("The case is marked as resolved."), "success")
    else:
        db.session.rollback()
        flash(_("This case was already resolved."), "info")
    return redirect(url_for(".attention_list", building=request.args.get("building", type=int)))


@bp.get("/attention/history")
@staff_required
def attention_history():
    page = max(1, min(request.args.get("page", 1, type=int), 10_000))
    cases, more = attention.resolved_cases(current_user, page=page)
    return render_template("staff/attention_history.html", cases=cases, page=page, more=more,
                           case_label=attention.case_label)


# -- the front page and the calendars ------------------------------------------------------------

@bp.get("/")
@staff_required
def index():
    """The back office's front page: the buildings the member of staff runs, and the cases to look at."""
    buildings = db.session.scalars(scoped(select(Building), Building.id, current_user).order_by(Building.id)
                                   .options(selectinload(Building.rooms))).all()
    return render_template("staff/index.html", buildings=buildings, today=business_date(now_utc()),
                           open_cases=attention.open_case_count(current_user))


def _cell_helpers() -> dict:
    """What every cell of the day and week views says alike (staff/_calendar_cell.html), said once a page."""
    return {"booking_href": href_by_id("staff.booking", "booking_id"),
            "entry_words": {key: str(words) for key, words in calendars.ENTRY_STATES.items()},
            "channel_words": {key: str(words) for key, words in calendars.CHANNELS.items()}}


@bp.get("/buildings/<int:building_id>/day")
@staff_required
def building_day(building_id: int):
    building = _in_scope_or_404(Building, building_id, lambda b: b.id)
    day = _asked_date("date", business_date(now_utc()))
    rooms = calendars.building_day(building, day)
    return render_template("staff/day.html", building=building, day=day, rooms=rooms,
                           prev_day=day - timedelta(days=1), next_day=day + timedelta(days=1),
                           entry_states=calendars.ENTRY_STATES, counter_args=calendars.counter_args,
                           export=exports.default_period(day), export_max_days=exports.MAX_DAYS, **_cell_helpers())


@bp.get("/rooms/<int:room_id>/week")
@staff_required
def room_week(room_id: int):
    room = _in_scope_or_404(Room, room_id, lambda r: r.building_id)
    start = _asked_date("start", business_date(now_utc()))
    days = calendars.room_week(room, start)
    return render_template("staff/week.html", room=room, start=start, days=days,
                           last=start + timedelta(days=calendars.WEEK_DAYS - 1),
                           prev_start=start - timedelta(days=calendars.WEEK_DAYS),
                           next_start=start + timedelta(days=calendars.WEEK_DAYS),
                           entry_states=calendars.ENTRY_STATES, counter_args=calendars.counter_args, **_cell_helpers())


# -- exports --------------------------------------------------------------------------------------

EXPORT_FORMATS = {
    "csv": ("text/csv; charset=utf-8", lambda rows, building: exports.to_csv(rows)),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             lambda rows, building: exports.to_xlsx(rows, building.name)),
}


@bp.get("/buildings/<int:building_id>/export")
@staff_required
def export(building_id: int):
    """The building's bookings over a range of days: the form, or with `from`, `to` and `format` the file."""
    building = _in_scope_or_404(Building, building_id, lambda b: b.id)
    first, last, fmt = request.args.get("from"), request.args.get("to"), request.args.get("format")
    error = None
    if fmt is not None or first is not None or last is not None:
        try:
            if fmt not in EXPORT_FORMATS:
                raise exports.ExportError(_("Choose CSV or Excel (XLSX)."))
            period = exports.parse_period(first, last)
        except exports.ExportError as exc:
            error = str(exc)
        else:
            mimetype, render = EXPORT_FORMATS[fmt]
            body = render(exports.rows(building, period), building)
            return Response(body, mimetype=mimetype, headers={
                "Content-Disposition": f'attachment; filename="{exports.filename(building, period, fmt)}"',
                "Cache-Control": "no-store"})
    period = exports.default_period(business_date(now_utc()))
    return render_template("staff/export.html", building=building, error=error, max_days=exports.MAX_DAYS,
                           first=first if first is not None else period.first.isoformat(),
                           last=last if last is not None else period.last.isoformat()), 422 if error else 200


# -- bookings, feeds and the audit trail ------------------------------------------------------------

@bp.get("/bookings/<int:booking_id>")
@staff_required
def booking(booking_id: int):
    booking = _in_scope_or_404(Booking, booking_id, lambda b: b.room.building_id)
    return render_template("staff/booking.html", booking=booking, trail=audit_trail.of_booking(booking),
                           entry_state=calendars.entry_state(booking, now_utc()), entry_states=calendars.ENTRY_STATES)


@bp.route("/rooms/<int:room_id>/feed", methods=["GET", "POST"])
@staff_required
def room_feed(room_id: int):
    """The room's iCal feed address; a POST makes a new one, and the old one stops working."""
    room = _in_scope_or_404(Room, room_id, lambda r: r.building_id)
    form = FeedForm()
    if request.method == "POST" and form.validate_on_submit():
        rotated = room.feed_token is not None
        feeds.rotate(room, current_user.id)
        db.session.commit()
        flash(_("A new feed address is made; the old one no longer works.") if rotated
              else _("The feed address is made."), "success")
        return redirect(url_for(".room_feed", room_id=room.id))
    url = external_url("feeds.room_feed", token=room.feed_token) if room.feed_token else None
    return render_template("staff/room_feed.html", room=room, url=url, form=form)


@bp.get("/audit")
@staff_required
def audit_search():
    """The audit trail, searched: staff see what is about their buildings, admin everything."""
    form = AuditSearchForm(request.args)
    entries, searched = [], False
    if form.validate():
        filters = audit_trail.Filters(booking_id=form.booking.data, user_id=form.user.user_id,
                                      actor_id=form.actor.user_id, first=form.first.data, last=form.last.data)
        if filters.booking_id is not None:
            booking = db.session.get(Booking, filters.booking_id)
            if booking is not None and not in_scope(current_user, booking.room.building_id):
                filters.booking_id = 0  # another building's booking: as if there were none
        entries = audit_trail.search(filters, current_user) if 0 not in (filters.user_id, filters.actor_id) else []
        searched = True
    status = 200 if not form.errors else 422
    return render_template("staff/audit.html", form=form, entries=entries, searched=searched,
                           limit=audit_trail.SEARCH_LIMIT, scoped=building_scope(current_user) is not None), status
