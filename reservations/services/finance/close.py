"""The daily close (日計表) and the monthly summary (月計表, what the ward's 調定 summary is made from).

A day's sheet adds up the ledger rows counted on that business day (LedgerEntry.business_date), by
fiscal year × account (歳入科目, or an expense account) × building × method: how many rows and how
many yen came in (captures, refund reversals, dispute reinstatements), went out (refunds, dispute
withdrawals, and on the expense account 役務費 the processor's fees), and the net.

- Revenue is gross (総計予算主義): a fee row is on its own expense account line (FEE_EXPENSE_ACCOUNT),
  and a refund after the 出納整理期間 (過年度支出) is on PRIOR_YEAR_REFUND_ACCOUNT; the sheet's
  revenue total never includes them. Its expense total adds them up apart.
- April and May hold two fiscal years (出納整理期間): the old year's movements (a refund on 10 May of
  a March fee is 現年度戻出 of the old year) and the new year's are on separate sheets, both always
  shown in those months, even when one is empty.
- A late row (its 納付日 was already closed, so it counts on the next open day) is in the totals of the
  day it counts on, and is listed again apart with its 納付日.

Reductions (減免) are counted apart, never as money: for the day, the exemptions in force (applied) on
the bookings paid that day (a capture ledger row counted on it, business_date) and on the bookings
exempted in full (nothing due, so no payment and no ledger row) confirmed that day (the audit entry of
their confirmation, in Tokyo; confirmed after the day was closed, the next day), by fiscal year and
exemption code: how many, their full fees, the reductions and what was paid. No ledger figure changes.

Closing a day takes the ledger's days lock alone (services/ledger.lock_days), so it never misses a row
being written, and stores the sheet as printed (DayClose.totals, the reductions with each sheet).
Afterwards the database refuses a ledger row for that day (migration 0011) and services/ledger.post counts
a later movement on the next open day, marked late. A close is never undone.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from flask import current_app
from flask_babel import format_date
from sqlalchemy import and_, case, exists, func, select

from ...extensions import db
from ...i18n import gettext as _
from ...models import (
    AuditEntry,
    BookingState,
    Building,
    DayClose,
    Exemption,
    ExemptionKind,
    ExemptionState,
    LedgerEntry,
    Room,
    User,
    record,
)
from ...timeutil import at_tokyo, business_date, fiscal_year, now_utc
from ..exports import EARLIEST, LATEST
from ..ledger import METHODS, lock_days

METHOD_ORDER = list(dict.fromkeys(METHODS.values()))  # card, cash, terminal
OLD, NEW = "old", "new"  # the two sheets of April and May


class CloseError(ValueError):
    """The day cannot be closed; the message says why, for people."""


@dataclass
class Figures:
    """Counts and yen of a set of ledger rows. Out is a positive magnitude; net = in − out."""

    count_in: int = 0
    amount_in: int = 0
    count_out: int = 0
    amount_out: int = 0
    # Of the out: refunds booked against the fee's own year (現年度戻出), which the 調定 summary shows apart.
    count_current_refunds: int = 0
    amount_current_refunds: int = 0

    @property
    def net(self) -> int:
        return self.amount_in - self.amount_out

    @property
    def rows(self) -> int:
        return self.count_in + self.count_out

    def add(self, other: Figures) -> Figures:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def to_json(self) -> dict:
        return {**{name: getattr(self, name) for name in self.__dataclass_fields__}, "net": self.net}


def _sum(figures) -> Figures:
    total = Figures()
    for f in figures:
        total.add(f)
    return total


def is_expense(account_code: str) -> bool:
    """An expense account (役務費, 過年度支出) rather than revenue: never netted into revenue."""
    config = current_app.config
    return account_code in (config["FEE_EXPENSE_ACCOUNT"], config["PRIOR_YEAR_REFUND_ACCOUNT"])


def account_name(account_code: str) -> str:
    return current_app.config["ACCOUNT_NAMES"].get(account_code, "")


def _account_order(code: str) -> tuple[bool, str]:
    return is_expense(code), code  # revenue accounts first, then the expense lines


@dataclass(frozen=True)
class Key:
    """One group of the sheets: the business day and what the rows are booked under."""

    business_date: date
    fiscal_year: int
    account_code: str
    building_id: int
    method: str


def _grouped(first: date, last: date) -> list[tuple[Key, Figures]]:
    """Every group of ledger rows counted from `first` to `last` (business dates, inclusive), in one query.

    In and out are told apart by the sign, which the database checks against the kind."""
    e = LedgerEntry
    inflow = e.amount > 0
    current_refund = and_(e.kind == "refund", e.refund_kind == "current")
    columns = (e.business_date, e.fiscal_year, e.account_code, e.building_id, e.method)
    statement = (select(*columns,
                        func.sum(case((inflow, 1), else_=0)), func.sum(case((inflow, e.amount), else_=0)),
                        func.sum(case((inflow, 0), else_=1)), func.sum(case((inflow, 0), else_=-e.amount)),
                        func.sum(case((current_refund, 1), else_=0)),
                        func.sum(case((current_refund, -e.amount), else_=0)))
                 .where(e.business_date.between(first, last)).group_by(*columns))
    return [(Key(*row[:5]), Figures(*(int(v) for v in row[5:]))) for row in db.session.execute(statement)]


def sheet_years(first: date, last: date, present) -> list[int]:
    """The fiscal years the sheets of `first`..`last` show: each year with rows, the current one, and in
    April and May the old year too (its 出納整理期間), even when it has no rows."""
    years = set(present) | {fiscal_year(first), fiscal_year(last)}
    for day in (first, last):
        if day.month in (4, 5):
            years.add(fiscal_year(day) - 1)
    return sorted(years)


def _period(year: int, years: list[int]) -> str:
    """"" when the day has one fiscal year; else old (旧年度, in its 出納整理期間) or new (新年度)."""
    if len(years) == 1:
        return ""
    return OLD if year < years[-1] else NEW


# -- reductions (減免), counted apart --------------------------------------------------------------

REDUCTIONS = "reductions"  # the key of a sheet's reductions in DayClose.totals
CONFIRMED_ACTIONS = tuple(f"{state}->{BookingState.CONFIRMED}" for state in (BookingState.HELD, BookingState.EXPIRED))


@dataclass
class Reduction:
    """The exemptions of one code counted on a day: how many bookings, their full fees (使用料), the
    reductions (減免額) and what was paid (full fee − reduction, as the ledger received it). Of the count,
    `free` were exempted in full: no payment and no ledger row. Not money of the ledger: a fee not charged."""

    fiscal_year: int
    code: str
    count: int = 0
    full_fee: int = 0
    reduction: int = 0
    paid: int = 0
    free: int = 0

    def add(self, other: Reduction) -> Reduction:
        for name in ("count", "full_fee", "reduction", "paid", "free"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def to_json(self) -> dict:
        return {"code": self.code, "count": self.count, "full_fee": self.full_fee, "reduction": self.reduction,
                "paid": self.paid, "free": self.free}


def _paid_reductions(day: date) -> list[Reduction]:
    """The exemptions in force on the bookings whose payment is counted on `day` (their capture rows'
    business_date), by the capture's fiscal year and the exemption's code; one query."""
    e, x = LedgerEntry, Exemption
    captures = (select(e.booking_id, e.fiscal_year, func.sum(e.amount).label("paid"))
                .where(e.business_date == day, e.kind == "capture")
                .group_by(e.booking_id, e.fiscal_year).subquery())
    statement = (select(captures.c.fiscal_year, x.code, func.count(), func.sum(x.full_fee), func.sum(x.reduction),
                        func.sum(captures.c.paid))
                 .join(x, x.booking_id == captures.c.booking_id)
                 .where(x.state == ExemptionState.APPLIED)
                 .group_by(captures.c.fiscal_year, x.code))
    return [Reduction(int(fy), code, int(n), int(full), int(cut), int(paid))
            for fy, code, n, full, cut, paid in db.session.execute(statement)]


def _free_reductions(day: date) -> list[Reduction]:
    """The bookings exempted in full (nothing due: no payment, no ledger row) confirmed on `day` in Tokyo,
    read from the audit entry of their confirmation. One confirmed after its day was closed counts on the
    next day, as a ledger row would (a day can only be closed from its own day on, so never further)."""
    x, a = Exemption, AuditEntry
    start = at_tokyo(day - timedelta(days=1), time(0))
    end = at_tokyo(day + timedelta(days=1), time(0))
    confirmed = db.session.execute(
        select(x.code, x.full_fee, x.reduction, a.at)
        .join(a, and_(a.subject == "booking", a.subject_id == x.booking_id))
        .where(x.state == ExemptionState.APPLIED, x.reduction == x.full_fee,
               a.action.in_(CONFIRMED_ACTIONS), a.at >= start, a.at < end)).all()
    if not confirmed:
        return []
    closed_at: dict[date, datetime] = dict(db.session.execute(
        select(DayClose.business_date, DayClose.closed_at)
        .where(DayClose.business_date.between(day - timedelta(days=1), day))).all())
    found: dict[str, Reduction] = {}
    for code, full_fee, reduction, at in confirmed:
        on = business_date(at)
        if on in closed_at and closed_at[on] <= at:
            on += timedelta(days=1)
        if on == day:
            found.setdefault(code, Reduction(fiscal_year(day), code)).add(
                Reduction(fiscal_year(day), code, 1, full_fee, reduction, 0, 1))
    return list(found.values())


def day_reductions(day: date) -> list[Reduction]:
    """The day's reductions (減免), by fiscal year and code: paid bookings by the day their payment is counted,
    bookings exempted in full by the day they were confirmed. Apart from the money: no ledger figure has them."""
    merged: dict[tuple[int, str], Reduction] = {}
    for r in _paid_reductions(day) + _free_reductions(day):
        merged.setdefault((r.fiscal_year, r.code), Reduction(r.fiscal_year, r.code)).add(r)
    return [merged[key] for key in sorted(merged)]


def exemption_kinds(codes) -> dict[str, ExemptionKind]:
    """The kinds of `codes`, for their names and legal grounds on a page."""
    codes = set(codes)
    if not codes:
        return {}
    return {k.code: k for k in db.session.scalars(select(ExemptionKind).where(ExemptionKind.code.in_(codes)))}


# -- the day's sheet -------------------------------------------------------------------------------

@dataclass
class Line:
    account_code: str
    building_id: int
    method: str
    figures: Figures

    def to_json(self) -> dict:
        return {"account": self.account_code, "building_id": self.building_id, "method": self.method,
                **self.figures.to_json()}


@dataclass
class AccountCode:
    """An account (款項目節) as a sheet shows it: its code, its name, and whether it is an expense line."""

    code: str

    @property
    def name(self) -> str:
        return account_name(self.code)

    @property
    def expense(self) -> bool:
        return is_expense(self.code)


@dataclass
class Account(AccountCode):
    """The lines of one account on a sheet, and their subtotal."""

    lines: list[Line]

    @property
    def total(self) -> Figures:
        return _sum(line.figures for line in self.lines)


@dataclass
class Sheet:
    """One fiscal year's part of a day (日計表): its lines, by account, and the rows counted late."""

    fiscal_year: int
    period: str  # "", OLD or NEW
    lines: list[Line] = field(default_factory=list)
    late: list[LedgerEntry] = field(default_factory=list)
    reductions: list[Reduction] = field(default_factory=list)  # apart: not money, never in the totals

    @property
    def accounts(self) -> list[Account]:
        codes = sorted({line.account_code for line in self.lines}, key=_account_order)
        return [Account(code, [line for line in self.lines if line.account_code == code]) for code in codes]

    @property
    def revenue(self) -> Figures:
        return _sum(line.figures for line in self.lines if not is_expense(line.account_code))

    @property
    def expense(self) -> Figures:
        return _sum(line.figures for line in self.lines if is_expense(line.account_code))

    @property
    def total(self) -> Figures:
        return _sum(line.figures for line in self.lines)

    @property
    def reduction_total(self) -> Reduction:
        total = Reduction(self.fiscal_year, "")
        for r in self.reductions:
            total.add(r)
        return total

    def to_json(self) -> dict:
        return {"fiscal_year": self.fiscal_year, "period": self.period,
                "lines": [line.to_json() for line in self.lines], "revenue": self.revenue.to_json(),
                "expense": self.expense.to_json(), "total": self.total.to_json(), "late": len(self.late),
                REDUCTIONS: [r.to_json() for r in self.reductions]}


