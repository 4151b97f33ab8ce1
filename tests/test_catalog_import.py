"""`flask facilities import`: the ward catalogs become buildings, rooms, divisions and equipment."""
import json
from datetime import date, time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from reservations.cli import facility_data_dir
from reservations.extensions import db
from reservations.models import Building, Division, Letting, Room, RoomEquipment, RoomKind
from reservations.services.catalog import infer_room_kind
from reservations.services.pricing import quote
from reservations.services.rules import hourly_slot

CHUO_DIVISIONS = "MORNING=09:00-12:00,AFTERNOON=13:00-17:00,EVENING=18:00-21:00"
CHUO_TIMES = [("MORNING", time(9), time(12)), ("AFTERNOON", time(13), time(17)), ("EVENING", time(18), time(21))]


@pytest.fixture
def chuo_path(app):
    return facility_data_dir(app) / "tokyo-chuo.json"


@pytest.fixture
def meguro_path(app):
    return facility_data_dir(app) / "tokyo-meguro.json"


@pytest.fixture
def chuo_records(chuo_path) -> list[dict]:
    return json.loads(chuo_path.read_text(encoding="utf-8"))


@pytest.fixture
def import_file(runner):
    def run(path, divisions=CHUO_DIVISIONS, *options):
        args = ["facilities", "import", str(path)]
        if divisions is not None:
            args += ["--divisions", divisions]
        return runner.invoke(args=[*args, *options])

    return run


@pytest.fixture
def write_catalog(tmp_path):
    def write(records, name="catalog.json"):
        path = tmp_path / name
        path.write_text(records if isinstance(records, str) else json.dumps(records, ensure_ascii=False),
                        encoding="utf-8")
        return path

    return write


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def room_in(building: str, name: str) -> Room:
    return db.session.scalars(select(Room).join(Building).where(Building.name == building, Room.name == name)).one()


def fees_by_code(fee_list: list[dict]) -> dict[str, int]:
    return {item["division"].removeprefix("FEE_DIVISION_"): item["fee"] for item in fee_list}


def test_chuo_catalog_imports_every_room_with_its_divisions_and_fees(import_file, chuo_path, chuo_records):
    result = import_file(chuo_path)

    assert result.exit_code == 0, result.output
    assert "Buildings: 4 created, 0 updated." in result.output
    assert "Rooms: 7 created, 0 updated." in result.output
    assert "All 7 rooms are bookable online." in result.output
    assert count(Building) == 4
    assert count(Room) == 7
    for record in chuo_records:
        room = db.session.scalars(select(Room).filter_by(external_id=record["id"])).one()
        assert room.letting == Letting.DIVISION
        assert [(d.code, d.start_time, d.end_time) for d in room.divisions] == CHUO_TIMES
        assert {d.code: d.weekday_fee for d in room.divisions} == fees_by_code(record["weekday_usage_fee"])
        assert {d.code: d.holiday_fee for d in room.divisions} == fees_by_code(record["holiday_usage_fee"])
        assert room.bookable_online
    harumi_music = room_in("アートはるみ", "音楽室")
    assert {d.code: d.weekday_fee for d in harumi_music.divisions}["MORNING"] == 2800
    nihonbashi_floor = room_in("日本橋社会教育会館", "ホールフロア（床のみ）")
    assert {d.code: d.holiday_fee for d in nihonbashi_floor.divisions}["EVENING"] == 27900
    tsukishima_hall = room_in("月島社会教育会館", "ホール全体（舞台・客席付）")
    assert {d.code: d.holiday_fee for d in tsukishima_hall.divisions}["AFTERNOON"] == 17500


def test_chuo_rooms_keep_kana_capacity_area_kind_and_equipment(import_file, chuo_path):
    assert import_file(chuo_path).exit_code == 0

    harumi = db.session.scalars(select(Building).filter_by(name="アートはるみ")).one()
    assert harumi.external_key == "MUNICIPALITY_CHUO:アートはるみ"
    assert harumi.name_kana == "アートハルミ"
    assert harumi.address == "東京都中央区晴海1丁目4番1号"
    music = room_in("アートはるみ", "音楽室")
    assert music.name_kana == "オンガクシツ"
    assert (music.capacity, music.area_m2, music.kind) == (35, Decimal("78.00"), RoomKind.MUSIC_ROOM)
    # Piano EQUIPPED and every *_AVAILABLE use present; music stand UNKNOWN is not.
    assert music.equipment_codes() == {"piano", "strings", "woodwind", "brass", "percussion"}
    hall = room_in("日本橋社会教育会館", "ホール全体（舞台・客席付）")
    assert (hall.kind, hall.area_m2) == (RoomKind.HALL, Decimal("230.50"))
    assert "piano" not in hall.equipment_codes()  # EQUIPMENT_DIVISION_UNEQUIPPED


