"""Public pages: search rooms, see a room, its month calendar and a day's slots."""
from datetime import date

from flask import abort, render_template, request, url_for
from sqlalchemy.orm import joinedload
from werkzeug.datastructures import MultiDict

from ..extensions import db
from ..models import Letting, Room
from ..services import availability, refund_policy, rules
from ..timeutil import shift_months
from . import bp, search
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
    kept = search.catalog()
    form = SearchForm(request.args, buildings=[(b, building_name(b)) for b in kept.buildings])
    if not form.validate():
        return render_template("public/index.html", form=form, results=None), 400
    results = search.search(form, kept, day=form.date.data)
    return render_template("public/index.html", form=form, results=search.cards(results, _card_href(form.date.data)),
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

