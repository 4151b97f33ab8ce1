"""Lottery rounds made through the services, once and committed: for the authorisation matrix, the back-office
page tour and the staff lottery tests. Each step passes its own `now`, so no clock needs to move.

The default rule (rounds.default_rule) lets June 2027 with: resident groups applying from 1 March, everyone else
from 1 April, applications until 10 April 23:59:59 JST, the draw on 11 April at 09:00, publication at 12:00,
payment by 20 April 23:59 and the release on 21 April at 09:00.

(Owned by the staff lottery pages' tests, tests/test_lottery_staff.py.)
"""
from datetime import date, timedelta

from sqlalchemy import select

from reservations.extensions import db
from reservations.models import LotteryRound, LotteryRoundRoom, Room, RoundState, User
from reservations.services.lottery import applications, rounds

MONTH = date(2027, 6, 1)
DAY = date(2027, 6, 7)  # a Monday in June 2027


def _existing(room_id: int, month: date) -> LotteryRound | None:
    return db.session.scalar(select(LotteryRound).join(LotteryRoundRoom).where(
        LotteryRoundRoom.room_id == room_id, LotteryRoundRoom.target_month == month))


def draft_round(room_id: int, staff_id: int, month: date = MONTH) -> int:
    """A draft round of the room for `month` (the one already there, if any)."""
    round_ = _existing(room_id, month)
    if round_ is None:
        round_ = rounds.create_round([db.session.get(Room, room_id)], month, staff=db.session.get(User, staff_id))
    round_id = round_.id
    db.session.commit()  # nothing left open: on SQLite the test's transaction would lock out a live server
    return round_id


def open_round(room_id: int, staff_id: int, month: date = MONTH) -> int:
    """The room's round for `month`, opened for applications."""
    round_id = draft_round(room_id, staff_id, month)
    round_ = db.session.get(LotteryRound, round_id)
    if round_.state == RoundState.DRAFT:
        rounds.open_round(round_, staff=db.session.get(User, staff_id))
    db.session.commit()
    return round_id


def published_round(room_id: int, staff_id: int, user_ids: list[int], month: date = MONTH) -> int:
    """The room's round for `month`, taken through every step to publication: each user applies for the
    afternoon of the 7th (and the first also for its morning), the draw is run and published."""
    round_id = open_round(room_id, staff_id, month)
    round_ = db.session.get(LotteryRound, round_id)
    staff = db.session.get(User, staff_id)
    if round_.state == RoundState.OPEN:
        day = month.replace(day=DAY.day)
        during = rounds.tier_opens_at(round_, 2) + timedelta(hours=1)
        for n, user_id in enumerate(user_ids):
            user = db.session.get(User, user_id)
            applications.apply(round_, user, day=day, parts=[applications.Part(room_id, ("AFTERNOON",))], now=during)
            if n == 0:
                applications.apply(round_, user, day=day, parts=[applications.Part(room_id, ("MORNING",))],
                                   now=during)
        rounds.freeze(round_, now=round_.apply_until + timedelta(seconds=1), actor_id=staff_id)
        rounds.fix_public_value(round_, "123456", "宝くじ 第1000回 2027-04-11", staff=staff,
                                now=round_.apply_until + timedelta(minutes=5))
        rounds.run_draw(round_, staff=staff, now=round_.draw_at)
        rounds.publish(round_, staff=staff, now=round_.publish_at)
    db.session.commit()
    return round_id
