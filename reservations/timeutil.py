"""Time in one place: stored in UTC, reasoned about in Asia/Tokyo."""
import calendar
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")


def now_utc() -> datetime:
    return datetime.now(UTC)


def local(dt: datetime) -> datetime:
    """An aware datetime shown in Tokyo time."""
    return dt.astimezone(TOKYO)


def at_tokyo(day: date, clock: time) -> datetime:
    """The UTC instant of a Tokyo wall-clock time (Japan has no DST, so this is exact)."""
    return datetime.combine(day, clock, tzinfo=TOKYO).astimezone(UTC)


def business_date(dt: datetime) -> date:
    return local(dt).date()


def fiscal_year(day: date) -> int:
    """Japan's fiscal year starts on 1 April: 31 March 2027 is FY2026."""
    return day.year if day.month >= 4 else day.year - 1


def shift_months(day: date, months: int) -> date:
    """The same day number `months` later (earlier if negative), or that month's last day if it is shorter."""
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
