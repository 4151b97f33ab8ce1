"""The daily close (日計表) and the monthly summary: the sheets' figures, the two fiscal years of April and May,
the lock a close puts on its day, and the pages and the command.

Rows are written through services/ledger.py (tests/helpers.py ledger_booking, ledger_refund), at chosen
moments; the close takes `now=` in the service tests and a frozen clock (time-machine) in the page tests.
"""
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from reservations.extensions import db
from reservations.models import AuditEntry, Building, DayClose, LedgerEntry, Payment, Role, User
from reservations.services import ledger
from reservations.services.finance import close as closing
from reservations.timeutil import TOKYO
from tests.helpers import ledger_booking, ledger_refund

REVENUE = "13-01-02-01"  # config REVENUE_ACCOUNTS["default"]: a music room's fees
SPORTS = "13-01-06-01"
FEE = "02-01-01-12"  # 役務費
PRIOR = "02-01-01-22"  # 過年度支出
FEB_10 = date(2027, 2, 10)


def tokyo(*args) -> datetime:
    return datetime(*args, tzinfo=TOKYO).astimezone(UTC)


def frozen(moment: datetime):
    return time_machine.travel(moment, tick=False)


class Bookings:
    """Each booking of a test on a use day of its own (a room's day takes one booking per division)."""

    def __init__(self, user):
        self.user, self.next_day = user, date(2027, 6, 1)

    def paid(self, room, at: datetime, amount: int, method: str = "cash"):
        self.next_day += timedelta(days=1)
        return ledger_booking(self.user, room, self.next_day, at=at, amount=amount, method=method)


@pytest.fixture
def bookings(resident):
    return Bookings(resident)


@pytest.fixture
def other_room(make_room):
    """A gym in a second building, whose fees go to the sports account (its building's revenue_account)."""
    other = Building(name="第二体育館", name_kana="ダイニタイイクカン", name_en="Second Gym", revenue_account=SPORTS)
    db.session.add(other)
    room = make_room("競技場")
    room.building = other
    db.session.commit()
    return room


@pytest.fixture
def finance(make_user):
    return make_user("finance@example.com", role=Role.FINANCE, name="会計 係")


def line_figures(sheet: closing.Sheet) -> dict:
    return {(line.account_code, line.building_id, line.method):
            (line.figures.count_in, line.figures.amount_in, line.figures.count_out, line.figures.amount_out,
             line.figures.net) for line in sheet.lines}


def sign_in(client, login_as, user) -> None:
    """Signed in, in English, at the (frozen) time: a cookie signed at a later real time is not taken."""
    login_as(user)
    client.post("/lang/en")


def fee(payment, amount: int, at: datetime, txn: str):
    entry = ledger.post(payment, "fee", amount, txn, balance_transaction_id=txn, at=at)
    db.session.commit()
    return entry


# -- the day's sheet -------------------------------------------------------------------------------

def test_a_day_sheet_adds_up_by_fiscal_year_account_building_and_method(room, other_room, bookings):
    card = bookings.paid(room, tokyo(2027, 2, 10, 0, 0, 0), 3600, "card")  # Tokyo midnight: this day
    bookings.paid(room, tokyo(2027, 2, 10, 10, 0), 2800, "cash")
    bookings.paid(room, tokyo(2027, 2, 10, 23, 59, 59), 3600, "cash")  # the day's last second
    bookings.paid(other_room, tokyo(2027, 2, 10, 11, 0), 5000, "terminal")
    ledger_refund(card, 1000, at=tokyo(2027, 2, 10, 15, 0))
    fee(card.payment, 130, tokyo(2027, 2, 10, 12, 0), "txn_fee_1")
    bookings.paid(room, tokyo(2027, 2, 9, 23, 59, 59), 9999, "cash")  # the day before
    bookings.paid(room, tokyo(2027, 2, 11, 0, 0, 0), 7777, "cash")  # the day after

    sheet = closing.day_sheet(FEB_10)

    assert [(s.fiscal_year, s.period) for s in sheet.sheets] == [(2026, "")]
    only = sheet.sheets[0]
    a, b = room.building_id, other_room.building_id
    assert line_figures(only) == {
        (REVENUE, a, "card"): (1, 3600, 1, 1000, 2600),
        (REVENUE, a, "cash"): (2, 6400, 0, 0, 6400),
        (SPORTS, b, "terminal"): (1, 5000, 0, 0, 5000),
        (FEE, a, "card"): (0, 0, 1, 130, -130),  # 役務費: a line of its own, never netted into revenue
    }
    assert [(x.code, x.expense) for x in only.accounts] == [(REVENUE, False), (SPORTS, False), (FEE, True)]
    assert only.accounts[0].total.net == 9000
    revenue, expense = only.revenue, only.expense
    assert (revenue.count_in, revenue.amount_in, revenue.count_out, revenue.amount_out, revenue.net) == \
        (4, 15000, 1, 1000, 14000)
    assert (revenue.count_current_refunds, revenue.amount_current_refunds) == (1, 1000)
    assert (expense.count_out, expense.amount_out, expense.net) == (1, 130, -130)
    assert (sheet.rows, sheet.net, sheet.late_count) == (6, 13870, 0)
    ledger_sum = db.session.scalar(select(func.sum(LedgerEntry.amount)).where(LedgerEntry.business_date == FEB_10))
    assert sheet.net == ledger_sum


