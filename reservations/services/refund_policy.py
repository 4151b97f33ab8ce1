"""The refund policy: what a cancellation gives back, by tiers worded as ward rules word them.

A tier reads 「使用日の7日前まで 100%」: cancelled by the end of the calendar day (Asia/Tokyo)
that lies 7 days before the day of use, 100 % of the fee comes back. "N months before" is the
same day number N months earlier, clamped to that month's end (use on 31 March, 1 month: until
the end of 28 or 29 February). The day of use is the business date of the start in Tokyo.

Tiers are stored in `refund_tiers`: by room kind (the defaults below, seeded by migration 0005
as examples a ward edits to its own ordinance), or for one room, whose own tiers replace its
kind's. Of the tiers whose cut-off has not passed, the highest percentage applies; after the
last, nothing. A cancellation the resident is not responsible for refunds 100 % whatever the
date (services.cancellation.cancel_for_ward_reason).
"""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import inspect, select

from ..extensions import db
from ..models import Booking, PaymentState, RefundTier, RefundUnit, Room, RoomKind
from ..timeutil import at_tokyo, business_date, shift_months

# Examples of ward rules, seeded per kind by migration 0005 (unit, count, percent):
#   a hall, booked long ahead and hard to let again late: 100 % until 2 months before, 50 % until 30 days;
#   meeting rooms and the like, as many ordinances word it: 50 % until 5 days before, else nothing;
#   music rooms, studios, gyms, courts: 100 % until 7 days before, 50 % until 2 days.
KIND_DEFAULTS: dict[str, tuple[tuple[str, int, int], ...]] = {
    RoomKind.HALL: ((RefundUnit.MONTHS, 2, 100), (RefundUnit.DAYS, 30, 50)),
    RoomKind.MEETING_ROOM: ((RefundUnit.DAYS, 5, 50),),
    RoomKind.JAPANESE_ROOM: ((RefundUnit.DAYS, 5, 50),),
    RoomKind.KITCHEN: ((RefundUnit.DAYS, 5, 50),),
}
# Every other kind. These defaults apply to a kind that has no tiers in the database; tiers stored
# for a kind replace them (a kind whose rooms refund nothing has one tier of 0 %).
GENERAL_DEFAULT: tuple[tuple[str, int, int], ...] = ((RefundUnit.DAYS, 7, 100), (RefundUnit.DAYS, 2, 50))


@dataclass(frozen=True)
class Tier:
    unit: str
    count: int
    percent: int

    def last_day(self, day_of_use: date) -> date:
        """The last calendar day on which this tier still applies."""
        if self.unit == RefundUnit.MONTHS:
            return shift_months(day_of_use, -self.count)
        return day_of_use - timedelta(days=self.count)


@dataclass(frozen=True)
class Cutoff:
    """One tier for one booking: `percent` back if cancelled before `ends_at` (the next Tokyo midnight)."""

    last_day: date
    ends_at: datetime
    percent: int
    tier: Tier


def kind_tiers(kind: str) -> list[Tier]:
    stored = db.session.scalars(select(RefundTier).where(RefundTier.room_kind == kind)).all()
    if stored:
        return [Tier(t.unit, t.count, t.percent) for t in stored]
    return _defaults(kind)


def _defaults(kind: str) -> list[Tier]:
    return [Tier(*t) for t in KIND_DEFAULTS.get(kind, GENERAL_DEFAULT)]


def tiers_for(room: Room) -> list[Tier]:
    """The room's tiers (its own, else its kind's), earliest cut-off first. A room loaded with its
    `policy_tiers` (both at once) is judged on them without asking the database."""
    if "policy_tiers" not in inspect(room).unloaded:
        own = [t for t in room.policy_tiers if t.room_id == room.id]
        kinds = [t for t in room.policy_tiers if t.room_id is None and t.room_kind == room.kind]
        tiers = [Tier(t.unit, t.count, t.percent) for t in own or kinds] or _defaults(room.kind)
    else:
        tiers = [Tier(t.unit, t.count, t.percent) for t in room.refund_tiers] or kind_tiers(room.kind)
    # A month is at least 28 days: ordering by it is exact for the usual tiers and only for
    # display when a months tier and a days tier nearly coincide.
    return sorted(tiers, key=lambda t: (-(t.count * 28 if t.unit == RefundUnit.MONTHS else t.count), -t.percent))


def refund_schedule(room: Room, start_at: datetime) -> list[Cutoff]:
    """The room's policy for a slot as dated cut-offs, earliest first."""
    day_of_use = business_date(start_at)
    cutoffs = []
    for tier in tiers_for(room):
        last = tier.last_day(day_of_use)
        cutoffs.append(Cutoff(last, at_tokyo(last + timedelta(days=1), time(0)), tier.percent, tier))
    return sorted(cutoffs, key=lambda c: (c.ends_at, -c.percent))


def percent_at(schedule: list[Cutoff], start_at: datetime, now: datetime) -> int:
    if now >= start_at:
        return 0
    return max((c.percent for c in schedule if now < c.ends_at), default=0)


def refund_percent(booking: Booking, now: datetime) -> int:
    """The percentage the room's policy gives back if the resident cancels at `now`."""
    return percent_at(refund_schedule(booking.room, booking.start_at), booking.start_at, now)


def refund_if_cancelled(booking: Booking, now: datetime,
                        schedule: list[Cutoff] | None = None) -> tuple[int, int] | None:
    """(percent, yen) that cancelling at `now` gives back; None when nothing was paid.

    Pass the booking's `schedule` when the caller has it already: building it reads the tiers.
    """
    payment = booking.payment
    if payment is None or payment.state != PaymentState.CAPTURED:
        return None
    if schedule is None:
        schedule = refund_schedule(booking.room, booking.start_at)
    percent = percent_at(schedule, booking.start_at, now)
    return percent, min(payment.captured_amount * percent // 100, payment.refundable)


def set_room_policy(room: Room, tiers: list[tuple[str, int, int]] | None) -> None:
    """Give a room its own tiers [(unit, count, percent)], or None to follow its kind again."""
    room.refund_tiers = [RefundTier(unit=unit, count=count, percent=percent) for unit, count, percent in tiers or ()]


def set_kind_policy(kind: str, tiers: list[tuple[str, int, int]]) -> None:
    """Replace a room kind's default tiers (what a ward's ordinance says for that kind)."""
    for old in db.session.scalars(select(RefundTier).where(RefundTier.room_kind == kind)):
        db.session.delete(old)
    db.session.flush()
    db.session.add_all(RefundTier(room_kind=kind, unit=unit, count=count, percent=percent)
                       for unit, count, percent in tiers)
    db.session.flush()
