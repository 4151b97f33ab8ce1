"""Import a ward's facility catalog (the shisetsu-viewer JSON format) into buildings and rooms.

Real ward data is imported as it is: a flaw in one room's record (a fee for a
division the room does not list, a division with no clock times, an unusable
fee or capacity) never refuses the file. That room comes in without the
unusable values, is not offered online, and keeps the reason in
Room.import_issue for staff. A malformed file (not JSON, not a list, a record
that is not an object, a missing or duplicate id, a missing name) imports
nothing: it is validated as a whole before anything is written, so a bad
record, even the last one, leaves the database as it was. `strict` makes any
room's flaw refuse the file too. Records are matched by their
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
    issues: tuple[str, ...] = ()  # flaws of this record: the room is imported, not bookable online


@dataclass
class ImportResult:
    buildings_created: int = 0
    buildings_updated: int = 0
    rooms_created: int = 0
    rooms_updated: int = 0
    rooms: list[Room] = field(default_factory=list)
    unbookable: list[tuple[Room, str]] = field(default_factory=list)  # (room, why it is not offered online)

    @property
    def not_bookable(self) -> Counter:
        """Rooms not offered online, by the kind of reason ("no fees", "catalog flaw", ...)."""
        return Counter(reason.partition(":")[0] for _, reason in self.unbookable)

    def summary(self) -> list[str]:
        """Lines for an operator: what was created and updated, and each room that cannot be booked and why."""
        lines = [
            f"Buildings: {self.buildings_created} created, {self.buildings_updated} updated.",
            f"Rooms: {self.rooms_created} created, {self.rooms_updated} updated, "
            f"{len(self.unbookable)} not bookable online.",
        ]
        for reason, count in sorted(self.not_bookable.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"{count} {'room' if count == 1 else 'rooms'} not bookable online: {reason}")
        if not self.unbookable:
            lines.append(f"All {len(self.rooms)} rooms are bookable online.")
        else:
            lines.append("Not bookable online (room id, building and room: reason):")
            lines += [f"  {room.external_id} {room.building.name} {room.name}: {reason}"
                      for room, reason in self.unbookable]
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
    """Reads the fields of one record; every problem names the record and the field.

    A problem with what identifies the record (its id, municipality, building or room name)
    refuses the file (`fail`). Any other is a flaw of this room alone (`flaw`): the room is
    imported without the unusable value and not offered online, unless `strict` makes it
    refuse the file as well.
    """

    def __init__(self, record: dict, number: int, strict: bool):
        self.record = record
        self.number = number
        self.strict = strict
        self.issues: list[str] = []

    def fail(self, field_name: str, problem: str) -> CatalogError:
        label = f"record {self.number}"
        external_id = self.record.get("id")
        if isinstance(external_id, str) and external_id:
            label += f" (id {external_id}"
            if isinstance(self.record.get("building"), str) and isinstance(self.record.get("institution"), str):
                label += f", {self.record['building']} {self.record['institution']}"
            label += ")"
        return CatalogError(f"{label}: field {field_name!r}: {problem}")

    def flaw(self, field_name: str, problem: str) -> None:
        if self.strict:
            raise self.fail(field_name, problem)
        self.issues.append(f"field {field_name!r}: {problem}")

    def _checked_text(self, name: str, *, required: bool, max_length: int | None) -> tuple[str, str | None]:
        """The field as stripped text, and what is wrong with it, if anything."""
        value = self.record.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            return "", f"must be text, got {value!r}"
        value = value.strip()
        if required and not value:
            return value, "is missing or empty"
        if max_length and len(value) > max_length:
            return value, f"is longer than {max_length} characters"
        return value, None

    def identity(self, name: str, *, required: bool = True, max_length: int | None = None) -> str:
        """Text the record is known by: unusable, it refuses the whole file."""
        value, problem = self._checked_text(name, required=required, max_length=max_length)
        if problem:
            raise self.fail(name, problem)
        return value

    def text(self, name: str, *, max_length: int | None = None) -> str:
        """Other text: unusable, it is a flaw of this room and is left empty."""
        value, problem = self._checked_text(name, required=False, max_length=max_length)
        if problem:
            self.flaw(name, problem)
            return ""
        return value

    def count(self, name: str) -> int | None:
        """A positive integer, or None for 0 / null / missing (unknown)."""
        value = self.record.get(name)
        if value is None or value == 0:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_INT:
            self.flaw(name, f"must be a non-negative integer, got {value!r}")
            return None
        return value

    def area(self, name: str) -> Decimal | None:
        value = self.record.get(name)
        if value is None or value == 0:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            self.flaw(name, f"must be a non-negative number, got {value!r}")
            return None
        area = Decimal(str(value)).quantize(Decimal("0.01"))
        if area > _MAX_AREA:
            self.flaw(name, f"is too large: {value!r}")
            return None
        return area

    def sequence(self, name: str) -> list:
        value = self.record.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.flaw(name, f"must be a list, got {value!r}")
            return []
        return value

    def division_names(self) -> list[str]:
        names: list[str] = []
        for i, value in enumerate(self.sequence("fee_divisions")):
            where = f"fee_divisions[{i}]"
            if not isinstance(value, str) or not value.startswith(DIVISION_PREFIX) or value == "FEE_DIVISION_INVALID":
                self.flaw(where, f"is not a division like FEE_DIVISION_MORNING: {value!r}")
                continue
            name = value.removeprefix(DIVISION_PREFIX)
            if name in names:
                self.flaw(where, f"{value} is listed twice")
                continue
            names.append(name)
        return names

    def fees(self, name: str, declared: list[str]) -> dict[str, int]:
        fees: dict[str, int] = {}
        for i, entry in enumerate(self.sequence(name)):
            where = f"{name}[{i}]"
            if not isinstance(entry, dict):
                self.flaw(where, f"must be an object with division and fee, got {entry!r}")
                continue
            division = entry.get("division")
            division_name = division.removeprefix(DIVISION_PREFIX) if isinstance(division, str) else None
            if division_name not in declared:
                self.flaw(
                    f"{where}.division",
                    f"unknown division {division!r}; the record's fee_divisions are "
                    f"{', '.join(DIVISION_PREFIX + d for d in declared) or 'empty'}",
                )
                continue
            if division_name in fees:
                self.flaw(f"{where}.division", f"{division} has two fees")
                continue
            fee = entry.get("fee")
            if isinstance(fee, bool) or not isinstance(fee, int) or not 0 <= fee <= _MAX_INT:
                self.flaw(f"{where}.fee", f"must be a non-negative integer (yen), got {fee!r}")
                continue
            fees[division_name] = fee
        return fees

    def equipment(self) -> frozenset[str]:
        present = set()
        for name, value in self.record.items():
            match = _EQUIPMENT_FIELD.match(name)
            if not match or match["code"] not in EQUIPMENT_CODES or value is None:
                continue
            if not isinstance(value, str):
                self.flaw(name, f"must be text like EQUIPMENT_DIVISION_EQUIPPED, got {value!r}")
                continue
            if value.endswith(_PRESENT_SUFFIXES):
                present.add(match["code"])
        return frozenset(present)


def _column_length(column) -> int:
    return column.property.columns[0].type.length


def _check_record(record, number: int, division_times: dict[str, tuple[time, time]], strict: bool) -> RoomSpec:
    if not isinstance(record, dict):
        raise CatalogError(f"record {number}: must be an object, got {type(record).__name__}")
    read = _RecordReader(record, number, strict)
    external_id = read.identity("id", max_length=_column_length(Room.external_id))
    municipality = read.identity("municipality")
    building = read.identity("building", max_length=_column_length(Building.name))
    building_key = f"{municipality}:{read.identity('building_system_name', required=False) or building}"
    if len(building_key) > _column_length(Building.external_key):
        raise read.fail("building_system_name", "makes a building key that is too long")
    name = read.identity("institution", max_length=_column_length(Room.name))

    declared = read.division_names()
    weekday, holiday = read.fees("weekday_usage_fee", declared), read.fees("holiday_usage_fee", declared)
    hourly_names = [d for d in declared if d in HOURLY_UNITS]
    division_names = [d for d in declared if d not in HOURLY_UNITS]
    hourly = None
    if hourly_names and division_names:
        read.flaw("fee_divisions", "mixes hourly rates (ONE_HOUR, TWO_HOUR) with divisions; "
                                   "a room is let either by the hour or in divisions")
    elif hourly_names:
        # With both rates given, the one-hour rate is the unit residents book in.
        unit = "ONE_HOUR" if "ONE_HOUR" in hourly_names else "TWO_HOUR"
        hourly = HourlyRate(HOURLY_UNITS[unit], weekday.get(unit), holiday.get(unit))
    missing = [d for d in division_names if d not in division_times]
    if missing:
        read.flaw("fee_divisions", f"no clock times for {'division' if len(missing) == 1 else 'divisions'} "
                                   f"{', '.join(missing)}: give them in --divisions "
                                   f"(e.g. {missing[0]}=HH:MM-HH:MM)")
    divisions = sorted(
        (DivisionSpec(d, *division_times[d], weekday.get(d), holiday.get(d))
         for d in division_names if d in division_times),
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
        issues=tuple(read.issues),
    )


def check_catalog(records: list, division_times: dict[str, tuple[time, time]], *,
                  strict: bool = False) -> list[RoomSpec]:
    """Validate every record before anything is written.

    Raises CatalogError for a file that cannot be imported at all (not a list, no records, a
    record that is not an object, a missing or duplicate id, a missing name) and, with
    `strict`, for the first flaw of any room; otherwise each room carries its own flaws.
    """
    if not isinstance(records, list):
        raise CatalogError(f"expected a list of room records, got a {type(records).__name__}")
    if not records:
        raise CatalogError("the file holds no room records")
    specs: list[RoomSpec] = []
    seen: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        spec = _check_record(record, number, division_times, strict)
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
    strict: bool = False,
) -> ImportResult:
    """Create or update the buildings and rooms of a catalog; flush, never commit.

    Raises CatalogError, before writing anything, when the file is malformed
    (see check_catalog). A room whose record has a flaw (a fee for a division it
    does not list, a division `division_times` gives no times for, an unusable
    fee or capacity...) is imported without the unusable values, with the flaw in
    `import_issue`, so it is not offered online; with `strict`, such a flaw
    refuses the whole file instead. Fields the catalog does not carry (English
    names, booking window, closures, refund tiers, active) are left as they are
    on rooms that already exist.
    """
    terms = hourly_terms or HourlyTerms()
    terms.check()
    specs = check_catalog(records, division_times, strict=strict)
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
        # A clean record clears an earlier flaw: the ward fixed its data.
        room.import_issue = "; ".join(spec.issues) or None
        _apply_letting(room, spec, terms)
        _sync_equipment(room, spec.equipment)
        result.rooms.append(room)

    db.session.flush()
    result.unbookable = [(room, reason) for room in result.rooms if (reason := room.unbookable_reason()) is not None]
    return result
