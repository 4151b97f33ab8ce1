"""Import a ward's facility catalog (the shisetsu-viewer JSON format) into buildings and rooms.

The file is validated as a whole before anything is written, so a bad record,
even the last one, leaves the database as it was. Records are matched by their
`id` (Room.external_id) and buildings by `municipality:building`
(Building.external_key), so importing a file again updates rooms in place.
Services only flush; the caller commits.

The clock times of divisions are not in the data and differ by ward, so the
caller passes them (`parse_division_times`). ONE_HOUR and TWO_HOUR are not
divisions but hourly rates: such a room is let by the hour.
"""
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Building, Division, Letting, Room, RoomEquipment, RoomKind

DIVISION_PREFIX = "FEE_DIVISION_"
# Fee "divisions" that are really a rate per unit of time, in minutes.
HOURLY_UNITS = {"ONE_HOUR": 60, "TWO_HOUR": 120}
EQUIPMENT_CODES = ("piano", "music_stand", "strings", "woodwind", "brass", "percussion")
_EQUIPMENT_FIELD = re.compile(r"^is_(?:equipped|available)_(?P<code>[a-z_]+)$")
_PRESENT_SUFFIXES = ("_EQUIPPED", "_AVAILABLE")  # not _UNEQUIPPED / _UNAVAILABLE / _UNKNOWN
_MAX_INT = 2_147_483_647  # an INTEGER column on PostgreSQL
_MAX_AREA = Decimal("999999.99")  # Numeric(8, 2)

# First match wins; the more specific uses come first, so that
# "２０３（和室）" is a Japanese room and "ホール全体" a hall.
_KIND_WORDS: tuple[tuple[RoomKind, tuple[str, ...]], ...] = (
    (RoomKind.JAPANESE_ROOM, ("和室",)),
    (RoomKind.KITCHEN, ("調理室",)),
    (RoomKind.GYM, ("体育", "卓球", "洋弓")),
    (RoomKind.COURT, ("コート",)),
    (RoomKind.STUDIO, ("美術室", "視聴覚室", "スタジオ")),
    (RoomKind.MUSIC_ROOM, ("音楽室", "練習室", "リハーサル室")),
    (RoomKind.HALL, ("ホール",)),
    (RoomKind.MEETING_ROOM, ("会議室", "研修室", "集会室", "洋室")),
)
# Meguro names carry the former name in 【旧…】; the current use decides first.
_FORMER_NAME = re.compile(r"【[^】]*】")


class CatalogError(Exception):
    """The catalog or the import options are not usable; nothing was imported."""


@dataclass(frozen=True)
class HourlyTerms:
    """Opening hours and durations given to rooms let by the hour (not in the data)."""

    open_time: time = time(9, 0)
    close_time: time = time(21, 0)
    min_minutes: int = 60
    max_minutes: int | None = None
    step_minutes: int = 60

    def check(self) -> None:
        if self.close_time <= self.open_time:
            raise CatalogError("hourly opening hours: the closing time must be after the opening time")
        if self.step_minutes <= 0 or self.min_minutes <= 0:
            raise CatalogError("hourly terms: the step and the minimum must be positive minutes")
        if self.min_minutes % self.step_minutes:
            raise CatalogError("hourly terms: the minimum must be a multiple of the step")
        if self.max_minutes is not None and (
            self.max_minutes < self.min_minutes or self.max_minutes % self.step_minutes
        ):
            raise CatalogError("hourly terms: the maximum must be a multiple of the step, at least the minimum")


@dataclass(frozen=True)
class DivisionSpec:
    code: str
    start_time: time
    end_time: time
    weekday_fee: int | None
    holiday_fee: int | None


@dataclass(frozen=True)
class HourlyRate:
    unit_minutes: int
    weekday_fee: int | None
    holiday_fee: int | None


@dataclass(frozen=True)
class RoomSpec:
    """One validated record of the catalog."""

    external_id: str
    building_key: str
    building_name: str
    building_kana: str
    name: str
    name_kana: str
    kind: RoomKind
    address: str
    capacity: int | None
    area_m2: Decimal | None
    website_url: str
    note: str
    lottery_note: str
    divisions: tuple[DivisionSpec, ...]
    hourly: HourlyRate | None
    equipment: frozenset[str]


@dataclass
class ImportResult:
    buildings_created: int = 0
    buildings_updated: int = 0
    rooms_created: int = 0
    rooms_updated: int = 0
    not_bookable: Counter = field(default_factory=Counter)  # reason -> number of rooms
    rooms: list[Room] = field(default_factory=list)

    def summary(self) -> list[str]:
        """Lines for an operator: what was created and updated, and what cannot be booked and why."""
        lines = [
            f"Buildings: {self.buildings_created} created, {self.buildings_updated} updated.",
            f"Rooms: {self.rooms_created} created, {self.rooms_updated} updated.",
        ]
        for reason, count in sorted(self.not_bookable.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"{count} {'room' if count == 1 else 'rooms'} not bookable online: {reason}")
        if not self.not_bookable:
            lines.append(f"All {len(self.rooms)} rooms are bookable online.")
        return lines


