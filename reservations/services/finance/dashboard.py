"""The finance dashboard's figures, read from the ledger and the calendar; each function defines one exactly.

- revenue per day per building (`revenue_by_day`): the ledger's money by 日計表 day, fees apart;
- the cashless share by month (`cashless_share`): of the fees collected, how much was not cash;
- occupancy per room and division (`occupancy`): booked slots out of open slots in a month;
- refund lead time (`refund_lead_times`): from the cancellation to the money back, median and p90.

Everything is in integer yen and Tokyo days. Each function reads with a fixed number of queries, whatever
the number of rows, and returns plain dataclasses the page draws and tabulates.
"""
import calendar
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from ...extensions import db
from ...models import (
    AuditEntry,
    Booking,
    BookingKind,
    BookingState,
    Building,
    LedgerEntry,
    Letting,
    Payment,
    Refund,
    Room,
)
from ...models.payment import RefundState
from ...timeutil import at_tokyo, business_date
from ..availability import room_units
from ..ledger import FEE_KINDS
from ..rules import closure_reason

REVENUE_DAYS = 30  # the default period: today and the 29 Tokyo days before it
CASHLESS = ("card", "terminal")  # online by card, and a card on the counter's terminal
METHOD_ORDER = ("card", "terminal", "cash")
BOOKED_STATES = (BookingState.CONFIRMED, BookingState.COMPLETED, BookingState.NO_SHOW)
WHOLE_ROOM = None  # the division of an hourly room: its hours are counted as one whole
# A counter refund's ledger row is written under "<where>-refund-<our refund id>" (services/refunds.py).
REFUND_REFERENCE = re.compile(r"-refund-(\d+)$")


# -- periods ----------------------------------------------------------------------------------------

def month_days(first: date) -> tuple[date, date]:
    """The first and last day of the month of `first`."""
    return first.replace(day=1), first.replace(day=calendar.monthrange(first.year, first.month)[1])


def last_days(today: date, days: int = REVENUE_DAYS) -> tuple[date, date]:
    """The last `days` Tokyo days, today included: (today − days + 1, today)."""
    return today - timedelta(days=days - 1), today


def fiscal_months(year: int) -> list[date]:
    """The first days of the twelve months of fiscal year `year`: April `year` to March `year + 1`."""
    return [date(year + (m < 4), m, 1) for m in (4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3)]


def fiscal_days(year: int) -> tuple[date, date]:
    """1 April `year` to 31 March `year + 1`."""
    return date(year, 4, 1), date(year + 1, 3, 31)


def _in_building(statement, column, building_id: int | None):
    return statement if building_id is None else statement.where(column == building_id)


# -- revenue per day per building -------------------------------------------------------------------

@dataclass
class RevenueDay:
    """One building's money on one 日計表 day, in signed yen as the ledger holds it.

    collected: captures (card, cash, terminal); returned: refunds, refund reversals, dispute withdrawals and
    reinstatements (negative when money went out); net = collected + returned, what the day leaves as
    revenue; fees: the provider's fee rows and fees it gave back (役務費), an expense, never in net
    (総計予算主義).
    """

    day: date
    collected: int = 0
    returned: int = 0
    fees: int = 0

    @property
    def net(self) -> int:
        return self.collected + self.returned


@dataclass
class BuildingRevenue:
    building: Building
    days: list[RevenueDay]  # the days with a movement, in order

    def total(self, name: str) -> int:
        return sum(getattr(d, name) for d in self.days)


def revenue_by_day(first: date, last: date, building_id: int | None = None) -> list[BuildingRevenue]:
    """Revenue per day per building: the ledger rows whose business_date (the 日計表 day they count on, so a
    late movement counts on the day it was booked) is from `first` to `last` inclusive, summed by
    business_date × building: net = captures + refunds + disputes (everything but the fee rows, ledger.FEE_KINDS);
    the fee rows are summed apart. Buildings with no row in the period are left out, as are days with no row."""
    statement = (select(LedgerEntry.building_id, LedgerEntry.business_date, LedgerEntry.kind,
                        func.sum(LedgerEntry.amount))
                 .where(LedgerEntry.business_date >= first, LedgerEntry.business_date <= last)
                 .group_by(LedgerEntry.building_id, LedgerEntry.business_date, LedgerEntry.kind))
    days: dict[int, dict[date, RevenueDay]] = defaultdict(dict)
    for building, day, kind, amount in db.session.execute(_in_building(statement, LedgerEntry.building_id,
                                                                       building_id)):
        row = days[building].setdefault(day, RevenueDay(day))
        if kind in FEE_KINDS:
            row.fees += amount
        elif kind == "capture":
            row.collected += amount
        else:  # refunds, their reversals, dispute withdrawals and reinstatements
            row.returned += amount
    buildings = _buildings(days)
    return [BuildingRevenue(buildings[b], sorted(days[b].values(), key=lambda d: d.day)) for b in sorted(days)]


