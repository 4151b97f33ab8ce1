"""Public pages: search rooms, see a room, its month calendar and a day's slots."""
from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace

from flask import abort, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from werkzeug.datastructures import MultiDict

from ..extensions import db
from ..models import Building, Closure, Division, Letting, Room, RoomEquipment
from ..services import availability, refund_policy, rules
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


def room_or_404(room_id: int, *, with_rules: bool = False, also=()) -> Room:
    """An active room, or 404: inactive rooms are not shown to the public. `with_rules` loads its building,
    divisions and closures with it, and the loader options `also`, in the same statement
    (rules.room_with_rules)."""
    if not 0 < room_id <= MAX_ID:
        abort(404)
    room = rules.room_with_rules(room_id, also=also) if with_rules else db.session.get(Room, room_id)
    if room is None or not room.active:
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
    room: Room  # or a SearchRoom: what the card and the day's mark read of it
    fee: Fee | None
    day: availability.Day | None  # that day's availability, when a date was asked for


class SearchRoom(SimpleNamespace):
    """A room as its search card and its day's mark read it: the room's columns, its building, and its
    divisions and closures as rows (each with the columns of its table). Not ORM objects: a page lists every
    room of the ward, and the identity map and collections of 177 rooms with their 531 divisions cost
    more than the rest of the page (bench/calendar_pages.py). Read-only, for one request."""

    unbookable_reason = Room.unbookable_reason
    bookable_online: bool  # Room.bookable_online, worked out once its divisions are in


def _search_rooms(form: SearchForm, buildings: dict[int, Building]) -> list[SearchRoom]:
    """The active rooms matching the filters, in the order of the page: three statements whatever their
    number (the rooms, their divisions, their closures, each by the same filters)."""
    where = [Room.active.is_(True)]
    if form.kind.data:
        where.append(Room.kind == form.kind.data)
    if form.capacity.data is not None:
        where.append(Room.capacity >= form.capacity.data)
    if form.building.data:
        where.append(Room.building_id == int(form.building.data))
    for code in form.equipment.data or []:
        where.append(Room.equipment.any(RoomEquipment.code == code))

    # Core statements on the session's connection: rows, with none of the ORM's work per statement.
    connection = db.session.connection()
    rows = connection.execute(
        select(*Room.__table__.c).join(Building, Building.id == Room.building_id).where(*where)
        .order_by(Building.name_kana, Building.id, Room.id))  # .all() below: fetched at once, not row by row
    rooms, names = {}, rows.keys()  # a row's names once, not once a row (Row._asdict asks for them each time)
    for row in rows.all():
        room = SearchRoom(**dict(zip(names, row, strict=True)), divisions=[], closures=[])
        room.building = buildings[room.building_id]
        rooms[room.id] = room
    if rooms:
        for model, collection, order in ((Division, "divisions", (Division.position, Division.id)),
                                         (Closure, "closures", (Closure.id,))):
            owned = connection.execute(
                select(*model.__table__.c).join(Room, Room.id == model.room_id).where(*where).order_by(*order))
            for row in owned.all():
                getattr(rooms[row.room_id], collection).append(row)
    for room in rooms.values():
        room.bookable_online = room.unbookable_reason() is None
    return list(rooms.values())


def _search(form: SearchForm, buildings: list[Building]) -> list[Result]:
    """Active rooms matching the filters; bookable ones carry the chosen day's mark."""
    rooms = _search_rooms(form, {b.id: b for b in buildings})
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


def href_by_id(endpoint: str, key: str, **values):
    """url_for(endpoint, **{key: id}, **values) for many ids, as a function of the id: a list of links to the
    same route but for the id (the cards of a search, a calendar's bookings) builds it once and puts each id
    in its place, as url_for costs more than the rest of a card."""
    head, tail = url_for(endpoint, **{key: MAX_ID}, **values).split(str(MAX_ID), 1)
    return lambda row_id: f"{head}{int(row_id)}{tail}"


def _card_href(day: date | None):
    """The link of each card: the room's page, at the chosen day."""
    if day:
        return href_by_id("public.room_day", "room_id", day=day.isoformat(), _anchor="day")
    return href_by_id("public.room", "room_id")


@bp.get("/")
def index():
    buildings = db.session.scalars(select(Building).order_by(Building.name_kana, Building.id)).all()
    form = SearchForm(request.args, buildings=[(b, building_name(b)) for b in buildings])
    if not form.validate():
        return render_template("public/index.html", form=form, results=None), 400
    results = _search(form, buildings)
    return render_template("public/index.html", form=form, results=results, card_href=_card_href(form.date.data),
                           lottery_shown=any(r.day is not None and r.day.mark == availability.LOTTERY for r in results))


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


# What the room's page shows beside its rules (building, divisions, closures): loaded with them in the room's
# one statement, not lazily one statement each (a room has a handful of each: the joined rows stay few).
ROOM_PAGE = (joinedload(Room.refund_tiers), joinedload(Room.equipment))


@bp.get("/rooms/<int:room_id>")
def room(room_id: int):
    room = room_or_404(room_id, with_rules=True, also=ROOM_PAGE)
    return _render_room(room, RoomPageForm(request.args))


@bp.get("/rooms/<int:room_id>/days/<day>")
def room_day(room_id: int, day: str):
    room = room_or_404(room_id, with_rules=True, also=ROOM_PAGE)
    return _render_room(room, RoomPageForm(MultiDict({"date": day})))

