"""`flask facilities import`: the ward catalogs become buildings, rooms, divisions and equipment."""
import json
from datetime import date, time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from reservations.cli import facility_data_dir
from reservations.extensions import db
from reservations.models import Building, Division, Letting, Room, RoomEquipment, RoomKind
from reservations.services import rules
from reservations.services.catalog import infer_room_kind
from reservations.services.errors import BookingError
from reservations.services.pricing import quote
from reservations.services.rules import division_slot, hourly_slot
from tests.helpers import booking_day

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
    assert "Rooms: 7 created, 0 updated, 0 not bookable online." in result.output
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
    assert "Rooms: 177 created, 0 updated, 177 not bookable online." in result.output
    assert "177 rooms not bookable online: no fees" in result.output
    assert count(Building) == 36
    assert count(Room) == 177
    assert count(Division) == 177 * 3
    assert db.session.scalar(select(func.count(Room.id)).where(Room.capacity.is_not(None))) == 0
    rooms = db.session.scalars(select(Room)).all()
    assert {room.unbookable_reason() for room in rooms} == {"no fees"}
    # Each room is named in the summary with its reason; no fees is the data's gap, not a flaw
    # to fix in the record, so no import issue is stored (fees entered later make it bookable).
    for room in rooms:
        assert f"  {room.external_id} {room.building.name} {room.name}: no fees" in result.output
        assert room.import_issue is None


def test_reimport_updates_in_place_and_never_duplicates(import_file, chuo_path):
    assert import_file(chuo_path).exit_code == 0
    division_ids = set(db.session.scalars(select(Division.id)))
    before = [count(m) for m in (Building, Room, Division, RoomEquipment)]

    again = import_file(chuo_path)

    assert again.exit_code == 0, again.output
    assert "Buildings: 0 created, 4 updated." in again.output
    assert "Rooms: 0 created, 7 updated, 0 not bookable online." in again.output
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
    "an empty list": (lambda records: [], ["holds no room records"]),
    "a record that is not an object": (lambda records: [*records, "音楽室"], ["record 8", "must be an object"]),
    "no id": (_delete(2, "id"), ["record 3", "'id'", "missing"]),
    "an id that is not text": (_set("4.id", 12345), ["record 5", "'id'", "must be text"]),
    "no building": (_set("1.building", ""), ["record 2", "'building'", "missing"]),
    "no institution": (_delete(0, "institution"), ["record 1", "'institution'", "missing"]),
    "the same id twice": (_set("6.id", "01c4f022-c037-4157-9acc-9560394dc4f2"),
                          ["record 7", "also the id of record 1"]),
}


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
@pytest.mark.parametrize("case", MALFORMED.keys())
def test_a_malformed_file_is_refused_and_imports_nothing(case, strict, import_file, chuo_records, write_catalog):
    change, expected = MALFORMED[case]

    result = import_file(write_catalog(change(chuo_records)), CHUO_DIVISIONS, *(["--strict"] if strict else []))

    assert result.exit_code != 0
    assert "Nothing was imported." in result.output
    for text in expected:
        assert text in result.output
    assert (count(Building), count(Room), count(Division), count(RoomEquipment)) == (0, 0, 0, 0)


# A flaw in one room's record: (change, record index, what the summary and Room.import_issue say).
ROOM_FLAWS = {
    "a negative fee": (_set("0.weekday_usage_fee.0.fee", -100), 0, ["'weekday_usage_fee[0].fee'", "-100"]),
    "a fee as text": (_set("3.holiday_usage_fee.2.fee", "3600"), 3, ["'holiday_usage_fee[2].fee'", "'3600'"]),
    "a fractional fee": (_set("2.weekday_usage_fee.1.fee", 14600.5), 2, ["non-negative integer", "14600.5"]),
    "a fee that is true": (_set("2.weekday_usage_fee.1.fee", True), 2, ["non-negative integer", "True"]),
    "a fee for a division the room does not list": (
        _set("4.holiday_usage_fee.1.division", "FEE_DIVISION_NIGHT"), 4,
        ["'holiday_usage_fee[1].division'", "unknown division 'FEE_DIVISION_NIGHT'"],
    ),
    "an unusable capacity in the last record": (_set("6.capacity", -5), 6, ["'capacity'", "-5"]),
    "a capacity as text": (_set("5.capacity", "35名"), 5, ["'capacity'", "'35名'"]),
    "a bad division name": (_set("1.fee_divisions.0", "FEE_DIVISION_INVALID"), 1,
                            ["'fee_divisions[0]'", "FEE_DIVISION_INVALID"]),
    "an equipment flag that is not text": (_set("0.is_equipped_piano", True), 0, ["'is_equipped_piano'"]),
}