def _buildings(ids) -> dict[int, Building]:
    if not ids:
        return {}
    return {b.id: b for b in db.session.scalars(select(Building).where(Building.id.in_(list(ids))))}


# -- the cashless share -----------------------------------------------------------------------------

@dataclass
class MethodTotal:
    count: int = 0
    amount: int = 0


@dataclass
class MonthShare:
    """The fees collected in one month by method: card (online), terminal (a card at the counter), cash."""

    month: date  # its first day
    methods: dict[str, MethodTotal] = field(default_factory=lambda: {m: MethodTotal() for m in METHOD_ORDER})

    def _share(self, name: str) -> float | None:
        total = sum(getattr(t, name) for t in self.methods.values())
        if not total:
            return None
        return 100 * sum(getattr(self.methods[m], name) for m in CASHLESS) / total

    @property
    def amount_share(self) -> float | None:
        """Card and terminal yen out of all yen collected, in percent; None when nothing was collected."""
        return self._share("amount")

    @property
    def count_share(self) -> float | None:
        """Card and terminal payments out of all payments, in percent; None when there were none."""
        return self._share("count")

    def method_share(self, method: str) -> float | None:
        """One method's yen out of all yen collected, in percent."""
        total = sum(t.amount for t in self.methods.values())
        return 100 * self.methods[method].amount / total if total else None

    @property
    def empty(self) -> bool:
        return not any(t.count for t in self.methods.values())


def cashless_share(year: int, building_id: int | None = None) -> list[MonthShare]:
    """The cashless share by month of fiscal year `year`: the capture rows (the fees collected: card online,
    cash and terminal at the counter; refunds and disputes do not count) by the month of their 納付日
    (paid_on), counted and summed by method. The share is (card + terminal) ÷ all, by yen and by count; the
    ward's goal is 100 %. Twelve months, April to March, each present even when empty."""
    first, last = fiscal_days(year)
    statement = (select(LedgerEntry.paid_on, LedgerEntry.method, func.count(), func.sum(LedgerEntry.amount))
                 .where(LedgerEntry.kind == "capture", LedgerEntry.paid_on >= first, LedgerEntry.paid_on <= last)
                 .group_by(LedgerEntry.paid_on, LedgerEntry.method))
    months = {m: MonthShare(m) for m in fiscal_months(year)}
    for paid_on, method, count, amount in db.session.execute(_in_building(statement, LedgerEntry.building_id,
                                                                          building_id)):
        total = months[paid_on.replace(day=1)].methods[method]
        total.count += count
        total.amount += amount
    return list(months.values())


def year_share(months: list[MonthShare]) -> MonthShare:
    """The months added up: the whole year's counts, yen and shares (dated its first month)."""
    year = MonthShare(months[0].month)
    for month in months:
        for method, total in month.methods.items():
            year.methods[method].count += total.count
            year.methods[method].amount += total.amount
    return year


# -- occupancy --------------------------------------------------------------------------------------

@dataclass
class Occupancy:
    """Booked slots out of open slots for one room and division (or an hourly room's hours as one whole)."""

    room: Room
    division: str | None  # the division's code; WHOLE_ROOM (None) for an hourly room
    booked: int = 0
    open: int = 0

    @property
    def share(self) -> float | None:
        """Booked ÷ open, in percent; None when nothing was open (closed all month, or no slots)."""
        return 100 * self.booked / self.open if self.open else None