@dataclass
class DaySheet:
    """A business day's 日計表: one sheet per fiscal year, and its close if it is closed."""

    day: date
    sheets: list[Sheet]
    closed: DayClose | None
    buildings: dict[int, Building]
    rooms: dict[int, Room]

    @property
    def rows(self) -> int:
        return sum(sheet.total.rows for sheet in self.sheets)

    @property
    def net(self) -> int:
        """Every row's signed yen, fees and 過年度支出 included: the day's movement in the ledger, as it
        reconciles with the provider and the cash box. The sheets show revenue and expense apart."""
        return sum(sheet.total.net for sheet in self.sheets)

    @property
    def late_count(self) -> int:
        return sum(len(sheet.late) for sheet in self.sheets)

    def to_json(self) -> list:
        """The figures as stored with the close: ids and codes only (a building may be renamed later)."""
        return [sheet.to_json() for sheet in self.sheets]

    @property
    def has_reductions(self) -> bool:
        return any(sheet.reductions for sheet in self.sheets)

    @property
    def matches_close(self) -> bool:
        """The ledger still gives the money figures stored at the close (it must: the day is locked)."""
        return self.closed is None or _money(self.closed.totals) == _money(self.to_json())

    @property
    def reductions_match_close(self) -> bool:
        """The reductions are still those stored at the close. A day closed before reductions were stored
        has none to compare (True)."""
        if self.closed is None or not all(REDUCTIONS in sheet for sheet in self.closed.totals):
            return True
        return _reductions(self.closed.totals) == _reductions(self.to_json())


