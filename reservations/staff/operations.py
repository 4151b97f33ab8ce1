"""After-booking operations: moves, used / no-show marking, no-show suspensions.

The rules are in services/moves.py, services/attendance.py and services/no_shows.py; these views
read the forms, call them, and commit (or roll back and say why).
"""
from dataclasses import dataclass
from datetime import date, timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from wtforms import IntegerField, RadioField, SelectChoice, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..backoffice import building_scope, in_scope, scoped
from ..bookings.forms import DAYS_AHEAD, DAYS_BACK, SlotForm
from ..extensions import db
from ..filters import tokyo_datetime, yen
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Booking, BookingKind, BookingState, Building, Room, Suspension
from ..public.forms import today
from ..public.routes import row_or_404
from ..services import attendance, moves, no_shows
from ..services.errors import BookingError
from ..timeutil import business_date, now_utc
from . import bp, staff_required
from .routes import _in_scope_or_404

# What the operations' refusals say (the codes of services/moves, attendance and no_shows that
# services/errors.py does not word); anything else is said as BookingError says it.
MESSAGES = {
    "not_movable": _l("Only a confirmed booking that has not started yet can be moved."),
    "same_slot": _l("That is the booking's own slot. Choose another time or room."),
    "method_required": _l("Choose how the amount due is paid."),
    "deadline_too_close": _l(
        "The day of use is too close to pay online by a deadline. Take the payment at the counter instead."),
    "payment_in_progress": _l(
        "A card payment for this booking is still being processed. Try again in a few minutes."),
    "no_room": _l("Choose a room of your buildings."),
    "not_attendable": _l("Only a confirmed booking can be marked used or no-show."),
    "not_started": _l("A booking can be marked used or no-show once it has started."),
    "reason_required": _l("Enter why the suspension is lifted."),
    "not_suspended": _l("This suspension is no longer in force."),
}

METHODS = [SelectChoice("cash", _l("Cash at the counter")),
           SelectChoice("terminal", _l("Card on the counter's terminal")),
           SelectChoice("online", _l("Online by card, by the payment deadline"))]


def message(error: BookingError) -> str:
    return str(MESSAGES[error.code]) if error.code in MESSAGES else error.message


class ActionForm(FlaskForm):
    """A button: nothing but the CSRF token."""


class PickForm(FlaskForm):
    """Which room and day the move page shows (a GET form)."""

    room_id = IntegerField(_l("Room"), validators=[Optional()])
    date = StringField(_l("Date"), validators=[Optional()])


class MoveForm(SlotForm):
    """The new slot (date with divisions, or date, start and minutes), its room, and how to pay what is due."""

    room_id = IntegerField(validators=[InputRequired()])
    method = RadioField(_l("How the amount due is paid"), choices=METHODS, validate_choice=False)
    slip_number = StringField(_l("Terminal slip number"),
                              validators=[Optional(), Length(max=64, message=_l("Enter at most 64 characters."))])


class LiftForm(FlaskForm):
    reason = TextAreaField(_l("Why it is lifted"), validators=[
        DataRequired(MESSAGES["reason_required"]), Length(max=500, message=_l("Enter at most 500 characters."))])


@dataclass(frozen=True)
class Operations:
    """What the booking page offers (templates/staff/_operations_actions.html)."""

    can_move: bool
    can_mark: bool
    not_started: bool
    suspension: Suspension | None


def booking_operations(booking: Booking) -> Operations:
    now = now_utc()
    confirmed = booking.kind == BookingKind.BOOKING and booking.state == BookingState.CONFIRMED
    return Operations(can_move=confirmed and now < booking.start_at, can_mark=confirmed and now >= booking.start_at,
                      not_started=confirmed and now < booking.start_at,
                      suspension=None if booking.is_block else no_shows.suspension_in_force(booking.user, now))


@bp.context_processor
def _operations() -> dict:
    return {"booking_operations": booking_operations}


@bp.record_once
def _register_globals(state) -> None:
    # The resident's notice (templates/bookings/_suspension_notice.html) lists the no-shows behind it.
    state.app.jinja_env.globals["no_show_bookings"] = no_shows.no_show_bookings


def _booking_in_scope(booking_id: int) -> Booking:
    return _in_scope_or_404(Booking, booking_id, lambda b: b.room.building_id)


# -- moving a booking -----------------------------------------------------------------------------

def _rooms_in_scope() -> list[Room]:
    return list(db.session.scalars(
        scoped(select(Room).join(Building, Room.building_id == Building.id), Room.building_id, current_user)
        .where(Room.active.is_(True)).order_by(Building.id, Room.id).options(joinedload(Room.building))))


def _paid(booking: Booking) -> int | None:
    """What paid for the booking (with what earlier moves carried over to it); None while a card payment is open."""
    try:
        return sum(amount for _, amount in moves.paid_sources(booking, lock=False))
    except BookingError:
        return None


def _render_move(booking: Booking, rooms: list[Room], room: Room | None, day: date | None, form: MoveForm,
                 error: str | None = None, status: int = 200):
    now = now_utc()
    if day is not None and not today() - timedelta(days=DAYS_BACK) <= day <= today() + timedelta(days=DAYS_AHEAD):
        day = None  # not a day anyone can book (and far enough out to overflow the clock arithmetic)
    return render_template(
        "staff/move.html", booking=booking, rooms=rooms, room=room, day=day, form=form, error=error,
        units=moves.day_units(booking, room, day, now=now) if room and day else [],
        durations=moves.durations(room) if room else [],
        paid=_paid(booking),
        movable=booking_operations(booking).can_move, now=now), status


