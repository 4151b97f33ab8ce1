"""The opening rush's data (bench/rush.py): rooms whose divisions on one bookable day are wanted by many residents.

`seed(app, residents, divisions)` makes one building, ceil(divisions / 3) rooms let in Chuo's three
divisions (午前 MORNING, 午後 AFTERNOON, 夜間 EVENING), one more room for the in-process query count,
`residents` verified resident accounts and two probe accounts, all with one password hashed once by the
app's own hasher (User.set_password, as outside tests). The day is the first one from the day after
tomorrow on that every hot division may be booked online now (services/rules.check_bookable: inside the
booking window, not closed, not for a lottery). Resident n wants hot division n % divisions.
"""
import math
from dataclasses import dataclass
from datetime import date, time, timedelta

from sqlalchemy import insert

from reservations.extensions import db
from reservations.models import Building, Division, Letting, Room, User
from reservations.services import rules
from reservations.services.errors import BookingError
from reservations.timeutil import business_date, now_utc

PASSWORD = "rush-bench-password-1"
DIVISIONS = (("MORNING", time(9), time(12), 2200), ("AFTERNOON", time(13), time(17), 3000),
             ("EVENING", time(18), time(21), 2600))


@dataclass
class Plan:
    day: date
    targets: list[tuple[int, str]]  # the hot divisions, (room id, division code)
    hot_rooms: list[int]
    emails: list[str]  # resident n wants targets[n % len(targets)]
    probe_room: int
    probe_emails: tuple[str, str]

    def target_of(self, n: int) -> tuple[int, str]:
        return self.targets[n % len(self.targets)]


def _room(building: Building, n: int) -> Room:
    room = Room(building=building, name=f"集会室{n}", name_en=f"Meeting room {n}", kind="meeting_room",
                capacity=30, letting=Letting.DIVISION)
    for position, (code, start, end, fee) in enumerate(DIVISIONS):
        room.divisions.append(Division(code=code, position=position, start_time=start, end_time=end,
                                       weekday_fee=fee, holiday_fee=fee))
    return room


def _bookable_day(rooms: list[Room]) -> date:
    now = now_utc()
    for ahead in range(2, 120):
        day = business_date(now) + timedelta(days=ahead)
        try:
            for room in rooms:
                for code, *_ in DIVISIONS:
                    rules.check_bookable(room, rules.division_slot(room, day, [code]), now)
        except BookingError:
            continue
        return day
    raise SystemExit("no day in the next 120 is bookable online for the seeded rooms")


def _password_hash() -> str:
    user = User()
    user.set_password(PASSWORD)
    return user.password_hash


def seed(app, residents: int, divisions: int) -> Plan:
    """Everything the rush needs, in the app's (empty, migrated) database."""
    with app.app_context():
        building = Building(name="ベンチ区民館", name_kana="ベンチクミンカン", name_en="Bench community hall",
                            address="東京都中央区1-1-1")
        rooms = [_room(building, n + 1) for n in range(math.ceil(divisions / len(DIVISIONS)))]
        probe = _room(building, len(rooms) + 1)
        db.session.add_all([building, *rooms, probe])
        db.session.commit()
        day = _bookable_day([*rooms, probe])
        now = now_utc()
        hashed = _password_hash()
        emails = [f"rush{n:05d}@example.com" for n in range(residents)]
        probe_emails = ("rush-probe-a@example.com", "rush-probe-b@example.com")
        db.session.execute(insert(User), [
            dict(email=email, name=f"住民{n}", name_kana="ジュウミン", password_hash=hashed, residency="resident",
                 role="resident", email_verified_at=now, created_at=now)
            for n, email in enumerate([*emails, *probe_emails])])
        db.session.commit()
        codes = [code for code, *_ in DIVISIONS]
        targets = [(rooms[k // len(codes)].id, codes[k % len(codes)]) for k in range(divisions)]
        plan = Plan(day, targets, [r.id for r in rooms], emails, probe.id, probe_emails)
        db.session.remove()
    return plan