def occupancy(month: date, building_id: int | None = None) -> list[Occupancy]:
    """Occupancy per room and division in the month of `month`, for the rooms in use (Room.active).

    A slot is one division of a day for a room let in divisions; for an hourly room one step of its opening
    hours (services/availability.room_units), and the room's steps are counted as one whole (WHOLE_ROOM), not
    by hour band. Slots open: every slot of every day the room is not closed (services/rules.closure_reason:
    the year-end break, weekly, monthly and one-off closures), less the slots a staff block holds (time
    taken out of letting, like a closure). Booked: the open slots that a booking (not a block) in state
    confirmed, completed (used) or no_show overlaps; holds, cancellations and lapsed holds do not count.
    Slots are counted by today's divisions and hours of the room. Past and future days of the month alike.
    """
    first, last = month_days(month)
    rooms = _in_building(select(Room).where(Room.active.is_(True)), Room.building_id, building_id)
    rooms = list(db.session.scalars(rooms.options(selectinload(Room.divisions), selectinload(Room.closures),
                                                  joinedload(Room.building))
                                    .order_by(Room.building_id, Room.id)))
    taken = _taken_spans([r.id for r in rooms], at_tokyo(first, datetime.min.time()),
                         at_tokyo(last + timedelta(days=1), datetime.min.time()))
    figures = []
    for room in rooms:
        by_division = {d.code: Occupancy(room, d.code) for d in room.divisions}
        whole = Occupancy(room, WHOLE_ROOM)
        for offset in range(last.day):
            day = first + timedelta(days=offset)
            if closure_reason(room, day):
                continue
            spans = taken[room.id, day]
            for code, start, end in room_units(room, day):
                figure = by_division.get(code, whole)
                kinds = {kind for s, e, kind in spans if s < end and e > start}
                if BookingKind.BLOCK in kinds:
                    continue
                figure.open += 1
                figure.booked += bool(kinds)
        figures += list(by_division.values()) if room.letting == Letting.DIVISION else [whole]
    return figures


def _taken_spans(room_ids: list[int], start: datetime, end: datetime) -> dict[tuple[int, date], list]:
    """The (start, end, kind) of each booking or block of these rooms in a booked state between start and
    end, by room and by each Tokyo day it touches: one query for all the rooms."""
    spans: dict[tuple[int, date], list] = defaultdict(list)
    if room_ids:
        rows = db.session.execute(select(Booking.room_id, Booking.start_at, Booking.end_at, Booking.kind).where(
            Booking.room_id.in_(room_ids), Booking.state.in_(BOOKED_STATES),
            Booking.start_at < end, Booking.end_at > start))
        for room_id, s, e, kind in rows:
            day, last = business_date(s), business_date(e - timedelta(microseconds=1))
            while day <= last:
                spans[room_id, day].append((s, e, kind))
                day += timedelta(days=1)
    return spans


def occupancy_by_building(figures: list[Occupancy]) -> list[tuple[Building, int, int]]:
    """The same slots added up per building: (building, booked, open), in the order of the figures."""
    totals: dict[int, list] = {}
    for f in figures:
        row = totals.setdefault(f.room.building_id, [f.room.building, 0, 0])
        row[1] += f.booked
        row[2] += f.open
    return [tuple(row) for row in totals.values()]


# -- refund lead time -------------------------------------------------------------------------------

def nearest_rank(values: list[float], percent: int) -> float:
    """The nearest-rank percentile: the value at rank ⌈percent × n / 100⌉ (1-based) of the values in order,
    i.e. the smallest value with at least `percent` % of the values at or below it. Always one of the values,
    never interpolated: of 10 values the p90 is the 9th smallest, of 11 the 10th, of 1 that one."""
    ordered = sorted(values)
    rank = -(-percent * len(ordered) // 100)  # integer ceiling: no float rounding at the boundary
    return ordered[max(rank, 1) - 1]


@dataclass
class MonthLeadTime:
    """The refunds whose money went back in one month, and how long each took, in seconds."""

    month: date
    seconds: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.seconds)

    @property
    def median(self) -> float | None:
        """The median (statistics.median: the mean of the two middle values when the count is even)."""
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def p90(self) -> float | None:
        """The 90th percentile, nearest rank (see nearest_rank)."""
        return nearest_rank(self.seconds, 90) if self.seconds else None


@dataclass
class LeadTimes:
    months: list[MonthLeadTime]
    unknown_start: int  # refund rows whose refund record and cancellation were both not found: left out
    pending: int  # refunds recorded and not yet back (state pending), now
    oldest_pending: datetime | None  # when the oldest of them was recorded

    def whole_year(self) -> MonthLeadTime:
        """Every refund of the year as one "month" (dated April): the year's count, median and p90."""
        return MonthLeadTime(self.months[0].month, [s for m in self.months for s in m.seconds])


