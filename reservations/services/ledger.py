"""The ledger's one writer: every movement of money becomes one immutable row here.

Public-accounting rules (地方自治法; ../DOMAIN terms in the README):
- 納付日 (paid_on) is the Tokyo business date of the movement, and a capture belongs to the fiscal
  year of its 納付日 (April to March), never to the payout's date.
- A refund (還付) of a fee is 現年度戻出, booked against the fee's own fiscal year and its revenue
  account, until 31 May after that year ends (the 出納整理期間); after that it is 過年度支出, an
  expense of the year it is paid in (PRIOR_YEAR_REFUND_ACCOUNT). Dispute withdrawals and every
  reversal follow the same dates (money that comes back after that, a refund reversed or a dispute
  won, is 過年度収入: PRIOR_YEAR_INCOME_ACCOUNT). Refunds are numbered consecutively within their fiscal year.
- Fees are their own rows (kind fee, the expense account 役務費): revenue is booked gross.
- A day that finance closed (DayClose) takes no more rows: a movement recorded later is counted on
  the next open day (business_date), which marks it late. The database refuses a row for a closed
  day too (migration 0011), and on PostgreSQL a close waits for the rows being written (an advisory
  lock, shared by writers, exclusive for the close).
"""
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, text

from ..extensions import db
from ..models import Booking, DayClose, LedgerEntry, Payment
from ..models.payment import LEDGER_SIGNS
from ..timeutil import business_date, fiscal_year, now_utc

LEDGER_LOCK_NAMESPACE = 4211  # (ns, 0): days being closed; (ns, fiscal year): refund numbers
METHODS = {"stripe": "card", "cash": "cash", "terminal": "terminal"}
FEE_KINDS = ("fee", "fee_refund")  # the provider's fee and its return: the expense account, never revenue
REFUND_KINDS = {"current": "現年度戻出", "prior": "過年度支出"}


def closing_period_end(year: int) -> date:
    """The last day on which a movement may still be booked to fiscal year `year` (出納整理期間)."""
    return date(year + 1, 5, 31)


def revenue_account(booking: Booking) -> str:
    accounts = current_app.config["REVENUE_ACCOUNTS"]
    room = booking.room
    return room.building.revenue_account or accounts.get(room.kind) or accounts["default"]


def booked_year(original_paid_on: date, on: date) -> tuple[int, bool]:
    """The fiscal year a movement back (refund, withdrawal, reversal) of money paid on
    `original_paid_on` is booked in, when it happens on `on`, and whether that is still the
    fee's own year (現年度戻出) rather than a later one (過年度支出)."""
    year = fiscal_year(original_paid_on)
    if on <= closing_period_end(year):
        return year, True
    return fiscal_year(on), False


def first_open_day(day: date) -> date:
    """`day`, or the first day after it that is not closed."""
    closed = set(db.session.scalars(select(DayClose.business_date).where(DayClose.business_date >= day)))
    while day in closed:
        day += timedelta(days=1)
    return day


def lock_days(*, exclusive: bool) -> None:
    """Writers share the lock; a close takes it alone, so it never misses a row committed after its count."""
    if db.session.get_bind().dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        db.session.execute(text(f"SELECT {fn}(:ns, 0)"), {"ns": LEDGER_LOCK_NAMESPACE})


def next_refund_serial(year: int) -> int:
    """The next refund number of the fiscal year, in the writer's transaction: no gap, no repeat."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:ns, :fy)"), {"ns": LEDGER_LOCK_NAMESPACE, "fy": year})
    last = db.session.scalar(select(func.max(LedgerEntry.refund_serial)).where(LedgerEntry.fiscal_year == year))
    return (last or 0) + 1


def _first_capture(payment: Payment):
    """The payment's first capture row (its 納付日 and account), which money going back is booked against."""
    return db.session.execute(
        select(LedgerEntry.paid_on, LedgerEntry.account_code)
        .where(LedgerEntry.payment_id == payment.id, LedgerEntry.kind == "capture")
        .order_by(LedgerEntry.paid_on, LedgerEntry.id).limit(1)).first()


def post(payment: Payment, kind: str, amount: int, reference: str, *, at: datetime | None = None,
         charge_id: str | None = None, provider_refund_id: str | None = None,
         balance_transaction_id: str | None = None) -> LedgerEntry:
    """Write one movement of `amount` yen (a positive magnitude; the kind gives the sign) and return it."""
    if amount <= 0:
        raise ValueError(f"ledger amount must be positive, got {amount}")
    at = at or now_utc()
    booking = payment.booking
    paid_on = business_date(at)
    lock_days(exclusive=False)
    original = None if kind == "capture" else _first_capture(payment)
    if original is None:
        year, current = fiscal_year(paid_on), True
    else:
        year, current = booked_year(original.paid_on, paid_on)
    if kind in FEE_KINDS:
        account = current_app.config["FEE_EXPENSE_ACCOUNT"]
    elif not current:  # 過年度支出 out; money that comes back after the year closed is 過年度収入 (雑入)
        account = current_app.config["PRIOR_YEAR_REFUND_ACCOUNT" if LEDGER_SIGNS[kind] < 0 else
                                     "PRIOR_YEAR_INCOME_ACCOUNT"]
    elif original is not None:  # 現年度戻出 reduces the revenue the fee was booked as, whatever the setting is now
        account = original.account_code
    else:
        account = revenue_account(booking)
    if kind in FEE_KINDS:  # an expense (or its return) of the year it is charged in
        year = fiscal_year(paid_on)
    entry = LedgerEntry(
        payment_id=payment.id, kind=kind, amount=LEDGER_SIGNS[kind] * amount, reference=reference, at=at,
        booking_id=booking.id, payer_id=booking.user_id, payer_name=booking.user.name,
        building_id=booking.room.building_id, room_id=booking.room_id, account_code=account,
        paid_on=paid_on, business_date=first_open_day(paid_on), fiscal_year=year,
        method=METHODS[payment.provider], intent_id=payment.intent_id, charge_id=charge_id,
        provider_refund_id=provider_refund_id, balance_transaction_id=balance_transaction_id,
    )
    if kind == "refund":
        entry.refund_kind = "current" if current else "prior"
        entry.refund_serial = next_refund_serial(year)
    db.session.add(entry)
    db.session.flush()
    return entry


def balance(payment: Payment) -> int:
    """What the ledger holds for a payment: in less out."""
    return db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))
                             .where(LedgerEntry.payment_id == payment.id, LedgerEntry.kind.not_in(FEE_KINDS)))