def test_april_and_may_show_the_old_year_and_the_new_year_on_separate_sheets(room, bookings):
    march = bookings.paid(room, tokyo(2027, 3, 20, 10, 0), 3600, "card")  # FY2026
    ledger_refund(march, 1000, at=tokyo(2027, 5, 10, 9, 0))  # 現年度戻出 of FY2026, in its 出納整理期間
    bookings.paid(room, tokyo(2027, 5, 10, 11, 0), 2800, "cash")  # FY2027

    may = closing.day_sheet(date(2027, 5, 10))

    assert [(s.fiscal_year, s.period) for s in may.sheets] == [(2026, "old"), (2027, "new")]
    old, new = may.sheets
    assert line_figures(old) == {(REVENUE, room.building_id, "card"): (0, 0, 1, 1000, -1000)}
    assert (old.revenue.count_current_refunds, old.revenue.amount_current_refunds) == (1, 1000)
    assert line_figures(new) == {(REVENUE, room.building_id, "cash"): (1, 2800, 0, 0, 2800)}

    empty_april = closing.day_sheet(date(2027, 4, 5))  # both years, even with nothing on them
    assert [(s.fiscal_year, s.period, s.lines) for s in empty_april.sheets] == [(2026, "old", []), (2027, "new", [])]
    assert [s.fiscal_year for s in closing.day_sheet(date(2027, 3, 31)).sheets] == [2026]
    assert [s.fiscal_year for s in closing.day_sheet(date(2027, 6, 1)).sheets] == [2027]


def test_a_refund_after_the_closing_period_is_a_prior_year_expense_line(room, bookings):
    march = bookings.paid(room, tokyo(2027, 3, 20, 10, 0), 3600, "card")
    ledger_refund(march, 1000, at=tokyo(2027, 6, 1, 9, 0))  # 過年度支出: an expense of FY2027

    june = closing.day_sheet(date(2027, 6, 1))

    assert [s.fiscal_year for s in june.sheets] == [2027]
    assert line_figures(june.sheets[0]) == {(PRIOR, room.building_id, "card"): (0, 0, 1, 1000, -1000)}
    assert june.sheets[0].revenue.rows == 0 and june.sheets[0].expense.amount_out == 1000
    assert june.sheets[0].expense.count_current_refunds == 0  # not 現年度戻出


# -- closing and the lock --------------------------------------------------------------------------