def _money(totals: list) -> list:
    return [{k: v for k, v in sheet.items() if k != REDUCTIONS} for sheet in totals]


def _reductions(totals: list) -> list:
    return [(sheet["fiscal_year"], sheet.get(REDUCTIONS, [])) for sheet in totals]


def _line_order(line: Line) -> tuple:
    return (*_account_order(line.account_code), line.building_id, METHOD_ORDER.index(line.method))


def day_sheet(day: date) -> DaySheet:
    """The 日計表 of business day `day`: the rows whose business_date is `day`, by fiscal year, and the
    day's reductions (減免) apart."""
    groups = _grouped(day, day)
    late = list(db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.business_date == day, LedgerEntry.paid_on < LedgerEntry.business_date)
        .order_by(LedgerEntry.paid_on, LedgerEntry.at, LedgerEntry.id)))
    reductions = day_reductions(day)
    years = sheet_years(day, day, {key.fiscal_year for key, _f in groups} | {r.fiscal_year for r in reductions})
    sheets = []
    for year in years:
        lines = [Line(k.account_code, k.building_id, k.method, f) for k, f in groups if k.fiscal_year == year]
        sheets.append(Sheet(year, _period(year, years), sorted(lines, key=_line_order),
                            [row for row in late if row.fiscal_year == year],
                            [r for r in reductions if r.fiscal_year == year]))
    building_ids = {k.building_id for k, _f in groups}
    room_ids = {row.room_id for row in late}
    return DaySheet(
        day, sheets, db.session.scalar(select(DayClose).where(DayClose.business_date == day)),
        {b.id: b for b in db.session.scalars(select(Building).where(Building.id.in_(building_ids)))},
        {r.id: r for r in db.session.scalars(select(Room).where(Room.id.in_(room_ids)))} if room_ids else {})


