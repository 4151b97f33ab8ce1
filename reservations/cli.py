"""Flask commands: `flask facilities import`, `flask seed-demo`.

Commands are the unit of work: the services they call only flush, and each
command commits once at the end, or rolls back and exits non-zero.
"""
import json
import os
from contextlib import contextmanager
from datetime import time, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from .extensions import db
from .models import Building, Closure, ClosureKind, Letting, Residency, Role, Room, RoomKind, User
from .services.catalog import (
    CatalogError,
    HourlyTerms,
    import_catalog,
    parse_division_times,
    parse_time_range,
    read_catalog,
)
from .timeutil import now_utc


@contextmanager
def all_or_nothing(failure: str, nothing: str):
    """A command's one transaction: committed at the end, or rolled back with a clear error."""
    try:
        yield
    except CatalogError as exc:
        db.session.rollback()
        raise click.ClickException(f"{failure}: {exc}\n{nothing}") from None
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()


facilities = AppGroup("facilities", help="Manage the facility catalog (buildings and rooms).")


@facilities.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--divisions",
    "division_spec",
    default="",
    metavar="NAME=HH:MM-HH:MM,...",
    help="Clock times of the divisions the file uses, e.g. "
    '"MORNING=09:00-12:00,AFTERNOON=13:00-17:00,EVENING=18:00-21:00".',
)
@click.option("--hourly-hours", default="09:00-21:00", show_default=True,
              help="Opening hours of rooms let by the hour (ONE_HOUR / TWO_HOUR rates).")
@click.option("--hourly-min", type=click.IntRange(min=1), default=60, show_default=True,
              help="Shortest booking of an hourly room, in minutes.")
@click.option("--hourly-max", type=click.IntRange(min=1), default=None,
              help="Longest booking of an hourly room, in minutes (default: no limit).")
@click.option("--hourly-step", type=click.IntRange(min=1), default=60, show_default=True,
              help="Booking step of an hourly room, in minutes.")
@click.option("--strict", is_flag=True,
              help="Refuse the whole file for a flaw in any room, instead of importing that room "
                   "as not bookable online.")
def import_facilities(file: Path, division_spec: str, hourly_hours: str, hourly_min: int,
                      hourly_max: int | None, hourly_step: int, strict: bool) -> None:
    """Create or update buildings and rooms from a catalog FILE (JSON); re-running updates in place.

    A room whose record has a flaw is imported as not bookable online, with the reason in the
    summary; a malformed file (or, with --strict, any flaw) imports nothing and exits non-zero.
    """
    with all_or_nothing(f"cannot import {file}", "Nothing was imported."):
        opens, closes = parse_time_range(hourly_hours)
        terms = HourlyTerms(opens, closes, hourly_min, hourly_max, hourly_step)
        result = import_catalog(read_catalog(file), parse_division_times(division_spec), hourly_terms=terms,
                                strict=strict)
    for line in result.summary():
        click.echo(line)


# -- Demo seed ----------------------------------------------------------------

CHUO_CATALOG = "tokyo-chuo.json"
CHUO_DIVISIONS = "MORNING=09:00-12:00,AFTERNOON=13:00-17:00,EVENING=18:00-21:00"
CHUO_BUILDINGS_EN = {
    "アートはるみ": "Art Harumi",
    "築地社会教育会館": "Tsukiji Social Education Hall",
    "月島社会教育会館": "Tsukishima Social Education Hall",
    "日本橋社会教育会館": "Nihonbashi Social Education Hall",
}
CHUO_ROOMS_EN = {
    "音楽室": "Music room",
    "ホール全体（舞台・客席付）": "Whole hall (stage and seats)",
    "ホールフロア（床のみ）": "Hall floor only",
}
# The 社会教育会館 close on the second Monday of every month.
MONTHLY_CLOSURE = {"kind": ClosureKind.MONTHLY, "weekday": 0, "nth": 2, "reason": "定期休館日"}