def test_a_closed_day_takes_no_more_rows_and_later_movements_land_on_the_next_open_day(room, bookings, finance):
    booking = bookings.paid(room, tokyo(2027, 2, 10, 10, 0), 3600, "card")
    close = closing.close_day(FEB_10, finance, now=tokyo(2027, 2, 10, 18, 0))
    db.session.commit()
    assert (close.rows, close.net, close.closed_by_id) == (1, 3600, finance.id)

    # The database itself refuses a row for the closed day, whoever writes it.
    first = db.session.scalar(select(LedgerEntry))
    raw = LedgerEntry(payment_id=first.payment_id, kind="capture", amount=100, reference="raw-insert",
                      booking_id=first.booking_id, payer_id=first.payer_id, payer_name="x",
                      building_id=first.building_id, room_id=first.room_id, account_code=REVENUE,
                      paid_on=FEB_10, business_date=FEB_10, fiscal_year=2026, method="cash")
    db.session.add(raw)
    with pytest.raises(DBAPIError, match="day_closed"):
        db.session.flush()
    db.session.rollback()

    # The ledger's writer counts a movement of the closed day on the next open day, marked late.
    late = ledger_refund(booking, 1000, at=tokyo(2027, 2, 10, 20, 0))
    assert (late.paid_on, late.business_date, late.late) == (FEB_10, date(2027, 2, 11), True)
    assert late.fiscal_year == 2026 and late.refund_kind == "current"

    # Two closed days in a row: a later movement of the 10th skips both.
    closing.close_day(date(2027, 2, 11), finance, now=tokyo(2027, 2, 12, 9, 0))
    closing.close_day(date(2027, 2, 12), finance, now=tokyo(2027, 2, 12, 18, 0))
    db.session.commit()
    later = ledger_refund(booking, 500, at=tokyo(2027, 2, 10, 21, 0))
    assert (later.paid_on, later.business_date, later.late) == (FEB_10, date(2027, 2, 13), True)

    eleventh = closing.day_sheet(date(2027, 2, 11))
    assert [row.id for row in eleventh.sheets[0].late] == [late.id]
    assert eleventh.late_count == 1 and eleventh.net == -1000
    # What the close stored is what the (locked) ledger still gives, after the round trip through the database.
    db.session.expire_all()
    assert db.session.get(DayClose, date(2027, 2, 11)).totals == eleventh.to_json()
    assert eleventh.matches_close and closing.day_sheet(FEB_10).matches_close


def _waiting_on_advisory_lock() -> bool:
    waiting = db.session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                     " AND wait_event = 'advisory' AND datname = current_database()"))
    db.session.rollback()  # pg_stat_activity is read once per transaction
    return waiting > 0


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite begins every writer IMMEDIATE: never side by side
def test_a_close_waits_for_a_row_being_written_and_counts_it(app, backend, room, bookings, finance):
    payment_id = bookings.paid(room, tokyo(2027, 2, 10, 10, 0), 2800).payment.id
    finance_id = finance.id
    db.session.rollback()
    written, release, results = threading.Event(), threading.Event(), {}

    def writer():
        with app.app_context():
            try:
                ledger.post(db.session.get(Payment, payment_id), "refund", 500, "race-refund",
                            at=tokyo(2027, 2, 10, 12, 0))
                written.set()  # the row is in, uncommitted, under the shared lock
                release.wait(30)
                db.session.commit()
            finally:
                db.session.remove()

    def closer():
        with app.app_context():
            try:
                close = closing.close_day(FEB_10, db.session.get(User, finance_id), now=tokyo(2027, 2, 10, 18, 0))
                results["close"] = (close.rows, close.net)
                db.session.commit()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=writer), threading.Thread(target=closer)]
    threads[0].start()
    assert written.wait(30)
    threads[1].start()
    deadline = time.monotonic() + 30
    while not _waiting_on_advisory_lock():  # the close waits for the writer: a condition, not a race won by sleeping
        assert time.monotonic() < deadline and threads[1].is_alive(), "the close did not wait for the writer"
        time.sleep(0.02)
    release.set()
    for thread in threads:
        thread.join(60)
    assert results["close"] == (2, 2300)  # the row written meanwhile is counted, not left on a closed day
    assert db.session.scalar(select(LedgerEntry.business_date).where(LedgerEntry.reference == "race-refund")) == FEB_10