@pytest.mark.parametrize("case", ROOM_FLAWS.keys())
def test_a_flaw_in_one_room_imports_that_room_as_not_bookable_and_the_rest_as_usual(
        case, import_file, chuo_records, write_catalog):
    change, index, expected = ROOM_FLAWS[case]
    records = change(chuo_records)
    flawed_id = records[index]["id"]

    result = import_file(write_catalog(records))

    assert result.exit_code == 0, result.output
    assert "Rooms: 7 created, 0 updated, 1 not bookable online." in result.output
    assert "1 room not bookable online: catalog flaw" in result.output
    flawed = db.session.scalars(select(Room).filter_by(external_id=flawed_id)).one()
    line = next(line for line in result.output.splitlines() if flawed_id in line)
    assert line.startswith(f"  {flawed_id} {flawed.building.name} {flawed.name}: catalog flaw: field ")
    for text in expected:
        assert text in line and text in flawed.import_issue
    assert not flawed.bookable_online and flawed.unbookable_reason() == f"catalog flaw: {flawed.import_issue}"
    others = db.session.scalars(select(Room).where(Room.external_id != flawed_id)).all()
    assert len(others) == 6 and all(r.bookable_online and r.import_issue is None for r in others)


@pytest.mark.parametrize("case", ROOM_FLAWS.keys())
def test_strict_refuses_the_whole_file_for_a_flaw_in_one_room(case, import_file, chuo_records, write_catalog):
    change, index, expected = ROOM_FLAWS[case]

    result = import_file(write_catalog(change(chuo_records)), CHUO_DIVISIONS, "--strict")

    assert result.exit_code != 0
    assert "Nothing was imported." in result.output
    assert f"record {index + 1} (id " in result.output
    for text in expected:
        assert text in result.output
    assert (count(Building), count(Room), count(Division), count(RoomEquipment)) == (0, 0, 0, 0)


def _ward_record(external_id, name, divisions, weekday, holiday, **fields):
    """A record as the shisetsu-viewer data has them; fees as {division: yen}."""
    return {
        "id": external_id, "municipality": "MUNICIPALITY_TEST", "prefecture": "PREFECTURE_TOKYO",
        "building": "テスト区民センター", "building_kana": "テストクミンセンター", "institution": name,
        "capacity": 30, "area": 50, "fee_divisions": [f"FEE_DIVISION_{d}" for d in divisions],
        "weekday_usage_fee": [{"division": f"FEE_DIVISION_{d}", "fee": f} for d, f in weekday.items()],
        "holiday_usage_fee": [{"division": f"FEE_DIVISION_{d}", "fee": f} for d, f in holiday.items()],
        **fields,
    }


WARD_FEES = {"MORNING": 1200, "AFTERNOON": 1600, "EVENING": 1800}


def test_a_ward_file_with_typical_flaws_imports_every_room_and_names_each_unbookable_one(
        import_file, write_catalog, now):
    path = write_catalog([
        _ward_record("ok", "第1会議室", WARD_FEES, WARD_FEES, WARD_FEES),
        # Fees name a division the room's fee_divisions do not list (午後① in a room let in 午後).
        _ward_record("unlisted", "第2会議室", WARD_FEES, {**WARD_FEES, "AFTERNOON_ONE": 800}, WARD_FEES),
        # A division with no times given on the command line.
        _ward_record("untimed", "音楽室", ["MORNING", "MORNING_TWO"], {"MORNING": 900, "MORNING_TWO": 900},
                     {"MORNING": 900, "MORNING_TWO": 900}),
        # No fees at all, as Meguro publishes its rooms.
        _ward_record("nofees", "和室", WARD_FEES, {}, {}),
        # An unusable capacity.
        _ward_record("capacity", "第3会議室", WARD_FEES, WARD_FEES, WARD_FEES, capacity="約30名"),
    ])

    result = import_file(path)

    assert result.exit_code == 0, result.output
    assert "Rooms: 5 created, 0 updated, 4 not bookable online." in result.output
    assert "3 rooms not bookable online: catalog flaw" in result.output
    assert "1 room not bookable online: no fees" in result.output
    lines = result.output.splitlines()
    assert ("  unlisted テスト区民センター 第2会議室: catalog flaw: field 'weekday_usage_fee[3].division': "
            "unknown division 'FEE_DIVISION_AFTERNOON_ONE'; the record's fee_divisions are "
            "FEE_DIVISION_MORNING, FEE_DIVISION_AFTERNOON, FEE_DIVISION_EVENING") in lines
    assert ("  untimed テスト区民センター 音楽室: catalog flaw: field 'fee_divisions': no clock times for "
            "division MORNING_TWO: give them in --divisions (e.g. MORNING_TWO=HH:MM-HH:MM)") in lines
    assert "  nofees テスト区民センター 和室: no fees" in lines
    assert "  capacity テスト区民センター 第3会議室: catalog flaw: field 'capacity': must be a non-negative integer, " \
           "got '約30名'" in lines
    assert not any(line.startswith("  ok ") for line in lines)

    rooms = {r.external_id: r for r in db.session.scalars(select(Room))}
    assert rooms["ok"].bookable_online
    # What could be read is kept: the listed divisions and their fees, the timed divisions.
    assert {d.code: d.weekday_fee for d in rooms["unlisted"].divisions} == WARD_FEES
    assert [d.code for d in rooms["untimed"].divisions] == ["MORNING"]
    assert rooms["capacity"].capacity is None
    assert rooms["nofees"].import_issue is None
    # Not bookable means never offered online: the booking rules refuse each of them.
    day = booking_day()
    for external_id in ("unlisted", "untimed", "nofees", "capacity"):
        room = rooms[external_id]
        with pytest.raises(BookingError) as refused:
            rules.check_bookable(room, division_slot(room, day, ["MORNING"]), now)
        assert refused.value.code == "not_bookable"
    rules.check_bookable(rooms["ok"], division_slot(rooms["ok"], day, ["MORNING"]), now)