SPORTS_CENTRE = {
    "external_key": "demo:中央区立総合スポーツセンター",
    "name": "中央区立総合スポーツセンター",
    "name_kana": "チュウオウクリツソウゴウスポーツセンター",
    "name_en": "Chuo Sports Centre",
    "address": "東京都中央区日本橋浜町2-59-1",
}
SPORTS_ROOMS = [
    {"external_id": "demo-court-a", "name": "テニスコートA", "name_kana": "テニスコートエー",
     "name_en": "Tennis court A", "kind": RoomKind.COURT, "capacity": 4,
     "weekday_hourly_fee": 1000, "holiday_hourly_fee": 1300, "max_minutes": 120},
    {"external_id": "demo-court-b", "name": "テニスコートB", "name_kana": "テニスコートビー",
     "name_en": "Tennis court B", "kind": RoomKind.COURT, "capacity": 4,
     "weekday_hourly_fee": 1000, "holiday_hourly_fee": 1300, "max_minutes": 120},
    {"external_id": "demo-gym-1", "name": "第一体育室", "name_kana": "ダイイチタイイクシツ",
     "name_en": "Gymnasium 1", "kind": RoomKind.GYM, "capacity": 150,
     "weekday_hourly_fee": 2600, "holiday_hourly_fee": 3400, "max_minutes": 180},
    {"external_id": "demo-studio", "name": "スタジオ（小）", "name_kana": "スタジオ（ショウ）",
     "name_en": "Small studio", "kind": RoomKind.STUDIO, "capacity": 15,
     "weekday_hourly_fee": 700, "holiday_hourly_fee": 900, "max_minutes": 180},
]
SPORTS_HOURS = {"open_time": time(9), "close_time": time(21), "min_minutes": 60, "step_minutes": 60,
                "hourly_unit_minutes": 60}

DEMO_PASSWORD = "demo-password"
DEMO_USERS = [
    ("resident@example.com", "中央 太郎", Role.RESIDENT, Residency.RESIDENT),
    ("nonresident@example.com", "区外 花子", Role.RESIDENT, Residency.OUTSIDE),
    ("staff@example.com", "窓口 職員", Role.STAFF, Residency.WORKER),
    ("finance@example.com", "会計 担当", Role.FINANCE, Residency.WORKER),
    ("admin@example.com", "管理 者", Role.ADMIN, Residency.WORKER),
]


def facility_data_dir(app: Flask) -> Path:
    """Where the ward catalogs live: $FACILITY_DATA_DIR, else the repository's own data/facilities,
    so that a bare clone seeds its demo with nothing beside it."""
    override = os.environ.get("FACILITY_DATA_DIR")
    return Path(override) if override else Path(app.root_path).parent / "data" / "facilities"


def _name_chuo_in_english(rooms: list[Room]) -> None:
    """English names for the demo; a name someone has already set is kept."""
    for room in rooms:
        room.name_en = room.name_en or CHUO_ROOMS_EN.get(room.name, "")
        room.building.name_en = room.building.name_en or CHUO_BUILDINGS_EN.get(room.building.name, "")


def _close_monthly(rooms: list[Room]) -> int:
    added = 0
    for room in rooms:
        if "社会教育会館" not in room.building.name:
            continue
        if not any(c.kind == MONTHLY_CLOSURE["kind"] and c.weekday == MONTHLY_CLOSURE["weekday"]
                   and c.nth == MONTHLY_CLOSURE["nth"] for c in room.closures):
            room.closures.append(Closure(**MONTHLY_CLOSURE))
            added += 1
    return added


def _seed_sports_centre() -> int:
    """The demo sports centre: courts, a gym and a studio let by the hour. Existing rooms are left alone."""
    building = db.session.scalar(select(Building).filter_by(external_key=SPORTS_CENTRE["external_key"]))
    if building is None:
        building = Building(**SPORTS_CENTRE)
        db.session.add(building)
    existing = set(db.session.scalars(
        select(Room.external_id).where(Room.external_id.in_([r["external_id"] for r in SPORTS_ROOMS]))
    ))
    created = 0
    for fields in SPORTS_ROOMS:
        if fields["external_id"] not in existing:
            db.session.add(Room(building=building, letting=Letting.HOURLY, **SPORTS_HOURS, **fields))
            created += 1
    return created