def test_a_close_is_audited_and_stores_the_sheet(room, bookings, finance):
    bookings.paid(room, tokyo(2027, 2, 10, 10, 0), 2800)
    closing.close_day(FEB_10, finance, now=tokyo(2027, 2, 10, 18, 0))
    db.session.commit()
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "day_close"))
    assert (entry.subject_id, entry.action, entry.actor_id) == (20270210, "closed", finance.id)
    assert entry.data == {"business_date": "2027-02-10", "rows": 1, "net": 2800, "late": 0}
    stored = db.session.get(DayClose, FEB_10).totals
    assert stored[0]["fiscal_year"] == 2026 and stored[0]["revenue"]["net"] == 2800
    assert stored[0]["lines"] == [{"account": REVENUE, "building_id": room.building_id, "method": "cash",
                                   "count_in": 1, "amount_in": 2800, "count_out": 0, "amount_out": 0,
                                   "count_current_refunds": 0, "amount_current_refunds": 0, "net": 2800}]


def test_a_day_is_closed_once_never_ahead_of_time_and_in_order(room, bookings, finance):
    bookings.paid(room, tokyo(2027, 2, 9, 10, 0), 2800)
    bookings.paid(room, tokyo(2027, 2, 10, 10, 0), 3600)
    evening = tokyo(2027, 2, 10, 23, 59, 59)

    with pytest.raises(closing.CloseError):  # tomorrow has not begun in Tokyo
        closing.close_day(date(2027, 2, 11), finance, now=evening)
    with pytest.raises(closing.CloseError):  # the 9th has movements and is still open
        closing.close_day(FEB_10, finance, now=evening)
    db.session.rollback()
    closing.close_day(date(2027, 2, 9), finance, now=evening)
    closing.close_day(FEB_10, finance, now=evening)  # today may be closed
    db.session.commit()
    with pytest.raises(closing.CloseError):
        closing.close_day(FEB_10, finance, now=evening)
    db.session.rollback()
    # An earlier day without movements does not hold the next ones back.
    closing.close_day(date(2027, 2, 12), finance, now=tokyo(2027, 2, 12, 18, 0))
    db.session.commit()
    assert db.session.scalars(select(DayClose.business_date).order_by(DayClose.business_date)).all() == \
        [date(2027, 2, 9), FEB_10, date(2027, 2, 12)]
    # A close is never undone: the database refuses to remove it.
    db.session.delete(db.session.get(DayClose, FEB_10))
    with pytest.raises(DBAPIError):
        db.session.flush()
    db.session.rollback()


# -- the month -------------------------------------------------------------------------------------

def test_the_monthly_summary_equals_the_sum_of_its_day_sheets(room, other_room, bookings):
    card = bookings.paid(room, tokyo(2027, 2, 1, 0, 0, 0), 3600, "card")
    bookings.paid(room, tokyo(2027, 2, 14, 12, 0), 2800, "cash")
    bookings.paid(other_room, tokyo(2027, 2, 14, 13, 0), 5000, "terminal")
    ledger_refund(card, 3600, at=tokyo(2027, 2, 20, 9, 0))
    fee(card.payment, 130, tokyo(2027, 2, 28, 23, 59, 59), "txn_fee_2")
    bookings.paid(room, tokyo(2027, 1, 31, 23, 59, 59), 9999)  # January
    bookings.paid(room, tokyo(2027, 3, 1, 0, 0, 0), 7777)  # March

    summary = closing.month_summary(2027, 2)

    assert (summary.first, summary.last, len(summary.days)) == (date(2027, 2, 1), date(2027, 2, 28), 28)
    days = [closing.day_sheet(date(2027, 2, 1) + timedelta(days=n)) for n in range(28)]
    by_days = closing.Figures()
    for day in days:
        for sheet in day.sheets:
            by_days.add(sheet.total)
    assert summary.total == by_days
    assert (summary.total.amount_in, summary.total.amount_out, summary.total.net) == (11400, 3730, 7670)
    for month_day, day in zip(summary.days, days, strict=True):
        assert month_day.day == day.day
        assert month_day.figures == closing.Figures().add(day.sheets[0].total)  # February: one fiscal year
    [section] = summary.sections
    assert section.fiscal_year == 2026 and section.period == ""
    accounts = {a.code: a for a in section.accounts}
    assert list(accounts) == [REVENUE, SPORTS, FEE]
    assert (accounts[REVENUE].total.amount_in, accounts[REVENUE].total.amount_current_refunds,
            accounts[REVENUE].total.net) == (6400, 3600, 2800)
    assert sorted(accounts[REVENUE].days) == [date(2027, 2, 1), date(2027, 2, 14), date(2027, 2, 20)]
    assert accounts[FEE].expense and accounts[FEE].total.net == -130
    assert (section.revenue.net, section.expense.net) == (7800, -130)


