"""Exports for staff: a building's bookings over a date range, as CSV (for Excel) or XLSX.

Only the building asked for is read (the view checks the caller's scope first), so nothing of another
building can appear. Every text cell that a spreadsheet would read as a formula (= + - @, or a tab or
carriage return first) is prefixed with an apostrophe: a name typed at the counter never runs in Excel.
"""
import csv
import io
import re
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Booking, BookingState, Building, Payment, Receipt, RefundState, Room
from ..public.labels import residency_label
from ..timeutil import local, now_utc
from .availability import day_bounds
from .calendars import CHANNELS, ENTRY_STATES, entry_state

MAX_DAYS = 366
# The days anyone may ask about: beyond them a day's bounds would not fit a date.
EARLIEST, LATEST = date(2000, 1, 1), date(9000, 12, 31)
BOM = "\ufeff"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PAYMENT_METHODS = {"stripe": _l("Card (online)"), "cash": _l("Cash"), "terminal": _l("Card terminal")}
# The columns, in order: (key, heading).
COLUMNS = [
    ("id", _l("Booking number")),
    ("date", _l("Date")),
    ("start", _l("Start")),
    ("end", _l("End")),
    ("room", _l("Room")),
    ("name", _l("Name")),
    ("kana", _l("Name (kana)")),
    ("phone", _l("Phone")),
    ("residency", _l("Residency class")),
    ("channel", _l("Channel")),
    ("state", _l("State")),
    ("method", _l("Payment method")),
    ("paid", _l("Amount paid")),
    ("refunded", _l("Refunded")),
    ("receipt", _l("Receipt number")),
]


class ExportError(ValueError):
    """The range asked for cannot be exported; the message says why, for people."""


@dataclass(frozen=True)
class Period:
    first: date
    last: date  # inclusive

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def parse_period(first: str | None, last: str | None) -> Period:
    """The inclusive range from the query's `from` and `to` (YYYY-MM-DD), or ExportError saying what is wrong."""
    if not first or not last:
        raise ExportError(_("Choose the first and the last day to export."))
    try:
        period = Period(date.fromisoformat(first), date.fromisoformat(last))
    except ValueError:
        raise ExportError(_("Enter the days as YYYY-MM-DD, for example 2027-04-01.")) from None
    if not (EARLIEST <= period.first <= LATEST and EARLIEST <= period.last <= LATEST):
        raise ExportError(_("Enter the days as YYYY-MM-DD, for example 2027-04-01."))
    if period.last < period.first:
        raise ExportError(_("The last day must not be before the first day."))
    if period.days > MAX_DAYS:
        raise ExportError(_("Export at most %(days)d days at a time.", days=MAX_DAYS))
    return period


def safe_cell(value):
    """A value as a spreadsheet cell that can never be taken for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def bookings(building: Building, period: Period) -> list[Booking]:
    """The building's bookings that start within the period, in time order: three queries whatever their number."""
    start, end = day_bounds(period.first)[0], day_bounds(period.last)[1]
    return list(db.session.scalars(
        select(Booking).join(Room, Booking.room_id == Room.id)
        .where(Room.building_id == building.id, Booking.start_at >= start, Booking.start_at < end,
               Booking.state != BookingState.EXPIRED)
        .order_by(Booking.start_at, Booking.room_id, Booking.id)
        .options(joinedload(Booking.user), joinedload(Booking.room),
                 joinedload(Booking.payment).selectinload(Payment.refunds))).unique())


def rows(building: Building, period: Period, *, now=None) -> list[dict]:
    """One dict per booking (keys of COLUMNS), in the page's language; money as int yen."""
    now = now or now_utc()
    found = bookings(building, period)
    receipts = {r.booking_id: r for r in db.session.scalars(
        select(Receipt).where(Receipt.booking_id.in_([b.id for b in found])))} if found else {}
    out = []
    for booking in found:
        state = entry_state(booking, now)
        if state is None:
            continue  # a hold that ran out: it never was a booking
        payment, receipt, user = booking.payment, receipts.get(booking.id), booking.user
        block = booking.is_block
        out.append({
            "id": booking.id,
            "date": local(booking.start_at).date(),
            "start": local(booking.start_at).strftime("%H:%M"),
            "end": local(booking.end_at).strftime("%H:%M"),
            "room": booking.room.name,
            "name": booking.note if block else user.name,
            "kana": "" if block else user.name_kana,
            "phone": "" if block else (user.phone or ""),
            "residency": "" if block else residency_label(booking.residency),
            "channel": str(CHANNELS.get(booking.channel, booking.channel)),
            "state": str(ENTRY_STATES[state]),
            "method": str(PAYMENT_METHODS.get(payment.provider, payment.provider))
            if payment is not None and payment.captured_amount else "",
            "paid": payment.captured_amount if payment is not None else 0,
            "refunded": sum(r.amount for r in payment.refunds if r.state == RefundState.SUCCEEDED)
            if payment is not None else 0,
            "receipt": receipt.number if receipt else "",
        })
    return out


def headings() -> list[str]:
    return [str(label) for _key, label in COLUMNS]


def filename(building: Building, period: Period, extension: str) -> str:
    return f"bookings-{building.id}-{period.first.isoformat()}-{period.last.isoformat()}.{extension}"


def to_csv(data: list[dict]) -> bytes:
    """UTF-8 with a byte-order mark and CRLF lines: what Excel opens in Japanese without asking."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in headings()])
    for row in data:
        writer.writerow([safe_cell(row[key].isoformat() if key == "date" else row[key]) for key, _label in COLUMNS])
    return (BOM + buffer.getvalue()).encode("utf-8")


def to_xlsx(data: list[dict], title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=re.sub(r"[\\/?*\[\]:]", " ", title)[:31].strip() or "bookings")
    sheet.append([safe_cell(h) for h in headings()])
    for row in data:
        cells = []
        for key, _label in COLUMNS:
            cell = WriteOnlyCell(sheet, value=safe_cell(row[key]))
            if key == "date":
                cell.number_format = "yyyy-mm-dd"
            cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def default_period(day: date) -> Period:
    """What the day view offers to export: the month of `day`."""
    first = day.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return Period(first, last)
