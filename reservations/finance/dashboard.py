"""GET /finance/dashboard: revenue per day per building, the cashless share, occupancy and refund lead times.

The figures are services/finance/dashboard.py; this module reads the query (month, fy, building), turns each
figure into a chart (charts.py) and a table, and renders templates/finance/dashboard.html. A value it cannot
use is said next to its field and replaced by its default (answer 422), never a 500.
"""
import re
from dataclasses import dataclass
from datetime import date

from babel.dates import format_skeleton
from flask import render_template, request
from flask_babel import get_locale
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SelectField, StringField
from wtforms.validators import ValidationError
from wtforms.widgets import MonthInput, NumberInput

from ..extensions import db
from ..filters import month_label, yen
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Building
from ..public.labels import building_name, division_label, room_name
from ..services.finance import dashboard as figures
from ..timeutil import business_date, fiscal_year, now_utc
from . import bp, finance_required
from .charts import BarSeries, LineSeries, Series, column_chart, row_chart

FIRST_YEAR, LAST_YEAR = 2000, 8999  # the years anyone may ask about
MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
YEAR = re.compile(r"[0-9]{4}")
HAND_REFUNDS_DAYS = (30, 60)  # "refunds by hand take one to two months"
DAY = 86400


class DashboardForm(FlaskForm):
    """The dashboard's query: each field may be left empty for its default; a bad one is reported."""

    class Meta:
        csrf = False  # a GET page: nothing changes

    month = StringField(_l("Month (revenue and occupancy)"), widget=MonthInput())
    fy = StringField(_l("Fiscal year (cashless share and refunds)"),
                     widget=NumberInput(min=FIRST_YEAR, max=LAST_YEAR))
    building = SelectField(_l("Building"), validate_choice=False)

    def validate_month(self, field) -> None:
        match = MONTH.fullmatch(field.data or "")
        if field.data and not (match and FIRST_YEAR <= int(match[1]) <= LAST_YEAR and 1 <= int(match[2]) <= 12):
            raise ValidationError(_("Enter a month as YYYY-MM, for example 2027-04."))

    def validate_fy(self, field) -> None:
        if field.data and not (YEAR.fullmatch(field.data) and FIRST_YEAR <= int(field.data) <= LAST_YEAR):
            raise ValidationError(_("Enter a fiscal year as four digits, for example 2026 (April 2026 to March 2027)."))

    def validate_building(self, field) -> None:
        if field.data and field.data not in {value for value, _label in field.choices}:
            raise ValidationError(_("Choose a building from the list."))

    def chosen(self, today: date) -> "Choice":
        """What to show: the valid values asked for, the defaults for the rest."""
        month = self.month.data if self.month.data and not self.month.errors else None
        year = int(self.fy.data) if self.fy.data and not self.fy.errors else fiscal_year(today)
        building = int(self.building.data) if self.building.data and not self.building.errors else None
        return Choice(date.fromisoformat(f"{month}-01") if month else None, year, building)


@dataclass(frozen=True)
class Choice:
    month: date | None  # None: revenue over the last 30 days, occupancy of this month
    year: int
    building_id: int | None  # None: every building


# -- words and numbers ------------------------------------------------------------------------------

def signed_yen(amount: float) -> str:
    """Yen with thousands separators and a leading minus for money out: -¥2,800 (the `yen` filter's form)."""
    return yen(int(amount))


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def duration(seconds: float | None) -> str:
    """A lead time in words: hours under two days, days from then on, one decimal."""
    if seconds is None:
        return "—"
    if seconds < 2 * DAY:
        return _("%(hours)s hours", hours=format(seconds / 3600, ",.1f"))
    return _("%(days)s days", days=format(seconds / DAY, ",.1f"))


def year_label(year: int) -> str:
    return _("FY%(year)d", year=year)


def short_month(month: date) -> str:
    """"4月" in Japanese, "Apr" in English: the charts' month axis."""
    return format_skeleton("MMM", month, locale=get_locale())


def short_day(day: date) -> str:
    return f"{day.month}/{day.day}"


def division_text(code: str | None) -> str:
    return _("By the hour (all hours)") if code is None else division_label(code)


# -- the charts -------------------------------------------------------------------------------------

def revenue_chart(revenue: figures.BuildingRevenue, first: date, last: date, index: int):
    """Net revenue per day as bars, below zero when more went out than came in. The fees stay in the table:
    a few percent of the takings, a line of them would lie along the axis."""
    days = [date.fromordinal(n) for n in range(first.toordinal(), last.toordinal() + 1)]
    by_day = {d.day: d for d in revenue.days}
    name = building_name(revenue.building)
    nets = [by_day[d].net if d in by_day else None for d in days]
    net = BarSeries(Series("solid", _("Net revenue")), nets,
                    [_("%(day)s: net %(amount)s", day=d.isoformat(), amount=signed_yen(v)) if v is not None else ""
                     for d, v in zip(days, nets, strict=True)])
    title = _("%(building)s: revenue per day, %(first)s to %(last)s", building=name, first=first.isoformat(),
              last=last.isoformat())
    description = _("Net revenue (captures less refunds and disputes) per day in yen. The table beside it has "
                    "every day with money moved, and the processing fees, an expense kept apart.")
    return column_chart(f"revenue-{index}", title, description, [short_day(d) for d in days], [net],
                        tick_text=signed_yen, label_every=5 if len(days) > 10 else 1)