def test_the_monthly_summary_of_may_has_both_fiscal_years(room, bookings):
    march = bookings.paid(room, tokyo(2027, 3, 20, 10, 0), 3600, "card")
    ledger_refund(march, 1000, at=tokyo(2027, 5, 10, 9, 0))
    bookings.paid(room, tokyo(2027, 5, 10, 11, 0), 2800)

    summary = closing.month_summary(2027, 5)

    assert [(s.fiscal_year, s.period) for s in summary.sections] == [(2026, "old"), (2027, "new")]
    old, new = summary.sections
    assert (old.total.amount_out, old.total.amount_current_refunds, new.total.amount_in) == (1000, 1000, 2800)
    assert [(s.fiscal_year, s.accounts) for s in closing.month_summary(2027, 4).sections] == [(2026, []), (2027, [])]


# -- the pages -------------------------------------------------------------------------------------

def test_the_day_page_shows_the_sheet_and_closes_the_day(client, english, login_as, finance, room, bookings):
    bookings.paid(room, tokyo(2026, 11, 10, 10, 0), 2800)
    bookings.paid(room, tokyo(2026, 11, 10, 11, 0), 12345, "card")
    with frozen(tokyo(2026, 11, 10, 18, 0)):
        sign_in(client, login_as, finance)
        page = client.get("/finance/close?date=2026-11-10")
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "¥15,145" in html and "¥12,345" in html and "FY2026" in html
        assert 'name="close-confirm"' in html and 'name="csrf_token"' in html

        unconfirmed = client.post("/finance/close", data={"close-date": "2026-11-10"})
        assert unconfirmed.status_code == 422 and "Tick the box" in unconfirmed.get_data(as_text=True)
        assert db.session.scalar(select(func.count()).select_from(DayClose)) == 0

        closed = client.post("/finance/close", data={"close-date": "2026-11-10", "close-confirm": "y"})
        assert closed.status_code == 303 and closed.headers["Location"].endswith("/finance/close?date=2026-11-10")
        shown = client.get(closed.headers["Location"]).get_data(as_text=True)
        assert "is closed" in shown and "by 会計 係" in shown and 'name="close-confirm"' not in shown

        again = client.post("/finance/close", data={"close-date": "2026-11-10", "close-confirm": "y"})
        assert again.status_code == 409 and "already closed" in again.get_data(as_text=True)
    assert db.session.get(DayClose, date(2026, 11, 10)).closed_by_id == finance.id


def test_closing_needs_the_finance_role_and_a_csrf_token(app, client, login_as, make_user, finance):
    login_as(make_user("staff@example.com", role=Role.STAFF))
    assert client.post("/finance/close", data={"close-date": "2026-11-10", "close-confirm": "y"}).status_code == 403
    app.config["WTF_CSRF_ENABLED"] = True
    login_as(finance)
    refused = client.post("/finance/close", data={"close-date": "2026-11-10", "close-confirm": "y"})
    assert refused.status_code == 400  # CSRFProtect refuses it before the view
    assert db.session.scalar(select(func.count()).select_from(DayClose)) == 0


def test_the_day_page_defaults_to_today_in_tokyo_and_refuses_a_day_ahead(client, english, login_as, finance):
    with frozen(tokyo(2027, 2, 10, 0, 0, 0)):  # Tokyo midnight: the 10th has begun
        sign_in(client, login_as, finance)
        assert 'value="2027-02-10"' in client.get("/finance/close").get_data(as_text=True)
    with frozen(tokyo(2027, 2, 9, 23, 59, 59)):
        sign_in(client, login_as, finance)
        page = client.get("/finance/close").get_data(as_text=True)
        assert 'value="2027-02-09"' in page
        ahead = client.get("/finance/close?date=2027-02-10").get_data(as_text=True)
        assert "has not begun yet" in ahead and 'name="close-confirm"' not in ahead
        refused = client.post("/finance/close", data={"close-date": "2027-02-10", "close-confirm": "y"})
        assert refused.status_code == 409 and "has not begun yet" in refused.get_data(as_text=True)
        assert client.post("/finance/close", data={"close-date": "2027-02-09", "close-confirm": "y"}).status_code == 303
    assert db.session.scalars(select(DayClose.business_date)).all() == [date(2027, 2, 9)]