def test_meguro_rooms_are_imported_but_none_is_bookable_without_fees(import_file, meguro_path):
    result = import_file(meguro_path)

    assert result.exit_code == 0, result.output
    assert "Buildings: 36 created, 0 updated." in result.output
    assert "Rooms: 177 created, 0 updated." in result.output
    assert "177 rooms not bookable online: no fees" in result.output
    assert count(Building) == 36
    assert count(Room) == 177
    assert count(Division) == 177 * 3
    assert db.session.scalar(select(func.count(Room.id)).where(Room.capacity.is_not(None))) == 0
    rooms = db.session.scalars(select(Room)).all()
    assert {room.unbookable_reason() for room in rooms} == {"no fees"}


def test_reimport_updates_in_place_and_never_duplicates(import_file, chuo_path):
    assert import_file(chuo_path).exit_code == 0
    division_ids = set(db.session.scalars(select(Division.id)))
    before = [count(m) for m in (Building, Room, Division, RoomEquipment)]

    again = import_file(chuo_path)

    assert again.exit_code == 0, again.output
    assert "Buildings: 0 created, 4 updated." in again.output
    assert "Rooms: 0 created, 7 updated." in again.output
    assert [count(m) for m in (Building, Room, Division, RoomEquipment)] == before
    assert set(db.session.scalars(select(Division.id))) == division_ids


def test_a_changed_file_updates_fees_equipment_and_divisions_in_place(
    import_file, chuo_path, chuo_records, write_catalog
):
    assert import_file(chuo_path).exit_code == 0
    music = room_in("アートはるみ", "音楽室")
    morning_id = next(d.id for d in music.divisions if d.code == "MORNING")
    changed = chuo_records[0]
    assert changed["building"] == "アートはるみ" and changed["institution"] == "音楽室"
    changed["weekday_usage_fee"][0] = {"division": "FEE_DIVISION_MORNING", "fee": 3000}
    changed["is_equipped_piano"] = "EQUIPMENT_DIVISION_UNEQUIPPED"
    changed["is_equipped_music_stand"] = "EQUIPMENT_DIVISION_EQUIPPED"
    changed["capacity"] = 0
    # The evening division is no longer let.
    changed["fee_divisions"].remove("FEE_DIVISION_EVENING")
    for fees in ("weekday_usage_fee", "holiday_usage_fee"):
        changed[fees] = [f for f in changed[fees] if f["division"] != "FEE_DIVISION_EVENING"]

    result = import_file(write_catalog(chuo_records))

    assert result.exit_code == 0, result.output
    db.session.expire_all()
    music = room_in("アートはるみ", "音楽室")
    morning = next(d for d in music.divisions if d.code == "MORNING")
    assert (morning.id, morning.weekday_fee, morning.holiday_fee) == (morning_id, 3000, 2800)
    assert [d.code for d in music.divisions] == ["MORNING", "AFTERNOON"]
    assert music.equipment_codes() == {"music_stand", "strings", "woodwind", "brass", "percussion"}
    assert music.capacity is None
    assert (count(Building), count(Room), count(Division)) == (4, 7, 20)


def test_one_hour_and_two_hour_fees_make_rooms_let_by_the_hour(import_file, write_catalog):
    def record(external_id, name, unit, weekday, holiday):
        return {
            "id": external_id, "municipality": "MUNICIPALITY_TEST", "building": "テスト運動場",
            "institution": name, "capacity": 4, "area": 0,
            "fee_divisions": [f"FEE_DIVISION_{unit}"],
            "weekday_usage_fee": [{"division": f"FEE_DIVISION_{unit}", "fee": weekday}],
            "holiday_usage_fee": [{"division": f"FEE_DIVISION_{unit}", "fee": holiday}],
        }

    path = write_catalog([
        record("court-1", "テニスコート1", "ONE_HOUR", 1000, 1300),
        record("gym-1", "第一体育室", "TWO_HOUR", 3000, 4000),
    ])

    # No --divisions at all: hourly rates need no division times.
    result = import_file(path, None, "--hourly-hours", "08:00-22:00", "--hourly-max", "180")

    assert result.exit_code == 0, result.output
    court = db.session.scalars(select(Room).filter_by(external_id="court-1")).one()
    gym = db.session.scalars(select(Room).filter_by(external_id="gym-1")).one()
    assert (court.kind, gym.kind) == (RoomKind.COURT, RoomKind.GYM)
    for room, unit, weekday, holiday in ((court, 60, 1000, 1300), (gym, 120, 3000, 4000)):
        assert room.letting == Letting.HOURLY
        assert room.divisions == []
        assert (room.weekday_hourly_fee, room.holiday_hourly_fee, room.hourly_unit_minutes) == (weekday, holiday, unit)
        assert (room.open_time, room.close_time) == (time(8), time(22))
        assert (room.min_minutes, room.max_minutes, room.step_minutes) == (60, 180, 60)
        assert room.bookable_online
    # Two hours on a weekday (Tuesday 8 January 2030): twice the hourly rate, once the two-hour rate.
    tuesday = date(2030, 1, 8)
    assert quote(court, hourly_slot(court, tuesday, time(10), 120), "resident").total == 2000
    assert quote(gym, hourly_slot(gym, tuesday, time(10), 120), "resident").total == 3000


def _set(path: str, value):
    """A change to one record: "3.capacity" or "6.weekday_usage_fee.0.fee"."""

    def change(records):
        *keys, last = path.split(".")
        target = records
        for key in keys:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[int(last) if isinstance(target, list) else last] = value
        return records

    return change


