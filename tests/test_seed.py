"""`flask seed-demo`: the demo data `make run` loads on every start."""
import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from reservations.cli import DEMO_PASSWORD, facility_data_dir
from reservations.extensions import db
from reservations.models import (
    Building,
    Closure,
    ClosureKind,
    Division,
    Letting,
    Residency,
    Role,
    Room,
    RoomEquipment,
    User,
)
from reservations.services.rules import closure_reason

DEMO_ACCOUNTS = {
    "resident@example.com": (Role.RESIDENT, Residency.RESIDENT),
    "nonresident@example.com": (Role.RESIDENT, Residency.OUTSIDE),
    "staff@example.com": (Role.STAFF, Residency.WORKER),
    "finance@example.com": (Role.FINANCE, Residency.WORKER),
    "admin@example.com": (Role.ADMIN, Residency.WORKER),
}


@pytest.fixture
def seed(runner):
    def run():
        return runner.invoke(args=["seed-demo"])

    return run


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def snapshot() -> list[int]:
    return [count(m) for m in (Building, Room, Division, RoomEquipment, Closure, User)]


def room(external_id: str) -> Room:
    return db.session.scalars(select(Room).filter_by(external_id=external_id)).one()


def test_seed_loads_chuo_the_sports_centre_and_prints_the_demo_accounts(seed):
    result = seed()

    assert result.exit_code == 0, result.output
    assert count(Building) == 5  # Chuo's four and the sports centre
    assert count(Room) == 7 + 4
    names_en = dict(db.session.execute(select(Building.name, Building.name_en)).all())
    assert names_en["アートはるみ"] == "Art Harumi"
    assert names_en["築地社会教育会館"] == "Tsukiji Social Education Hall"
    assert names_en["月島社会教育会館"] == "Tsukishima Social Education Hall"
    assert names_en["日本橋社会教育会館"] == "Nihonbashi Social Education Hall"
    rooms_en = {(r.building.name, r.name): r.name_en for r in db.session.scalars(select(Room))}
    assert rooms_en[("アートはるみ", "音楽室")] == "Music room"
    assert rooms_en[("月島社会教育会館", "ホール全体（舞台・客席付）")] == "Whole hall (stage and seats)"
    assert rooms_en[("日本橋社会教育会館", "ホールフロア（床のみ）")] == "Hall floor only"
    chuo_rooms = db.session.scalars(select(Room).where(Room.external_id.not_like("demo-%"))).all()
    assert all(r.bookable_online and [d.code for d in r.divisions] == ["MORNING", "AFTERNOON", "EVENING"]
               for r in chuo_rooms)
    for email in DEMO_ACCOUNTS:
        assert email in result.output
    assert DEMO_PASSWORD in result.output


def test_social_education_halls_close_on_the_second_monday(seed):
    assert seed().exit_code == 0

    closures = db.session.scalars(select(Closure)).all()
    assert len(closures) == 6
    assert {(c.kind, c.weekday, c.nth, c.reason) for c in closures} == {(ClosureKind.MONTHLY, 0, 2, "定期休館日")}
    closed = {db.session.get(Room, c.room_id).building.name for c in closures}
    assert closed == {"築地社会教育会館", "月島社会教育会館", "日本橋社会教育会館"}
    tsukiji = db.session.scalars(select(Room).join(Building).where(Building.name == "築地社会教育会館")).one()
    harumi = db.session.scalars(select(Room).join(Building).where(Building.name == "アートはるみ")).one()
    # January 2030: Mondays fall on the 7th and the 14th.
    assert closure_reason(tsukiji, date(2030, 1, 14)) == "定期休館日"
    assert closure_reason(tsukiji, date(2030, 1, 7)) is None
    assert closure_reason(harumi, date(2030, 1, 14)) is None