def test_the_day_page_tells_which_earlier_day_to_close_first(client, english, login_as, finance, room, bookings):
    bookings.paid(room, tokyo(2026, 11, 9, 10, 0), 2800)
    with frozen(tokyo(2026, 11, 10, 18, 0)):
        sign_in(client, login_as, finance)
        page = client.get("/finance/close?date=2026-11-10").get_data(as_text=True)
        assert "Close November 9, 2026 first" in page and "/finance/close?date=2026-11-09" in page
        refused = client.post("/finance/close", data={"close-date": "2026-11-10", "close-confirm": "y"})
        assert refused.status_code == 409 and "Close November 9, 2026 first" in refused.get_data(as_text=True)


def test_april_pages_show_both_years_and_late_rows_with_their_day_of_payment(client, english, login_as, finance,
                                                                            room, bookings):
    march = bookings.paid(room, tokyo(2027, 3, 31, 10, 0), 3600, "card")
    closing.close_day(date(2027, 3, 31), finance, now=tokyo(2027, 3, 31, 17, 0))
    db.session.commit()
    ledger_refund(march, 600, at=tokyo(2027, 3, 31, 20, 0))  # counted on 1 April, late, FY2026
    with frozen(tokyo(2027, 4, 1, 9, 0)):
        sign_in(client, login_as, finance)
        html = client.get("/finance/close?date=2027-04-01").get_data(as_text=True)
    assert "FY2026 Old fiscal year (closing period)" in html and "FY2027 New fiscal year" in html
    assert "Counted late: 1" in html and 'datetime="2027-03-31"' in html and "R2026-000001" in html
    assert "-¥600" in html


@pytest.mark.parametrize("asked", ["2027-02-30", "2027-2-x", "99999-01-01", "1900-01-01", "２０２７-０２-１０"])
def test_a_bad_day_gets_the_form_back_not_a_500(client, english, login_as, finance, asked):
    login_as(finance)
    page = client.get("/finance/close", query_string={"date": asked})
    assert page.status_code == 422 and "Enter a real date" in page.get_data(as_text=True)
    posted = client.post("/finance/close", data={"close-date": asked, "close-confirm": "y"})
    assert posted.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(DayClose)) == 0


def test_the_monthly_page(client, english, login_as, finance, room, bookings):
    bookings.paid(room, tokyo(2027, 5, 10, 11, 0), 2800)
    login_as(finance)
    page = client.get("/finance/monthly?month=2027-05")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "FY2026 Old fiscal year (closing period)" in html and "FY2027 New fiscal year" in html
    assert "¥2,800" in html and "/finance/close?date=2027-05-10" in html and "May 31, 2027" in html
    for bad in ("2027-13", "2027", "abcd-ef", "0000-01"):
        assert client.get("/finance/monthly", query_string={"month": bad}).status_code == 422
    assert client.get("/finance/monthly").status_code == 200


# -- the command -----------------------------------------------------------------------------------

def test_the_close_command(runner, room, bookings):
    bookings.paid(room, tokyo(2027, 2, 10, 10, 0), 2800)
    with frozen(tokyo(2027, 2, 10, 18, 0)):
        done = runner.invoke(args=["finance", "close", "--date", "2027-02-10"])
        assert done.exit_code == 0, done.output
        assert "closed 2027-02-10: 1 rows, net 2,800 yen" in done.output
        assert runner.invoke(args=["finance", "close", "--date", "2027-02-10"]).exit_code == 1
        assert runner.invoke(args=["finance", "close", "--date", "2027-02-11"]).exit_code == 1  # ahead
        assert runner.invoke(args=["finance", "close", "--date", "2027-02-31"]).exit_code == 2  # not a date
    close = db.session.get(DayClose, FEB_10)
    assert close.closed_by_id is None and close.rows == 1
