"""The public search: the ward's rooms as its cards show them, filtered, with the chosen day's marks.

The rooms, their buildings, divisions, closures and equipment are the catalog, which staff change a few times a
month and every search reads whole. This app keeps them, read once as plain rows (SearchCatalog), for as long
as the catalog's token stays the same: every write to those tables gives the token a new value in the same
transaction (migrations 0014 and 0015), as for the rooms a booking keeps (rules.cached_room_with_rules). A
search then asks the database for the token and the day's bookings and lottery rounds only, three statements
whatever the number of rooms, and filters the kept rooms in Python; after a change to the catalog, the first
search reads it again (five more statements).
"""
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace

from flask import current_app
from markupsafe import Markup
from sqlalchemy import select

from ..extensions import db
from ..models import Building, Closure, Division, Letting, Room, RoomEquipment
from ..services import availability, rules
from .forms import SearchForm
from .labels import card_names


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


class SearchRoom(SimpleNamespace):
    """A room as its search card and its day's mark read it: the room's columns, its building, its divisions and
    closures as rows (each with the columns of its table), its equipment codes, its card's fee and whether it is
    offered online. Not ORM objects: a page lists every room of the ward, and the identity map and collections
    of 177 rooms with their 531 divisions cost more than the rest of the page (bench/calendar_pages.py).
    Read-only: kept by the app and read by every search."""

    unbookable_reason = Room.unbookable_reason
    bookable_online: bool  # Room.bookable_online, worked out once its divisions are in
    equipment_codes: frozenset[str]
    fee: Fee | None


@dataclass
class Result:
    room: SearchRoom  # what the card and the day's mark read of it, its fee included
    day: availability.Day | None  # that day's availability, when a date was asked for


@dataclass(frozen=True)
class SearchCatalog:
    token: str | None  # the catalog token it was read under; None: read without one, and not kept
    buildings: list[SimpleNamespace]  # every building, by its reading (the form's choices)
    rooms: list[SearchRoom]  # the active rooms in the order of the page: by building, then by id


def _plain_rows(connection, statement) -> list[SimpleNamespace]:
    rows = connection.execute(statement)
    names = rows.keys()  # a row's names once, not once a row (Row._asdict asks for them each time)
    return [SimpleNamespace(**dict(zip(names, row, strict=True))) for row in rows.all()]


def _read_catalog(token: str | None) -> SearchCatalog:
    """Five statements on the request's connection (the same transaction as the token), as Core rows."""
    db.session.flush()
    connection = db.session.connection()
    buildings = _plain_rows(connection, select(*Building.__table__.c).order_by(Building.name_kana, Building.id))
    by_id = {b.id: b for b in buildings}
    active = Room.active.is_(True)
    rooms = {}
    for row in _plain_rows(connection, select(*Room.__table__.c).join(Building, Building.id == Room.building_id)
                           .where(active).order_by(Building.name_kana, Building.id, Room.id)):
        rooms[row.id] = SearchRoom(**vars(row), building=by_id[row.building_id], divisions=[], closures=[])
    codes: dict[int, set[str]] = {room_id: set() for room_id in rooms}
    for model, order in ((Division, (Division.position, Division.id)), (Closure, (Closure.id,)),
                         (RoomEquipment, (RoomEquipment.code,))):
        owned = connection.execute(select(*model.__table__.c).join(Room, Room.id == model.room_id).where(active)
                                   .order_by(model.room_id, *order))
        for row in owned.all():
            if model is Division:
                rooms[row.room_id].divisions.append(row)
            elif model is Closure:
                rooms[row.room_id].closures.append(row)
            else:
                codes[row.room_id].add(row.code)
    for room in rooms.values():
        room.equipment_codes = frozenset(codes[room.id])
        room.bookable_online = room.unbookable_reason() is None
        room.fee = fee_from(room)
    return SearchCatalog(token, buildings, list(rooms.values()))


def catalog() -> SearchCatalog:
    """The catalog as the search reads it, kept by this app while the catalog's token stays the one read first
    in this transaction. A change committed between the token and the rows is kept under the older token and
    read again by the next search, never the reverse. Before the catalog's first write there is no token, and
    nothing is kept."""
    token = rules.catalog_token()
    kept = current_app.extensions.get("search_catalog")
    if token is not None and kept is not None and kept.token == token:
        return kept
    read = _read_catalog(token)
    if token is not None:
        current_app.extensions["search_catalog"] = read
    return read


def _matches(room: SearchRoom, form: SearchForm) -> bool:
    if form.kind.data and room.kind != form.kind.data:
        return False
    if form.capacity.data is not None and (room.capacity is None or room.capacity < form.capacity.data):
        return False
    if form.building.data and room.building_id != int(form.building.data):
        return False
    return room.equipment_codes.issuperset(form.equipment.data or ())


def search(form: SearchForm, kept: SearchCatalog, *, day: date | None) -> list[Result]:
    """Active rooms matching the filters, in the catalog's order; bookable ones carry the day's mark."""
    rooms = [room for room in kept.rooms if _matches(room, form)]
    if form.online_only.data:
        rooms = [room for room in rooms if room.bookable_online]
    # Every mark of the day from one bookings query, however many rooms match.
    days = availability.rooms_day_availability([r for r in rooms if r.bookable_online], day) if day else {}
    results = []
    for room in rooms:
        mark = days.get(room.id)
        if form.free_only.data and (mark is None or mark.mark not in (availability.FREE, availability.PARTLY)):
            continue
        results.append(Result(room, mark))
    return results


@dataclass(frozen=True, slots=True)
class Card:
    """A result as its card prints it, worked out here once a card rather than by the template's attribute
    lookups and calls (most of a search over a ward's rooms): its link, the room's and the building's names,
    and what its facts say (kind, capacity, fee, the day's mark and lottery, whether it is offered online),
    by which cards that say the same share their HTML."""

    room: SearchRoom
    day: availability.Day | None
    href: str
    name: Markup
    building: Markup
    facts: tuple


def cards(results: list[Result], href: Callable[[int], str]) -> list[Card]:
    """The cards of the results, each linked by href(room id)."""
    names = card_names([r.room for r in results])
    return [Card(r.room, r.day, href(r.room.id), name, building,
                 (r.room.kind, r.room.capacity, r.room.fee, r.day.mark if r.day else None,
                  r.day.lottery if r.day else None, r.room.bookable_online))
            for r, (name, building) in zip(results, names, strict=True)]
