"""Public pages: search rooms, see a room, its month calendar and a day's slots."""
from dataclasses import dataclass
from datetime import date

from flask import abort, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import contains_eager, selectinload
from werkzeug.datastructures import MultiDict

from ..extensions import db
from ..models import Building, Letting, Room, RoomEquipment
from ..services import availability, refund_policy
from ..timeutil import shift_months
from . import bp
from .forms import RoomPageForm, SearchForm, today
from .labels import building_name

# Ids in URLs are checked against the column type first: an out-of-range
# integer would be a database error (500) on PostgreSQL, not a 404.
MAX_ID = 2**31 - 1


def row_or_404(model, row_id: int):
    """The row of `model` with this primary key, or 404 (for an id out of range too)."""
    row = db.session.get(model, row_id) if 0 < row_id <= MAX_ID else None
    if row is None:
        abort(404)
    return row


def room_or_404(room_id: int) -> Room:
    """An active room, or 404: inactive rooms are not shown to the public."""
    room = row_or_404(Room, room_id)
    if not room.active:
        abort(404)
    return room


@dataclass(frozen=True)
class Fee:
    amount: int
    per_minutes: int | None  # None: per division


def fee_from(room: Room) -> Fee | None:
    """The lowest resident fee of a room, to show on its search card."""
    if room.letting == Letting.DIVISION:
        fees = [f for d in room.divisions for f in (d.weekday_fee, d.holiday_fee) if f is not None]
        return Fee(min(fees), None) if fees else None
    fees = [f for f in (room.weekday_hourly_fee, room.holiday_hourly_fee) if f is not None]
    return Fee(min(fees), room.hourly_unit_minutes) if fees else None


@dataclass(frozen=True)
class Result:
    room: Room
    fee: Fee | None
    day: availability.Day | None  # that day's availability, when a date was asked for


def _search(form: SearchForm) -> list[Result]:
    """Active rooms matching the filters; bookable ones carry the chosen day's mark."""
    query = (
        select(Room)
        .join(Room.building)
        .where(Room.active.is_(True))
        .options(
            contains_eager(Room.building),
            selectinload(Room.divisions),
            selectinload(Room.equipment),
            selectinload(Room.closures),
        )
        .order_by(Building.name_kana, Building.id, Room.id)
    )
    if form.kind.data:
        query = query.where(Room.kind == form.kind.data)
    if form.capacity.data is not None:
        query = query.where(Room.capacity >= form.capacity.data)
    if form.building.data:
        query = query.where(Room.building_id == int(form.building.data))
    for code in form.equipment.data or []:
        query = query.where(Room.equipment.any(RoomEquipment.code == code))

    rooms = db.session.scalars(query).all()
    if form.online_only.data:
        rooms = [room for room in rooms if room.bookable_online]
    # Every mark of the day from one bookings query, however many rooms match.
    days = {}
    if form.date.data:
        days = availability.rooms_day_availability([r for r in rooms if r.bookable_online], form.date.data)
    results = []
    for room in rooms:
        day = days.get(room.id)
        if form.free_only.data and (day is None or day.mark not in (availability.FREE, availability.PARTLY)):
            continue
        results.append(Result(room, fee_from(room), day))
    return results


@bp.get("/")
def index():
    buildings = db.session.scalars(select(Building).order_by(Building.name_kana, Building.id)).all()
    form = SearchForm(request.args, buildings=[(b, building_name(b)) for b in buildings])
    if not form.validate():
        return render_template("public/index.html", form=form, results=None), 400
    return render_template("public/index.html", form=form, results=_search(form))


def _weeks(days: list[availability.Day]) -> list[list[availability.Day | None]]:
    """The month as weeks from Sunday to Saturday, as ward calendars show it; None pads."""
    lead = (days[0].day.weekday() + 1) % 7
    cells: list[availability.Day | None] = [None] * lead + list(days)
    cells += [None] * (-len(cells) % 7)
    return [cells[i:i + 7] for i in range(0, len(cells), 7)]


def _render_room(room: Room, form: RoomPageForm):
    valid = form.validate()
    chosen_day: date | None = form.date.data if valid else None
    this_month = today().replace(day=1)
    month = (form.month.data if valid else None) or (chosen_day or this_month).replace(day=1)
    # A room not offered online has no calendar; one let by the hour may lack the
    # opening hours that availability needs.
    offered = room.bookable_online
    days = availability.month_availability(room, month.year, month.month) if offered else []
    day = availability.day_availability(room, chosen_day) if offered and chosen_day else None
    durations = []
    if room.letting == Letting.HOURLY and room.open_time and room.close_time:
        longest = (room.close_time.hour * 60 + room.close_time.minute) - (
            room.open_time.hour * 60 + room.open_time.minute
        )
        shortest = room.min_minutes or room.step_minutes
        durations = list(range(shortest, min(room.max_minutes or longest, longest) + 1, room.step_minutes))
    page = render_template(
        "public/room.html",
        room=room,
        form=form,
        month=month,
        weeks=_weeks(days) if days else [],
        weekdays=[6, 0, 1, 2, 3, 4, 5],
        prev_month=shift_months(month, -1) if month > this_month else None,
        next_month=shift_months(month, 1) if month < shift_months(this_month, 12) else None,
        day=day,
        durations=durations,
        today=today(),
        closures=[c for c in room.closures if c.end_date is None or c.end_date >= today()],
        refund_tiers=refund_policy.tiers_for(room),
    )
    return page, 200 if valid else 400


@bp.get("/rooms/<int:room_id>")
def room(room_id: int):
    room = room_or_404(room_id)
    return _render_room(room, RoomPageForm(request.args))


@bp.get("/rooms/<int:room_id>/days/<day>")
def room_day(room_id: int, day: str):
    room = room_or_404(room_id)
    return _render_room(room, RoomPageForm(MultiDict({"date": day})))