def test_a_flawed_room_shows_as_not_bookable_on_its_page(client, import_file, write_catalog):
    path = write_catalog([_ward_record("unlisted", "第2会議室", WARD_FEES, {**WARD_FEES, "NIGHT": 800}, WARD_FEES)])
    assert import_file(path).exit_code == 0
    room = db.session.scalars(select(Room)).one()

    page = client.get(f"/rooms/{room.id}").get_data(as_text=True)

    assert "この施設はまだインターネット予約に対応していません。" in page
    assert 'class="calendar"' not in page  # no calendar, no day to choose


def test_a_clean_reimport_clears_the_flaw_and_the_room_becomes_bookable(
        import_file, chuo_path, chuo_records, write_catalog):
    chuo_records[-1]["holiday_usage_fee"][0]["fee"] = -1
    assert import_file(write_catalog(chuo_records)).exit_code == 0
    last = db.session.scalars(select(Room).filter_by(external_id=chuo_records[-1]["id"])).one()
    assert "holiday_usage_fee[0].fee" in last.import_issue and not last.bookable_online

    again = import_file(chuo_path)

    assert again.exit_code == 0, again.output
    assert "Rooms: 0 created, 7 updated, 0 not bookable online." in again.output
    db.session.expire_all()
    last = db.session.scalars(select(Room).filter_by(external_id=chuo_records[-1]["id"])).one()
    assert last.import_issue is None and last.bookable_online


def test_a_refused_strict_reimport_leaves_the_previous_catalog_as_it_was(
        import_file, chuo_path, chuo_records, write_catalog):
    assert import_file(chuo_path).exit_code == 0
    chuo_records[0]["weekday_usage_fee"][0]["fee"] = 9999  # a good change ...
    chuo_records[-1]["holiday_usage_fee"][0]["fee"] = -1  # ... in a file with a bad last record

    result = import_file(write_catalog(chuo_records), CHUO_DIVISIONS, "--strict")

    assert result.exit_code != 0
    db.session.expire_all()
    music = room_in("アートはるみ", "音楽室")
    assert {d.code: d.weekday_fee for d in music.divisions}["MORNING"] == 2800
    assert all(r.import_issue is None for r in db.session.scalars(select(Room)))


def test_a_division_without_clock_times_makes_those_rooms_unbookable(import_file, chuo_path):
    result = import_file(chuo_path, "MORNING=09:00-12:00,AFTERNOON=13:00-17:00")

    assert result.exit_code == 0, result.output
    assert "Rooms: 7 created, 0 updated, 7 not bookable online." in result.output
    assert result.output.count("no clock times for division EVENING: give them in --divisions") == 7
    rooms = db.session.scalars(select(Room)).all()
    assert len(rooms) == 7
    assert all(not r.bookable_online and [d.code for d in r.divisions] == ["MORNING", "AFTERNOON"] for r in rooms)


def test_strict_refuses_a_division_without_clock_times(import_file, chuo_path):
    result = import_file(chuo_path, "MORNING=09:00-12:00,AFTERNOON=13:00-17:00", "--strict")

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