# -- closing a day ---------------------------------------------------------------------------------

def earliest_open_day_with_rows(before: date) -> date | None:
    """The first business day before `before` that has ledger rows and is not closed, if any."""
    e = LedgerEntry
    return db.session.scalar(select(func.min(e.business_date)).where(
        e.business_date < before, ~exists().where(DayClose.business_date == e.business_date)))


def day_text(day: date) -> str:
    return format_date(day, "long")


def close_day(day: date, actor: User | None, *, now=None) -> DayClose:
    """Close business day `day`: its sheet as it stands is stored (DayClose) and the day is locked.

    Refused for a day that is closed already (a close is never undone), a day that has not begun in
    Tokyo, and a day while an earlier day with movements is still open. Days are closed in order, as
    the ward's day book is kept: each close follows the last one, so a printed run of 日計表 has no
    gap where a forgotten day could still change. An earlier day without movements need not be
    closed (nothing to certify); should a movement dated on it arrive, it lands there, not late, and
    that day must then be closed before the next one. Today may be closed (the counter's till is
    counted at the end of its day); what is recorded after that counts on tomorrow, marked late.

    The lock comes first: on PostgreSQL a close waits for ledger rows being written and counts them;
    writers that come after it wait, then see the day closed. SQLite serialises writers already. The
    caller commits."""
    lock_days(exclusive=True)
    today = business_date(now or now_utc())
    if not EARLIEST <= day <= LATEST:
        raise CloseError(_("Enter a real date as YYYY-MM-DD, for example 2026-12-03."))
    if day > today:
        raise CloseError(_("%(day)s has not begun yet (Tokyo time): a day can be closed from its own day on.",
                           day=day_text(day)))
    if db.session.scalar(select(DayClose.business_date).where(DayClose.business_date == day)) is not None:
        raise CloseError(_("%(day)s is already closed. A close is never undone.", day=day_text(day)))
    earlier = earliest_open_day_with_rows(day)
    if earlier is not None:
        raise CloseError(_("Close %(earlier)s first: days are closed in order, and that day has movements "
                           "that are not closed yet.", earlier=day_text(earlier)))
    sheet = day_sheet(day)
    close = DayClose(business_date=day, closed_by_id=actor.id if actor else None, closed_at=now or now_utc(),
                     rows=sheet.rows, net=sheet.net, totals=sheet.to_json())
    db.session.add(close)
    record("day_close", int(day.strftime("%Y%m%d")), "closed", actor_id=actor.id if actor else None,
           business_date=day.isoformat(), rows=sheet.rows, net=sheet.net, late=sheet.late_count)
    db.session.flush()
    return close


