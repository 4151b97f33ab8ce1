from datetime import date, timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from ..backoffice import require_building, scoped
from ..extensions import db
from ..links import external_url
from ..models import AttentionCase, Booking, Building, Room
from ..public.routes import MAX_ID
from ..services import attention, audit_trail, calendars, feeds
from ..timeutil import business_date, now_utc
from . import bp, staff_required


class ResolveForm(FlaskForm):
    pass


@bp.get("/attention")
@staff_required
def attention_list():
    return render_template("staff/attention.html", cases=attention.open_cases(current_user), form=ResolveForm(),
                           case_label=attention.case_label, refund_state_label=attention.refund_state_label)


@bp.post("/attention/<int:case_id>/resolve")
@staff_required
def resolve(case_id: int):
    form = ResolveForm()
    if not 0 < case_id <= MAX_ID:
        abort(404)  # PostgreSQL's integer ids stop there; a larger one would be a 500, not "not found"
    case = db.get_or_404(AttentionCase, case_id)
    require_building(attention.case_building_id(case))
    if form.validate_on_submit():
        attention.resolve(case, current_user)
        db.session.commit()
        flash(_("The case is marked as resolved."), "success")
    return redirect(url_for(".attention_list"))


def _building_or_404(building_id: int) -> Building:
    building = db.session.get(Building, building_id) if 0 < building_id <= MAX_ID else None
    if building is None:
        abort(404)
    require_building(building.id)
    return building


@bp.get("/")
@staff_required
def index():
    """The back office's front page: the buildings the member of staff runs, and the cases to look at."""
    buildings = db.session.scalars(scoped(select(Building), Building.id, current_user).order_by(Building.id)).all()
    return render_template("staff/index.html", buildings=buildings, today=business_date(now_utc()),
                           open_cases=len(attention.open_cases(current_user)))


@bp.get("/buildings/<int:building_id>/day")
@staff_required
def building_day(building_id: int):
    building = _building_or_404(building_id)
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
    booking = db.session.get(Booking, booking_id) if 0 < booking_id <= MAX_ID else None
    if booking is None:
        abort(404)
    require_building(booking.room.building_id)
    return render_template("staff/booking.html", booking=booking, trail=audit_trail.of_booking(booking),
                           entry_state=calendars.entry_state(booking, now_utc()), entry_states=calendars.ENTRY_STATES)


def _room_or_404(room_id: int) -> Room:
    room = db.session.get(Room, room_id) if 0 < room_id <= MAX_ID else None
    if room is None:
        abort(404)
    require_building(room.building_id)
    return room


@bp.route("/rooms/<int:room_id>/feed", methods=["GET", "POST"])
@staff_required
def room_feed(room_id: int):
    """The room's iCal feed address; a POST makes a new one, and the old one stops working."""
    room = _room_or_404(room_id)
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
