"""Jinja filters for money, months and Tokyo time."""
from datetime import datetime

from babel.dates import format_skeleton
from flask_babel import format_date, format_datetime, format_time, get_locale

from .timeutil import local


def yen(amount: int | None) -> str:
    """¥2,800; money out as -¥1,000 (the sign before the mark, as accounting writes it)."""
    if amount is None:
        return "—"
    return f"-¥{-amount:,}" if amount < 0 else f"¥{amount:,}"


def tokyo_datetime(dt: datetime, fmt: str = "medium") -> str:
    return format_datetime(local(dt), fmt)


def tokyo_time(dt: datetime) -> str:
    return format_time(local(dt), "HH:mm")


def tokyo_date(dt: datetime) -> str:
    """The Tokyo calendar day of a moment, as YYYY-MM-DD (for links to a day's page)."""
    return local(dt).date().isoformat()


def month_label(day) -> str:
    """"2026年12月" in Japanese, "December 2026" in English."""
    return format_skeleton("yMMMM", day, locale=get_locale())


def register(app) -> None:
    app.add_template_filter(yen)
    app.add_template_filter(tokyo_datetime)
    app.add_template_filter(tokyo_time)
    app.add_template_filter(tokyo_date)
    app.add_template_filter(format_date, "date")
    app.add_template_filter(month_label)