# -- Inputs -----------------------------------------------------------------

def _parse_clock(text: str) -> time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(text)
    return time(int(match[1]), int(match[2]))


def parse_time_range(text: str) -> tuple[time, time]:
    """"09:00-12:00" -> (09:00, 12:00); the end must be after the start."""
    try:
        start_text, end_text = text.split("-")
        start, end = _parse_clock(start_text), _parse_clock(end_text)
    except ValueError:
        raise CatalogError(f"{text!r} is not a time range like 09:00-12:00") from None
    if end <= start:
        raise CatalogError(f"{text!r}: the end must be after the start")
    return start, end


def parse_division_times(spec: str) -> dict[str, tuple[time, time]]:
    """Parse "MORNING=09:00-12:00,AFTERNOON=13:00-17:00" (the FEE_DIVISION_ prefix is optional)."""
    times: dict[str, tuple[time, time]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, clock = part.partition("=")
        name = name.strip().upper().removeprefix(DIVISION_PREFIX)
        if not sep or not name:
            raise CatalogError(f"--divisions: {part!r} is not NAME=HH:MM-HH:MM")
        if name in HOURLY_UNITS:
            raise CatalogError(f"--divisions: {name} is an hourly rate, not a division; it needs no times")
        if name in times:
            raise CatalogError(f"--divisions: {name} is given twice")
        try:
            times[name] = parse_time_range(clock)
        except CatalogError as exc:
            raise CatalogError(f"--divisions: {name}: {exc}") from None
    return times


def read_catalog(path: str | Path) -> list:
    """The records of a catalog file: a JSON list (its records are checked by import_catalog)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, list):
        raise CatalogError(f"{path}: expected a JSON list of room records, got a JSON {type(data).__name__}")
    return data


def infer_room_kind(name: str) -> RoomKind:
    """The kind of a room from its Japanese name: 音楽室 -> music_room, ２０３（和室） -> japanese_room."""
    name = unicodedata.normalize("NFKC", name)
    for text in (_FORMER_NAME.sub("", name), name):
        for kind, words in _KIND_WORDS:
            if any(word in text for word in words):
                return kind
    return RoomKind.OTHER


# -- Validation -------------------------------------------------------------

class _RecordReader:
    """Reads the fields of one record; every problem names the record and the field."""

    def __init__(self, record: dict, number: int):
        self.record = record
        self.number = number

    def fail(self, field_name: str, problem: str) -> CatalogError:
        label = f"record {self.number}"
        external_id = self.record.get("id")
        if isinstance(external_id, str) and external_id:
            label += f" (id {external_id}"
            if isinstance(self.record.get("building"), str) and isinstance(self.record.get("institution"), str):
                label += f", {self.record['building']} {self.record['institution']}"
            label += ")"
        return CatalogError(f"{label}: field {field_name!r}: {problem}")

    def text(self, name: str, *, required: bool = False, max_length: int | None = None) -> str:
        value = self.record.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise self.fail(name, f"must be text, got {value!r}")
        value = value.strip()
        if required and not value:
            raise self.fail(name, "is missing or empty")
        if max_length and len(value) > max_length:
            raise self.fail(name, f"is longer than {max_length} characters")
        return value

    def count(self, name: str) -> int | None:
        """A positive integer, or None for 0 / null / missing (unknown)."""
        value = self.record.get(name)
        if value is None or value == 0:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_INT:
            raise self.fail(name, f"must be a non-negative integer, got {value!r}")
        return value

    def area(self, name: str) -> Decimal | None:
        value = self.record.get(name)
        if value is None or value == 0:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.fail(name, f"must be a non-negative number, got {value!r}")
        area = Decimal(str(value)).quantize(Decimal("0.01"))
        if area > _MAX_AREA:
            raise self.fail(name, f"is too large: {value!r}")
        return area

    def sequence(self, name: str) -> list:
        value = self.record.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(name, f"must be a list, got {value!r}")
        return value

    def division_names(self) -> list[str]:
        names: list[str] = []
        for i, value in enumerate(self.sequence("fee_divisions")):
            where = f"fee_divisions[{i}]"
            if not isinstance(value, str) or not value.startswith(DIVISION_PREFIX) or value == "FEE_DIVISION_INVALID":
                raise self.fail(where, f"is not a division like FEE_DIVISION_MORNING: {value!r}")
            name = value.removeprefix(DIVISION_PREFIX)
            if name in names:
                raise self.fail(where, f"{value} is listed twice")
            names.append(name)
        return names

    def fees(self, name: str, declared: list[str]) -> dict[str, int]:
        fees: dict[str, int] = {}
        for i, entry in enumerate(self.sequence(name)):
            where = f"{name}[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(where, f"must be an object with division and fee, got {entry!r}")
            division = entry.get("division")
            division_name = division.removeprefix(DIVISION_PREFIX) if isinstance(division, str) else None
            if division_name not in declared:
                raise self.fail(
                    f"{where}.division",
                    f"unknown division {division!r}; the record's fee_divisions are "
                    f"{', '.join(DIVISION_PREFIX + d for d in declared) or 'empty'}",
                )
            if division_name in fees:
                raise self.fail(f"{where}.division", f"{division} has two fees")
            fee = entry.get("fee")
            if isinstance(fee, bool) or not isinstance(fee, int) or not 0 <= fee <= _MAX_INT:
                raise self.fail(f"{where}.fee", f"must be a non-negative integer (yen), got {fee!r}")
            fees[division_name] = fee
        return fees

    def equipment(self) -> frozenset[str]:
        present = set()
        for name, value in self.record.items():
            match = _EQUIPMENT_FIELD.match(name)
            if not match or match["code"] not in EQUIPMENT_CODES or value is None:
                continue
            if not isinstance(value, str):
                raise self.fail(name, f"must be text like EQUIPMENT_DIVISION_EQUIPPED, got {value!r}")
            if value.endswith(_PRESENT_SUFFIXES):
                present.add(match["code"])
        return frozenset(present)


def _column_length(column) -> int:
    return column.property.columns[0].type.length


def _check_record(record, number: int, division_times: dict[str, tuple[time, time]]) -> RoomSpec:
    if not isinstance(record, dict):
        raise CatalogError(f"record {number}: must be an object, got {type(record).__name__}")
    read = _RecordReader(record, number)
    external_id = read.text("id", required=True, max_length=_column_length(Room.external_id))
    municipality = read.text("municipality", required=True)
    building = read.text("building", required=True, max_length=_column_length(Building.name))
    building_key = f"{municipality}:{read.text('building_system_name') or building}"
    if len(building_key) > _column_length(Building.external_key):
        raise read.fail("building_system_name", "makes a building key that is too long")
    name = read.text("institution", required=True, max_length=_column_length(Room.name))

    declared = read.division_names()
    weekday, holiday = read.fees("weekday_usage_fee", declared), read.fees("holiday_usage_fee", declared)
    hourly_names = [d for d in declared if d in HOURLY_UNITS]
    division_names = [d for d in declared if d not in HOURLY_UNITS]
    hourly = None
    if hourly_names and division_names:
        raise read.fail("fee_divisions", "mixes hourly rates (ONE_HOUR, TWO_HOUR) with divisions; "
                                         "a room is let either by the hour or in divisions")
    if hourly_names:
        # With both rates given, the one-hour rate is the unit residents book in.
        unit = "ONE_HOUR" if "ONE_HOUR" in hourly_names else "TWO_HOUR"
        hourly = HourlyRate(HOURLY_UNITS[unit], weekday.get(unit), holiday.get(unit))
    missing = [d for d in division_names if d not in division_times]
    if missing:
        raise read.fail("fee_divisions", f"no clock times for {'division' if len(missing) == 1 else 'divisions'} "
                                          f"{', '.join(missing)}: give them in --divisions "
                                          f"(e.g. {missing[0]}=HH:MM-HH:MM)")
    divisions = sorted(
        (DivisionSpec(d, *division_times[d], weekday.get(d), holiday.get(d)) for d in division_names),
        key=lambda spec: spec.start_time,
    )
    return RoomSpec(
        external_id=external_id,
        building_key=building_key,
        building_name=building,
        building_kana=read.text("building_kana", max_length=_column_length(Building.name_kana)),
        name=name,
        name_kana=read.text("institution_kana", max_length=_column_length(Room.name_kana)),
        kind=infer_room_kind(name),
        address=read.text("address", max_length=_column_length(Building.address)),
        capacity=read.count("capacity"),
        area_m2=read.area("area"),
        website_url=read.text("website_url", max_length=_column_length(Room.website_url)),
        note=read.text("note"),
        lottery_note=read.text("lottery_period"),
        divisions=tuple(divisions),
        hourly=hourly,
        equipment=read.equipment(),
    )


def check_catalog(records: list, division_times: dict[str, tuple[time, time]]) -> list[RoomSpec]:
    """Validate every record before anything is written; raise CatalogError on the first problem."""
    if not isinstance(records, list):
        raise CatalogError(f"expected a list of room records, got a {type(records).__name__}")
    specs: list[RoomSpec] = []
    seen: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        spec = _check_record(record, number, division_times)
        if spec.external_id in seen:
            raise CatalogError(f"record {number}: field 'id': {spec.external_id} is also the id of "
                               f"record {seen[spec.external_id]}")
        seen[spec.external_id] = number
        specs.append(spec)
    return specs


# -- Writing ----------------------------------------------------------------

def _sync_divisions(room: Room, specs: tuple[DivisionSpec, ...]) -> None:
    """Update divisions in place by code, so their ids (and anything pointing at them) survive."""
    existing = {d.code: d for d in room.divisions}
    for position, spec in enumerate(specs):
        division = existing.pop(spec.code, None)
        if division is None:
            division = Division(code=spec.code)
            room.divisions.append(division)
        division.position = position
        division.start_time, division.end_time = spec.start_time, spec.end_time
        division.weekday_fee, division.holiday_fee = spec.weekday_fee, spec.holiday_fee
    for division in existing.values():
        room.divisions.remove(division)


def _sync_equipment(room: Room, codes: frozenset[str]) -> None:
    for item in [e for e in room.equipment if e.code not in codes]:
        room.equipment.remove(item)
    for code in sorted(codes - room.equipment_codes()):
        room.equipment.append(RoomEquipment(code=code))


def _apply_letting(room: Room, spec: RoomSpec, terms: HourlyTerms) -> None:
    if spec.hourly is None:
        room.letting = Letting.DIVISION
        room.open_time = room.close_time = room.min_minutes = room.max_minutes = None
        room.weekday_hourly_fee = room.holiday_hourly_fee = None
        _sync_divisions(room, spec.divisions)
        return
    room.letting = Letting.HOURLY
    _sync_divisions(room, ())
    room.open_time, room.close_time = terms.open_time, terms.close_time
    room.min_minutes, room.max_minutes, room.step_minutes = terms.min_minutes, terms.max_minutes, terms.step_minutes
    room.hourly_unit_minutes = spec.hourly.unit_minutes
    room.weekday_hourly_fee, room.holiday_hourly_fee = spec.hourly.weekday_fee, spec.hourly.holiday_fee


def import_catalog(
    records: list,
    division_times: dict[str, tuple[time, time]],
    *,
    hourly_terms: HourlyTerms | None = None,
) -> ImportResult:
    """Create or update the buildings and rooms of a catalog; flush, never commit.

    Raises CatalogError, before writing anything, when a record is malformed or
    uses a division that `division_times` does not give times for. Fields the
    catalog does not carry (English names, booking window, closures, active)
    are left as they are on rooms that already exist.
    """
    terms = hourly_terms or HourlyTerms()
    terms.check()
    specs = check_catalog(records, division_times)
    result = ImportResult()

    keys = {s.building_key for s in specs}
    buildings = {
        b.external_key: b for b in db.session.scalars(select(Building).where(Building.external_key.in_(keys)))
    }
    rooms = {
        r.external_id: r
        for r in db.session.scalars(
            select(Room)
            .where(Room.external_id.in_([s.external_id for s in specs]))
            .options(selectinload(Room.divisions), selectinload(Room.equipment))
        )
    }
    touched: set[str] = set()
    for spec in specs:
        building = buildings.get(spec.building_key)
        if building is None:
            building = buildings[spec.building_key] = Building(external_key=spec.building_key)
            db.session.add(building)
            result.buildings_created += 1
        elif spec.building_key not in touched:
            result.buildings_updated += 1
        if spec.building_key not in touched:
            touched.add(spec.building_key)
            building.name, building.name_kana = spec.building_name, spec.building_kana
            building.address = spec.address
        elif not building.address:
            building.address = spec.address

        room = rooms.get(spec.external_id)
        if room is None:
            room = Room(external_id=spec.external_id, active=True, divisions=[], equipment=[])
            db.session.add(room)
            result.rooms_created += 1
        else:
            result.rooms_updated += 1
        room.building = building
        room.name, room.name_kana, room.kind = spec.name, spec.name_kana, spec.kind
        room.capacity, room.area_m2 = spec.capacity, spec.area_m2
        room.website_url, room.note, room.lottery_note = spec.website_url, spec.note, spec.lottery_note
        _apply_letting(room, spec, terms)
        _sync_equipment(room, spec.equipment)
        result.rooms.append(room)

    db.session.flush()
    result.not_bookable = Counter(
        reason for reason in (room.unbookable_reason() for room in result.rooms) if reason is not None
    )
    return result