def _seed_users() -> list[tuple[User, bool]]:
    """One demo user per role, and a non-resident; existing users keep their password."""
    users = []
    for email, name, role, residency in DEMO_USERS:
        user = db.session.scalar(select(User).filter_by(email=email))
        created = user is None
        if created:
            user = User(email=email, name=name, role=role, residency=residency, email_verified_at=now_utc())
            user.set_password(DEMO_PASSWORD)
            if role == Role.STAFF:  # the demo's member of staff runs every demo building
                db.session.flush()
                user.buildings = list(db.session.scalars(select(Building).order_by(Building.id)))
            db.session.add(user)
        users.append((user, created))
    return users


DEMO_EXEMPTIONS = [
    # code, ja, en, rate, legal ground, eligible, needs approval
    ("WARD100", "区主催・共催事業", "The ward's own events", 100, "中央区立社会教育会館条例施行規則 第10条第1号",
     "ward", True),
    ("WELFARE50", "福祉団体の活動", "Registered welfare groups", 50, "中央区立社会教育会館条例施行規則 第10条第2号",
     "welfare", False),
    ("SCHOOL50", "区立学校の行事", "Ward schools' events", 50, "中央区立社会教育会館条例施行規則 第10条第3号",
     "school", True),
]
DEMO_GROUP_MEMBERS = [
    ("中央 太郎", "チュウオウ タロウ", "03-1111-0001"), ("佃 花子", "ツクダ ハナコ", "03-1111-0002"),
    ("月島 一郎", "ツキシマ イチロウ", "03-1111-0003"), ("勝どき 二郎", "カチドキ ジロウ", "03-1111-0004"),
    ("晴海 三子", "ハルミ ミツコ", "03-1111-0005"),
]


def _seed_exemptions_groups_and_lottery(users: list[tuple[User, bool]]) -> list[str]:
    """Exemption kinds, one active resident group (its representative: resident@example.com) and a lottery
    round taking applications now for a hall three months ahead. Existing ones are left alone."""
    from .models import ExemptionKind, Group, GroupMember, GroupStatus, LotteryRound
    from .services.groups import identity_key
    from .services.lottery.rounds import DEFAULT_TIER_MONTHS, LAST_INSTANT_OF_THE_DAY, create_round, open_round
    from .timeutil import at_tokyo, business_date, shift_months

    said = []
    for code, ja, en, rate, ground, eligible, approval in DEMO_EXEMPTIONS:
        if db.session.scalar(select(ExemptionKind).filter_by(code=code)) is None:
            db.session.add(ExemptionKind(code=code, name_ja=ja, name_en=en, rate_pct=rate, legal_ground=ground,
                                         eligible=eligible, needs_approval=approval))
            said.append(f"exemption kind {code} ({rate}%)")
    by_email = {user.email: user for user, _ in users}
    resident, staff = by_email["resident@example.com"], by_email["staff@example.com"]
    today = business_date(now_utc())
    if db.session.scalar(select(Group).filter_by(representative_id=resident.id)) is None:
        group = Group(name="中央区民合唱団", name_kana="チュウオウクミンガッショウダン", representative_id=resident.id,
                      contact_name=resident.name, contact_email=resident.email, contact_phone="03-1111-0001",
                      category="general", purpose="合唱の練習と年2回の発表会", activity_kind="音楽",
                      member_count=len(DEMO_GROUP_MEMBERS), resident_count=len(DEMO_GROUP_MEMBERS),
                      status=GroupStatus.ACTIVE, valid_until=shift_months(today, 12), reviewed_by_id=staff.id,
                      reviewed_at=now_utc())
        group.members = [GroupMember(name=n, name_kana=k, phone=p, residency="resident",
                                     identity=identity_key(n, k, p), user_id=resident.id if i == 0 else None)
                         for i, (n, k, p) in enumerate(DEMO_GROUP_MEMBERS)]
        db.session.add(group)
        said.append(f"group {group.name} (active)")
    hall = db.session.scalar(select(Room).where(Room.letting == Letting.DIVISION, Room.active.is_(True),
                                                Room.import_issue.is_(None))
                             .order_by((Room.kind != RoomKind.HALL), Room.id))
    month = shift_months(today.replace(day=1), 3)
    if hall is not None and db.session.scalar(select(LotteryRound).filter_by(target_month=month)) is None:
        db.session.flush()
        start = at_tokyo(today - timedelta(days=1), time(0))
        close = at_tokyo(today + timedelta(days=9), time(0)) + LAST_INSTANT_OF_THE_DAY
        round_ = create_round([hall], month, staff=staff, title=f"{hall.name} {month:%Y年%m月} 抽選", overrides={
            "tier_windows": {tier: start for tier in DEFAULT_TIER_MONTHS}, "apply_until": close,
            "draw_at": close + timedelta(hours=9), "publish_at": close + timedelta(hours=12),
            "pay_by": close + timedelta(days=9, hours=-1), "release_at": close + timedelta(days=10, hours=9)})
        open_round(round_, staff=staff)
        said.append(f"lottery round {round_.key} ({hall.name}, {month:%Y-%m}), open until {close:%Y-%m-%d} JST")
    return said


