"""Lottery rounds for the resident tour (tests/e2e/tour.py): one published, with the tour resident's entries
(a win to pay, and perhaps a loss), and one open for applications; made once per world, idempotent.

Everything runs through the services at moments before the real clock (the served app reads the real one):
applications are filed at the counter by a member of staff, so the resident's unconfirmed address in the
signed-in walk does not matter, and the published round's win waits for its payment until its deadline.
"""
import uuid
from datetime import timedelta

from sqlalchemy import select

from reservations.extensions import db
from reservations.models import LotteryRound, LotteryRoundRoom, Role, Room, User
from reservations.services.lottery import rounds
from reservations.services.lottery.applications import Part, apply
from reservations.timeutil import business_date, now_utc, shift_months
from tests.conftest import weekday_on_or_after

PUBLIC_VALUE = "1234567890"
PUBLIC_VALUE_SOURCE = "宝くじ当せん番号"


def _windows(now, *, opens, closes, draws, pays, releases) -> dict:
    return {"tier_windows": {1: now + opens, 2: now + opens}, "apply_until": now + closes, "draw_at": now + draws,
            "publish_at": now + draws + timedelta(hours=1), "pay_by": now + pays, "release_at": now + releases}


def tour_rounds(world) -> dict[str, str]:
    """{"published": key, "open": key, "month": "YYYY-MM" of the published round's month, "open_day": a day the open
    round lets} for the world's room."""
    user_id, room_id = int(world.user_key.split(":")[0]), world.room_id
    this_month = business_date(now_utc()).replace(day=1)
    published_month, open_month = shift_months(this_month, 3), shift_months(this_month, 4)
    existing = db.session.scalars(select(LotteryRound).join(LotteryRoundRoom).where(
        LotteryRoundRoom.room_id == room_id).order_by(LotteryRound.target_month)).all()
    if len(existing) < 2:
        now = now_utc()
        room = db.session.get(Room, room_id)
        resident = db.session.get(User, user_id)
        staff = User(email=f"lottery.staff.{uuid.uuid4().hex[:6]}@example.com", name="抽選 係", role=Role.STAFF,
                     email_verified_at=now, buildings=[room.building])
        neighbour = User(email=f"neighbour.{uuid.uuid4().hex[:6]}@example.com", name="隣 太郎",
                         email_verified_at=now)
        for person in (staff, neighbour):
            person.set_password("correct horse battery")
        db.session.add_all([staff, neighbour])
        db.session.flush()

        published = rounds.create_round([room], published_month, staff=staff, now=now - timedelta(days=20),
                                        overrides=_windows(now, opens=timedelta(days=-10), closes=timedelta(days=-5),
                                                           draws=timedelta(days=-4), pays=timedelta(days=10),
                                                           releases=timedelta(days=11)))
        rounds.open_round(published, staff=staff)
        day = weekday_on_or_after(published_month.replace(day=8), 1)
        filed = now - timedelta(days=8)
        for user, code in ((resident, "AFTERNOON"), (resident, "EVENING"), (neighbour, "AFTERNOON")):
            apply(published, user, day=day, parts=[Part(room.id, (code,))], actor=staff, now=filed)
        closed = published.apply_until + timedelta(minutes=1)
        rounds.freeze(published, now=closed)
        rounds.fix_public_value(published, PUBLIC_VALUE, PUBLIC_VALUE_SOURCE, staff=staff,
                                now=closed + timedelta(minutes=1))
        rounds.run_draw(published, staff=staff, now=published.draw_at)
        rounds.publish(published, staff=staff, now=published.publish_at)

        open_round = rounds.create_round([room], open_month, staff=staff, now=now - timedelta(days=2),
                                         overrides=_windows(now, opens=timedelta(days=-1), closes=timedelta(days=20),
                                                            draws=timedelta(days=21), pays=timedelta(days=25),
                                                            releases=timedelta(days=26)))
        rounds.open_round(open_round, staff=staff)
        apply(open_round, resident, day=weekday_on_or_after(open_month.replace(day=8), 1),
              parts=[Part(room.id, ("MORNING",))], actor=staff, now=now - timedelta(hours=1))
        db.session.commit()
        existing = [published, open_round]
    keys = {"published": existing[0].key, "open": existing[1].key, "month": f"{published_month:%Y-%m}",
            "open_day": weekday_on_or_after(open_month.replace(day=15), 2).isoformat()}
    db.session.rollback()
    return keys
