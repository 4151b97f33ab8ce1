from datetime import date, timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..backoffice import require_building, scoped
from ..extensions import db
from ..links import external_url
from ..models import AttentionCase, Booking, Building, Room
from ..public.routes import row_or_404
from ..services import attention, audit_trail, calendars, feeds
from ..timeutil import business_date, now_utc
from . import bp, staff_required


class ResolveForm(FlaskForm):
    pass


def _in_scope_or_404(model, row_id: int, building_of):
    """The row, if it exists and its building (`building_of(row)`) is in the user's scope; else 404 either way."""
    row = row_or_404(model, row_id)
    require_building(building_of(row))
    return row


@bp.get("/attention")
@staff_required
def attention_list():
    return render_template("staff/attention.html", cases=attention.open_cases(current_user), form=ResolveForm(),
                           case_label=attention.case_label, refund_state_label=attention.refund_state_label)


@bp.post("/attention/<int:case_id>/resolve")
@staff_required
def resolve(case_id: int):
    form = ResolveForm()
    case = _in_scope_or_404(AttentionCase, case_id, attention.case_building_id)
    if form.validate_on_submit():
        attention.resolve(case, current_user)
        db.session.commit()
        flash(_("The case is marked as resolved."), "success")
    return redirect(url_for(".attention_list"))


@bp.get("/")
@staff_required
def index():
    """The back office's front page: the buildings the member of staff runs, and the cases to look at."""
    buildings = db.session.scalars(scoped(select(Building), Building.id, current_user).order_by(Building.id)
                                   .options(selectinload(Building.rooms))).all()
    return render_template("staff/index.html", buildings=buildings, today=business_date(now_utc()),
                           open_cases=attention.open_case_count(current_user))


@bp.get("/buildings/<int:building_id>/day")
@staff_required
def building_day(building_id: int):
    building = _in_scope_or_404(Building, building_id, lambda b: b.id)
    today = business_date(now_utc())
    day = today
    asked = request.args.get("date", "")
    if asked:
        try:
            day = date.fromisoformat(asked)
        except ValueError:
            flash(_("Enter a date like %(example)s. Showing today.", example=today.isoformat()), "error")
    rooms = calendars.building_day(building, day)
    return render_template("staff/day.html", building=building, day=day, rooms=rooms,
                           prev_day=day - timedelta(days=1), next_day=day + timedelta(days=1),
                           entry_states=calendars.ENTRY_STATES)


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
    form = ResolveForm()
    if request.method == "POST" and form.validate_on_submit():
        rotated = room.feed_token is not None
        feeds.rotate(room, current_user.id)
        db.session.commit()
        flash(_("A new feed address is made; the old one no longer works.") if rotated
              else _("The feed address is made."), "success")
        return redirect(url_for(".room_feed", room_id=room.id))
    url = external_url("feeds.room_feed", token=room.feed_token) if room.feed_token else None
    return render_template("staff/room_feed.html", room=room, url=url, form=form)