def refund_lead_times(year: int, building_id: int | None = None) -> LeadTimes:
    """Refund lead time by month of fiscal year `year`: for each refund ledger row (kind refund, the money
    back: card refunds when the provider said they succeeded, counter refunds when paid out) whose 納付日
    (paid_on, the Tokyo day of its `at`) is in the year, the time from the start to the row's `at`.

    The start is the booking's cancellation (the time of its audit entry "… → cancelled") when the booking
    was cancelled no later than the refund was recorded; otherwise (a partial refund of a booking that
    stands, a refund made at the provider) the time the refund was recorded (Refund.created_at). The refund
    record of a row is the one with its provider refund id, or, at the counter, the id its reference
    "…-refund-<id>" names. Rows are grouped by the month of their paid_on: median and p90 (nearest rank) of
    the months with refunds. Also: refunds still pending now, and since when the oldest waits."""
    first, last = fiscal_days(year)
    where = [LedgerEntry.kind == "refund", LedgerEntry.paid_on >= first, LedgerEntry.paid_on <= last]
    if building_id is not None:
        where.append(LedgerEntry.building_id == building_id)
    rows = db.session.execute(select(LedgerEntry.payment_id, LedgerEntry.booking_id, LedgerEntry.reference,
                                     LedgerEntry.provider_refund_id, LedgerEntry.at, LedgerEntry.paid_on)
                              .where(*where)).all()
    payments = select(LedgerEntry.payment_id).where(*where)
    recorded, cancelled = _refunds_recorded(payments), _cancellations(payments)
    months = {m: MonthLeadTime(m) for m in fiscal_months(year)}
    unknown = 0
    for payment_id, booking_id, reference, provider_refund_id, at, paid_on in rows:
        start = _start(recorded, cancelled.get(booking_id), payment_id, reference, provider_refund_id)
        if start is None:
            unknown += 1
            continue
        months[paid_on.replace(day=1)].seconds.append(max(0.0, (at - start).total_seconds()))
    pending, oldest = _pending(building_id)
    return LeadTimes(list(months.values()), unknown, pending, oldest)


def _refunds_recorded(payment_ids) -> dict:
    """When each refund of these payments was recorded, by ("provider", provider refund id) and ("id", payment, id)."""
    found = {}
    for refund_id, payment_id, provider_id, created_at in db.session.execute(
            select(Refund.id, Refund.payment_id, Refund.provider_refund_id, Refund.created_at)
            .where(Refund.payment_id.in_(payment_ids))):
        found[("id", payment_id, refund_id)] = created_at
        if provider_id:
            found[("provider", provider_id)] = created_at
    return found


def _cancellations(payment_ids) -> dict[int, datetime]:
    """When each booking of these payments was cancelled: its first audit entry "<state>->cancelled"."""
    bookings = select(Payment.booking_id).where(Payment.id.in_(payment_ids))
    return dict(db.session.execute(
        select(AuditEntry.subject_id, func.min(AuditEntry.at))
        .where(AuditEntry.subject == "booking", AuditEntry.subject_id.in_(bookings),
               AuditEntry.action.like("%->cancelled"))
        .group_by(AuditEntry.subject_id)).all())


def _start(recorded: dict, cancelled_at: datetime | None, payment_id: int, reference: str,
           provider_refund_id: str | None) -> datetime | None:
    """Where a refund's lead time starts (see refund_lead_times)."""
    made = recorded.get(("provider", provider_refund_id or reference))
    if made is None and (match := REFUND_REFERENCE.search(reference)):
        made = recorded.get(("id", payment_id, int(match.group(1))))
    if cancelled_at is not None and (made is None or cancelled_at <= made):
        return cancelled_at
    return made


def _pending(building_id: int | None) -> tuple[int, datetime | None]:
    statement = (select(func.count(Refund.id), func.min(Refund.created_at))
                 .join(Payment, Payment.id == Refund.payment_id).join(Booking, Booking.id == Payment.booking_id)
                 .join(Room, Room.id == Booking.room_id).where(Refund.state == RefundState.PENDING))
    count, oldest = db.session.execute(_in_building(statement, Room.building_id, building_id)).one()
    return count, oldest
