"""The finance front page's figures: where the daily close stands and what reconciliation left open."""
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from ...extensions import db
from ...models import DayClose, ReconciliationRun
from ...timeutil import business_date, now_utc
from .close import earliest_open_day_with_rows
from .reconcile import open_reconciliation_case_count


@dataclass(frozen=True)
class Overview:
    today: date
    last_closed: date | None
    first_open_with_rows: date | None  # the day to close next: the earliest open day before today that has rows
    open_cases: int
    last_run: ReconciliationRun | None


def overview() -> Overview:
    today = business_date(now_utc())
    return Overview(
        today=today,
        last_closed=db.session.scalar(select(func.max(DayClose.business_date))),
        first_open_with_rows=earliest_open_day_with_rows(today),
        open_cases=open_reconciliation_case_count(),
        last_run=db.session.scalar(select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(1)),
    )