def test_the_sports_centre_lets_courts_and_a_gym_by_the_hour(seed):
    assert seed().exit_code == 0

    court = room("demo-court-a")
    assert court.building.name == "中央区立総合スポーツセンター"
    assert (court.letting, court.kind) == (Letting.HOURLY, "court")
    assert (court.weekday_hourly_fee, court.holiday_hourly_fee, court.hourly_unit_minutes) == (1000, 1300, 60)
    assert (court.min_minutes, court.max_minutes, court.step_minutes) == (60, 120, 60)
    assert room("demo-court-b").bookable_online
    assert room("demo-gym-1").kind == "gym"
    assert room("demo-studio").kind == "studio"
    assert all(room(i).bookable_online for i in ("demo-court-a", "demo-court-b", "demo-gym-1", "demo-studio"))


def test_demo_users_exist_for_every_role_and_can_log_in(seed):
    assert seed().exit_code == 0

    for email, (role, residency) in DEMO_ACCOUNTS.items():
        user = db.session.scalars(select(User).filter_by(email=email)).one()
        assert (user.role, user.residency) == (role, residency)
        assert user.check_password(DEMO_PASSWORD)
        assert not user.check_password("wrong password")


def test_seeding_twice_changes_nothing_and_keeps_what_people_changed(seed):
    assert seed().exit_code == 0
    before = snapshot()
    resident = db.session.scalars(select(User).filter_by(email="resident@example.com")).one()
    resident.set_password("my own password")
    harumi = db.session.scalars(select(Building).filter_by(name="アートはるみ")).one()
    harumi.name_en = "Harumi Arts Centre"
    db.session.commit()

    again = seed()

    assert again.exit_code == 0, again.output
    assert "Rooms: 0 created, 7 updated, 0 not bookable online." in again.output
    assert snapshot() == before
    db.session.expire_all()
    resident = db.session.scalars(select(User).filter_by(email="resident@example.com")).one()
    assert resident.check_password("my own password")
    assert not resident.check_password(DEMO_PASSWORD)
    assert db.session.scalars(select(Building.name_en).filter_by(name="アートはるみ")).one() == "Harumi Arts Centre"


def test_a_bare_clone_seeds_from_the_repository_data_folder(seed, app, monkeypatch):
    """Nothing beside the clone: with FACILITY_DATA_DIR unset the catalogs come from data/facilities."""
    monkeypatch.delenv("FACILITY_DATA_DIR", raising=False)
    repository = Path(__file__).resolve().parent.parent
    data = repository / "data" / "facilities"
    assert facility_data_dir(app) == data
    assert {"tokyo-chuo.json", "tokyo-meguro.json", "LICENSE", "README.md"} <= {p.name for p in data.iterdir()}
    assert "MIT License" in (data / "LICENSE").read_text(encoding="utf-8")

    result = seed()

    assert result.exit_code == 0, result.output
    assert f"Chuo catalog ({data / 'tokyo-chuo.json'}):" in result.output
    assert "Rooms: 7 created, 0 updated, 0 not bookable online." in result.output
    assert count(Room) == 7 + 4


def test_facility_data_dir_can_be_overridden(seed, app, monkeypatch, tmp_path):
    records = json.loads((facility_data_dir(app) / "tokyo-chuo.json").read_text(encoding="utf-8"))
    records[0]["weekday_usage_fee"][0]["fee"] = 1234
    (tmp_path / "tokyo-chuo.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("FACILITY_DATA_DIR", str(tmp_path))

    assert seed().exit_code == 0

    assert {d.code: d.weekday_fee for d in room(records[0]["id"]).divisions}["MORNING"] == 1234


def test_a_missing_data_dir_is_a_clear_error_and_seeds_nothing(seed, monkeypatch, tmp_path):
    monkeypatch.setenv("FACILITY_DATA_DIR", str(tmp_path / "nowhere"))

    result = seed()

    assert result.exit_code != 0
    assert str(tmp_path / "nowhere") in result.output
    assert "FACILITY_DATA_DIR" in result.output
    assert snapshot() == [0, 0, 0, 0, 0, 0]