def _delete(index: int, key: str):
    def change(records):
        del records[index][key]
        return records

    return change


MALFORMED = {
    "not JSON": (lambda records: "[{not json", ["not valid JSON", "line 1"]),
    "not a list": (lambda records: {"rooms": records}, ["expected a JSON list", "dict"]),
    "a record that is not an object": (lambda records: [*records, "音楽室"], ["record 8", "must be an object"]),
    "no id": (_delete(2, "id"), ["record 3", "'id'", "missing"]),
    "no building": (_set("1.building", ""), ["record 2", "'building'", "missing"]),
    "no institution": (_delete(0, "institution"), ["record 1", "'institution'", "missing"]),
    "a negative fee": (_set("0.weekday_usage_fee.0.fee", -100), ["'weekday_usage_fee[0].fee'", "-100"]),
    "a fee as text": (_set("3.holiday_usage_fee.2.fee", "3600"), ["record 4", "'holiday_usage_fee[2].fee'"]),
    "a fractional fee": (_set("2.weekday_usage_fee.1.fee", 14600.5), ["record 3", "non-negative integer"]),
    "a fee that is true": (_set("2.weekday_usage_fee.1.fee", True), ["record 3", "non-negative integer"]),
    "an unknown division in a fee list": (
        _set("4.holiday_usage_fee.1.division", "FEE_DIVISION_NIGHT"),
        ["record 5", "'holiday_usage_fee[1].division'", "unknown division 'FEE_DIVISION_NIGHT'"],
    ),
    "a bad last record after good ones": (_set("6.capacity", -5), ["record 7", "'capacity'", "-5"]),
    "the same id twice": (_set("6.id", "01c4f022-c037-4157-9acc-9560394dc4f2"),
                          ["record 7", "also the id of record 1"]),
}


@pytest.mark.parametrize("case", MALFORMED.keys())
def test_a_malformed_file_is_refused_and_imports_nothing(case, import_file, chuo_records, write_catalog):
    change, expected = MALFORMED[case]

    result = import_file(write_catalog(change(chuo_records)))

    assert result.exit_code != 0
    assert "Nothing was imported." in result.output
    for text in expected:
        assert text in result.output
    assert (count(Building), count(Room), count(Division), count(RoomEquipment)) == (0, 0, 0, 0)


def test_a_refused_reimport_leaves_the_previous_catalog_as_it_was(import_file, chuo_path, chuo_records, write_catalog):
    assert import_file(chuo_path).exit_code == 0
    chuo_records[0]["weekday_usage_fee"][0]["fee"] = 9999  # a good change ...
    chuo_records[-1]["holiday_usage_fee"][0]["fee"] = -1  # ... in a file with a bad last record

    result = import_file(write_catalog(chuo_records))

    assert result.exit_code != 0
    db.session.expire_all()
    music = room_in("アートはるみ", "音楽室")
    assert {d.code: d.weekday_fee for d in music.divisions}["MORNING"] == 2800


def test_a_division_without_clock_times_is_refused(import_file, chuo_path):
    result = import_file(chuo_path, "MORNING=09:00-12:00,AFTERNOON=13:00-17:00")

    assert result.exit_code != 0
    assert "no clock times for division EVENING" in result.output
    assert "--divisions" in result.output
    assert (count(Building), count(Room)) == (0, 0)


@pytest.mark.parametrize("spec, message", [
    ("MORNING=9時-12時", "is not a time range like 09:00-12:00"),
    ("MORNING=12:00-09:00", "the end must be after the start"),
    ("MORNING", "is not NAME=HH:MM-HH:MM"),
    ("MORNING=09:00-12:00,MORNING=13:00-17:00", "MORNING is given twice"),
])
def test_unreadable_division_times_are_refused(spec, message, import_file, chuo_path):
    result = import_file(chuo_path, spec)

    assert result.exit_code != 0
    assert message in result.output
    assert count(Room) == 0


@pytest.mark.parametrize("name, kind", [
    ("音楽室", RoomKind.MUSIC_ROOM),
    ("第１練習室", RoomKind.MUSIC_ROOM),
    ("リハーサル室", RoomKind.MUSIC_ROOM),
    ("ホール全体（舞台・客席付）", RoomKind.HALL),
    ("中目黒ＧＴプラザホール", RoomKind.HALL),
    ("１０１【旧第１会議室】", RoomKind.MEETING_ROOM),
    ("４０１【旧第２洋室】", RoomKind.MEETING_ROOM),
    ("２０３（和室）【旧第１会議室】", RoomKind.JAPANESE_ROOM),
    ("８０３(調理室)【旧第５研修室】", RoomKind.KITCHEN),
    ("５０１（卓球室）", RoomKind.GYM),
    ("６０１（洋弓場）", RoomKind.GYM),
    ("テニスコートA", RoomKind.COURT),
    ("３０１（視聴覚室）", RoomKind.STUDIO),
    ("保育室", RoomKind.OTHER),
])
def test_room_kind_is_inferred_from_the_japanese_name(name, kind):
    assert infer_room_kind(name) == kind