# -- the month -------------------------------------------------------------------------------------

@dataclass
class AccountMonth(AccountCode):
    """One account of one fiscal year over a month: its totals and each day's."""

    days: dict[date, Figures] = field(default_factory=dict)

    @property
    def total(self) -> Figures:
        return _sum(self.days.values())


@dataclass
class MonthSection:
    fiscal_year: int
    period: str
    accounts: list[AccountMonth]

    @property
    def revenue(self) -> Figures:
        return _sum(a.total for a in self.accounts if not a.expense)

    @property
    def expense(self) -> Figures:
        return _sum(a.total for a in self.accounts if a.expense)

    @property
    def total(self) -> Figures:
        return _sum(a.total for a in self.accounts)


@dataclass
class MonthDay:
    day: date
    figures: Figures
    closed: DayClose | None


@dataclass
class MonthSummary:
    """月計表: a month of business days, by fiscal year and account, and each day's totals."""

    first: date
    last: date
    sections: list[MonthSection]
    days: list[MonthDay]

    @property
    def total(self) -> Figures:
        return _sum(s.total for s in self.sections)


def month_bounds(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def month_summary(year: int, month: int) -> MonthSummary:
    """The month's 月計表: per fiscal year and account, the counts and yen in, out (現年度戻出 apart),
    and net, in total and day by day; 役務費 and 過年度支出 on expense lines of their own. It adds up
    the same rows as the month's day sheets (business dates in the month), so the two always agree."""
    first, last = month_bounds(year, month)
    groups = _grouped(first, last)
    years = sheet_years(first, last, {key.fiscal_year for key, _f in groups})
    sections = []
    for fy in years:
        accounts: dict[str, AccountMonth] = {}
        for key, figures in groups:
            if key.fiscal_year == fy:
                account = accounts.setdefault(key.account_code, AccountMonth(key.account_code))
                account.days.setdefault(key.business_date, Figures()).add(figures)
        ordered = [accounts[code] for code in sorted(accounts, key=_account_order)]
        sections.append(MonthSection(fy, _period(fy, years), ordered))
    closes = {c.business_date: c for c in db.session.scalars(
        select(DayClose).where(DayClose.business_date.between(first, last)))}
    days = []
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        days.append(MonthDay(day, _sum(f for k, f in groups if k.business_date == day), closes.get(day)))
    return MonthSummary(first, last, sections, days)