def cashless_chart(months: list[figures.MonthShare], year: int):
    """Card and terminal shares of the yen collected, stacked per month; the share by count as a line; the
    ward's 100 % goal as a line across."""
    titles = [[_("%(month)s: %(method)s %(share)s of the yen", month=short_month(m.month), method=label,
                 share=percent(m.method_share(method))) for m in months]
              for method, label in (("card", _("card online")), ("terminal", _("card terminal")))]
    card = BarSeries(Series("solid", _("Card online (share of yen)")), [m.method_share("card") for m in months],
                     titles[0])
    terminal = BarSeries(Series("hatch", _("Card terminal (share of yen)")),
                         [m.method_share("terminal") for m in months], titles[1])
    by_count = LineSeries(Series("line", _("Cashless share by count")), [m.count_share for m in months],
                          [_("%(month)s: %(share)s of the payments", month=short_month(m.month),
                             share=percent(m.count_share)) for m in months])
    title = _("Cashless share by month, %(year)s", year=year_label(year))
    description = _("Share of the fees collected by card online and on the counter's terminal, against cash, "
                    "per month; the ward's goal is %(goal)s. A dash marks a month with no payment.", goal="100%")
    return column_chart("cashless", title, description, [short_month(m.month) for m in months], [card, terminal],
                        stacked=True, lines=(by_count,), goal=(100, _("Goal: %(share)s cashless", share="100%")),
                        tick_text=lambda v: f"{v:.0f}%", empty_text="—")


def lead_time_chart(lead: figures.LeadTimes, year: int):
    """Median and p90 per month in days, beside the one to two months refunds by hand take."""
    months = lead.months

    def days(value):
        return None if value is None else value / DAY

    median = BarSeries(Series("solid", _("Median")), [days(m.median) for m in months],
                       [_("%(month)s: median %(time)s", month=short_month(m.month), time=duration(m.median))
                        for m in months])
    p90 = BarSeries(Series("hatch", _("90th percentile")), [days(m.p90) for m in months],
                    [_("%(month)s: p90 %(time)s", month=short_month(m.month), time=duration(m.p90))
                     for m in months])
    title = _("Refund lead time by month, %(year)s", year=year_label(year))
    description = _("Days from the cancellation to the money back, median and 90th percentile per month, against "
                    "the one to two months refunds by hand take. A dash marks a month with no refund.")
    return column_chart("lead-time", title, description, [short_month(m.month) for m in months], [median, p90],
                        band=(*HAND_REFUNDS_DAYS, _("Refunds by hand: 1–2 months")),
                        tick_text=lambda v: _("%(days)s d", days=format(v, "g")), empty_text="—")


def occupancy_chart(rows: list[tuple[str, int, int]], title: str):
    """One bar per row: the share of open slots booked."""
    bars = [(name, 100 * booked / open_ if open_ else None, percent(100 * booked / open_ if open_ else None),
             _("%(name)s: %(booked)d of %(open)d slots booked", name=name, booked=booked, open=open_))
            for name, booked, open_ in rows]
    description = _("Share of the open slots that were booked (confirmed, used or no-show), in percent; a dash "
                    "marks a row with no open slot.")
    return row_chart("occupancy", title, description, bars, tick_text=lambda v: f"{v:.0f}%")


# -- the page -------------------------------------------------------------------------------------

def _buildings() -> list[Building]:
    return list(db.session.scalars(select(Building).order_by(Building.id)))


def _occupancy(month: date, building_id: int | None):
    """The occupancy rows and chart: per room and division for one building, per building for all."""
    rows = figures.occupancy(month, building_id)
    label = month_label(month)
    if building_id is None:
        totals = figures.occupancy_by_building(rows)
        title = _("Occupancy by building, %(month)s", month=label)
        return rows, totals, occupancy_chart([(building_name(b), booked, open_) for b, booked, open_ in totals],
                                             title)
    title = _("Occupancy by room and division, %(month)s", month=label)
    named = [(f"{room_name(r.room)} · {division_text(r.division)}", r.booked, r.open) for r in rows]
    return rows, None, occupancy_chart(named, title)


@bp.get("/dashboard")
@finance_required
def dashboard():
    """The four figures for the month, fiscal year and building asked for (or their defaults)."""
    buildings = _buildings()
    form = DashboardForm(request.args)
    form.building.choices = [("", _("All buildings"))] + [(str(b.id), building_name(b)) for b in buildings]
    form.validate()
    today = business_date(now_utc())
    choice = form.chosen(today)
    first, last = figures.month_days(choice.month) if choice.month else figures.last_days(today)
    revenue = figures.revenue_by_day(first, last, choice.building_id)
    shares = figures.cashless_share(choice.year, choice.building_id)
    lead = figures.refund_lead_times(choice.year, choice.building_id)
    month = choice.month or today.replace(day=1)
    rooms, building_totals, occupancy = _occupancy(month, choice.building_id)
    whole_year = lead.whole_year()
    return render_template(
        "finance/dashboard.html", form=form, choice=choice, first=first, last=last, month=month,
        revenue=[(r, revenue_chart(r, first, last, i)) for i, r in enumerate(revenue)],
        shares=shares, cashless=cashless_chart(shares, choice.year) if any(not m.empty for m in shares) else None,
        year_share=figures.year_share(shares), lead=lead, whole_year=whole_year,
        lead_chart=lead_time_chart(lead, choice.year) if whole_year.count else None,
        rooms=rooms, building_totals=building_totals, occupancy=occupancy, methods=figures.METHOD_ORDER,
        signed_yen=signed_yen, percent=percent, duration=duration, year_label=year_label,
        division_text=division_text,
    ), 422 if form.errors else 200