@click.command("seed-demo")
@with_appcontext
def seed_demo() -> None:
    """Load the demo: Chuo's catalog, a sports centre, closures and one user per role. Safe to re-run."""
    path = facility_data_dir(current_app) / CHUO_CATALOG
    if not path.is_file():
        raise click.ClickException(
            f"the Chuo catalog is not at {path}; set FACILITY_DATA_DIR to the folder that holds {CHUO_CATALOG}"
        )
    with all_or_nothing(f"cannot seed the demo from {path}", "Nothing was seeded."):
        result = import_catalog(read_catalog(path), parse_division_times(CHUO_DIVISIONS))
        _name_chuo_in_english(result.rooms)
        closures = _close_monthly(result.rooms)
        sports = _seed_sports_centre()
        users = _seed_users()
        db.session.flush()
        lottery = _seed_exemptions_groups_and_lottery(users)

    click.echo(f"Chuo catalog ({path}):")
    for line in result.summary():
        click.echo(f"  {line}")
    click.echo(f"Closures: {closures} added (社会教育会館, 2nd Monday of the month).")
    click.echo(f"Sports centre: {sports} hourly rooms created.")
    for line in lottery:
        click.echo(f"Lottery and exemptions: {line}.")
    click.echo(f"Demo accounts (password {DEMO_PASSWORD!r} for accounts created by the seed):")
    for user, created in users:
        state = "created" if created else "already there, left unchanged"
        click.echo(f"  {user.email:<26} {DEMO_PASSWORD:<14} role={user.role:<9} "
                   f"residency={user.residency:<9} ({state})")


lottery = AppGroup("lottery", help="The lottery draw (抽選).")


@lottery.command("verify")
@click.argument("round_or_file")
def lottery_verify(round_or_file: str) -> None:
    """Reproduce a published draw from its inputs: ROUND is a round's key (e.g. 2027-06-12) or a published
    JSON file (manifest, revealed secret, public value, result, log), which needs no database.

    Exits 0 when the result hash and the log are reproduced exactly, 1 with what differs otherwise."""
    from .services.lottery.draw import verify

    path = Path(round_or_file)
    if path.is_file():
        try:
            document = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"not a published draw (JSON): {exc}") from None
    else:
        from .models import LotteryRound, RoundState

        round_ = db.session.scalar(select(LotteryRound).where(LotteryRound.key == round_or_file))
        if round_ is None:
            raise click.ClickException(f"no round {round_or_file!r} and no such file")
        if round_.state in (RoundState.DRAFT, RoundState.OPEN, RoundState.CLOSED, RoundState.DRAWN):
            raise click.ClickException(f"round {round_.key} is {round_.state}: nothing is published yet")
        document = round_.publication
    if not isinstance(document, dict):
        raise click.ClickException("not a published draw (JSON object)")
    try:
        problems = verify(document)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise click.ClickException(f"not a published draw: {exc!r}") from None
    for problem in problems:
        click.echo(f"differs: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"reproduced: result hash {document['result_hash']}")


def register(app: Flask) -> None:
    app.cli.add_command(facilities)
    app.cli.add_command(seed_demo)
    app.cli.add_command(lottery)