def _summary(result: moves.Move) -> str:
    parts = [_("The booking is moved: the new booking is number %(number)s.", number=result.new.id)]
    if result.carried_over:
        parts.append(_("%(amount)s already paid is carried over.", amount=yen(result.carried_over)))
    if result.due and result.method == "online":
        parts.append(_("%(amount)s is to be paid online by %(deadline)s.", amount=yen(result.due),
                       deadline=tokyo_datetime(result.new.hold_expires_at)))
    elif result.due:
        parts.append(_("%(amount)s was taken at the counter.", amount=yen(result.due)))
    if result.refunded:
        parts.append(_("%(amount)s is refunded.", amount=yen(result.refunded)))
    return " ".join(parts)


@bp.route("/bookings/<int:booking_id>/move", methods=["GET", "POST"])
@staff_required
def move(booking_id: int):
    booking = _booking_in_scope(booking_id)
    rooms = _rooms_in_scope()
    by_id = {r.id: r for r in rooms}
    if request.method == "POST":
        form = MoveForm()
        room = by_id.get(form.room_id.data)
        day = form.date.data
        try:
            if room is None:
                raise BookingError("no_room")
            slot = form.build_slot(room)  # (the app-wide CSRFProtect has checked the token already)
            if form.slip_number.errors:
                return _render_move(booking, rooms, room, day, form, form.slip_number.errors[0], 422)
            method = form.method.data if form.method.data in moves.MOVE_METHODS else None
            result = moves.move_booking(booking, room, slot, staff=current_user._get_current_object(),
                                        method=method, slip_number=form.slip_number.data)
        except BookingError as exc:
            db.session.rollback()
            return _render_move(booking, rooms, room, day, form, message(exc), 422)
        db.session.commit()
        flash(_summary(result), "success")
        return redirect(url_for(".booking", booking_id=result.new.id))
    pick = PickForm(request.args, meta={"csrf": False})
    room = by_id.get(pick.room_id.data) if pick.room_id.data else by_id.get(booking.room_id)
    error, day = None, business_date(booking.start_at)
    if pick.date.data:
        try:
            asked = date.fromisoformat(pick.date.data)
        except ValueError:
            asked = None
        if asked is None or not today() - timedelta(days=DAYS_BACK) <= asked <= today() + timedelta(days=DAYS_AHEAD):
            error = _("Enter a date like %(example)s.", example=day.isoformat())
        else:
            day = asked
    if pick.room_id.data and room is None:
        error = str(MESSAGES["no_room"])
    return _render_move(booking, rooms, room, day, MoveForm(formdata=None, room_id=room.id if room else None),
                        error, 200)


# -- used / no-show ---------------------------------------------------------------------------------

def _mark(booking_id: int, action, done: str):
    booking = _booking_in_scope(booking_id)
    if ActionForm().validate_on_submit():
        try:
            suspension = action(booking, current_user._get_current_object())
        except BookingError as exc:
            db.session.rollback()
            flash(message(exc), "error")
        else:
            db.session.commit()
            flash(done, "success")
            if suspension is not None:
                flash(_("This was the resident's no-show number %(count)s: their online booking is suspended "
                        "until %(until)s.", count=len(no_shows.booking_ids(suspension)),
                        until=tokyo_datetime(suspension.ends_at)), "success")
    return redirect(url_for(".booking", booking_id=booking.id))


@bp.post("/bookings/<int:booking_id>/used")
@staff_required
def mark_used(booking_id: int):
    return _mark(booking_id, attendance.mark_used, _("Marked as used."))


@bp.post("/bookings/<int:booking_id>/no-show")
@staff_required
def mark_no_show(booking_id: int):
    return _mark(booking_id, attendance.mark_no_show, _("Marked as a no-show."))


# -- suspensions ------------------------------------------------------------------------------------

def _suspension_in_scope(suspension_id: int) -> Suspension:
    """The suspension, if the user runs a building of its no-shows (admin: any); else 404 either way."""
    suspension = row_or_404(Suspension, suspension_id)
    scope = building_scope(current_user)
    if scope is not None and not (no_shows.suspension_buildings(suspension) & scope):
        abort(404)
    return suspension


def _render_suspensions(failed: LiftForm | None = None, failed_id: int | None = None, status: int = 200):
    rows = no_shows.suspensions_in_force(current_user, now_utc())
    forms = {s.id: failed if s.id == failed_id and failed is not None else LiftForm(prefix=f"lift-{s.id}")
             for s, _ in rows}
    return render_template("staff/suspensions.html", rows=rows, forms=forms,
                           in_scope=lambda b: in_scope(current_user, b.room.building_id)), status


@bp.get("/suspensions")
@staff_required
def suspensions():
    return _render_suspensions()


@bp.post("/suspensions/<int:suspension_id>/lift")
@staff_required
def lift_suspension(suspension_id: int):
    suspension = _suspension_in_scope(suspension_id)
    form = LiftForm(prefix=f"lift-{suspension.id}")
    if form.validate_on_submit():
        try:
            no_shows.lift(suspension, current_user._get_current_object(), form.reason.data)
        except BookingError as exc:  # lifted or ended meanwhile: it is no longer on the list
            db.session.rollback()
            flash(message(exc), "error")
            return redirect(url_for(".suspensions"))
        else:
            db.session.commit()
            flash(_("The suspension of %(name)s is lifted: they can book online again.",
                    name=suspension.user.name), "success")
            return redirect(url_for(".suspensions"))
    return _render_suspensions(form, suspension.id, 422)
