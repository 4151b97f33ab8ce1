"""Exemptions (減免) in the records: the receipt, the finance export and the daily close show the full fee, the
exemption's code, the reduction and what was paid (issue 10, test 11's "the receipt and export show both
amounts"); the close counts reductions apart, never as money, and a booking exempted in full (no payment, no
ledger row) is counted there on the day it was confirmed.

Bookings are made through the services (place_hold with an exemption kind, the counter's cash payment), at
frozen moments: the audit entry of a confirmation takes the clock's time.
"""
import csv
import io
from datetime import UTC, date, datetime, timedelta

import openpyxl
import pytest
import time_machine
from sqlalchemy import func, select

from reservations.extensions import db
from reservations.models import (
    Booking,
    BookingState,
    DayClose,
    ExemptionKind,
    LedgerEntry,
    Payment,
    Receipt,
    Role,
)
from reservations.services import counter, exemptions
from reservations.services.booking import place_hold, reserve
from reservations.services.finance import close as closing
from reservations.services.finance import exports as ledger_export
from reservations.services.rules import division_slot
from reservations.timeutil import TOKYO
from tests.helpers import ledger_booking, ledger_refund, outbox

FEB_10 = date(2027, 2, 10)
KEYS = [key for key, _label in ledger_export.COLUMNS]


def tokyo(*args) -> datetime:
    return datetime(*args, tzinfo=TOKYO).astimezone(UTC)


def col(name: str) -> int:
    return KEYS.index(name)


@pytest.fixture
def kinds(app):
    welfare = ExemptionKind(code="WELFARE50", name_ja="福祉団体減免", name_en="Welfare groups", rate_pct=50,
                            legal_ground="条例第10条第2号", eligible="individual", needs_approval=False)
    ward = ExemptionKind(code="WARD100", name_ja="区主催行事", name_en="The ward's own events", rate_pct=100,
                         legal_ground="条例第10条第1号", eligible="individual", needs_approval=False)
    review = ExemptionKind(code="SCHOOL50", name_ja="学校減免", name_en="Schools", rate_pct=50,
                           legal_ground="条例第10条第3号", eligible="individual", needs_approval=True)
    db.session.add_all([welfare, ward, review])
    db.session.commit()
    return {"welfare": welfare, "ward": ward, "review": review}


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


@pytest.fixture
def finance(make_user):
    return make_user("finance@example.com", role=Role.FINANCE, name="会計 係")


class Desk:
    """Books the test's room for the resident at frozen moments, each booking on a use day of its own."""

    def __init__(self, resident, room, staff):
        self.resident, self.room, self.staff = resident, room, staff
        self.next_day = date(2027, 2, 24)  # two weeks after FEB_10, a plain Wednesday

    def _slot(self):
        day = self.next_day
        self.next_day += timedelta(days=1)
        return division_slot(self.room, day, ["MORNING"])  # ¥2,800

    def paid(self, at: datetime, kind=None) -> Booking:
        """Held with `kind` (reduced at once) and paid in cash at the counter at `at`, with its receipt."""
        with time_machine.travel(at, tick=False):
            booking = place_hold(self.resident, self.room, self._slot(), now=at, exemption_kind=kind)
            counter.record_counter_payment(booking, "cash", booking.price, staff=self.staff, now=at)
            db.session.commit()
        return booking

    def free(self, at: datetime, kind) -> Booking:
        """Booked online with a 100 % exemption at `at`: confirmed at once, nothing to pay."""
        with time_machine.travel(at, tick=False):
            booking = reserve(self.resident, self.room, self._slot(), now=at, exemption_kind=kind)
            db.session.commit()
        return booking


@pytest.fixture
def desk(resident, room, staff, kinds):
    return Desk(resident, room, staff)


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def download(client, fmt="csv", first="2027-02-10", last="2027-02-11"):
    return client.get("/finance/export/download", query_string={"from": first, "to": last, "format": fmt})


def money(sheet: closing.DaySheet) -> list:
    """The sheet's money as stored, without its reductions."""
    return [{k: v for k, v in s.items() if k != closing.REDUCTIONS} for s in sheet.to_json()]


# -- the receipt -------------------------------------------------------------------------------------------

def test_a_50_percent_exemption_halves_the_charge_and_the_receipt_shows_both_amounts(app, client, english,
                                                                                   login_as, resident, desk, kinds):
    exempted = desk.paid(tokyo(2027, 2, 10, 10, 0), kinds["welfare"])
    plain = desk.paid(tokyo(2027, 2, 10, 11, 0))

    assert exempted.price == 1400 and exempted.exemption.full_fee == 2800 and exempted.exemption.reduction == 1400
    assert exempted.payment.captured_amount == 1400
    receipt = db.session.scalar(select(Receipt).where(Receipt.booking_id == exempted.id))
    assert receipt.amount == 1400

    login_as(resident)
    page = client.get(f"/bookings/{exempted.id}/receipt")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    breakdown = html[html.index('class="receipt-breakdown"'):html.index("</table>", html.index("receipt-breakdown"))]
    assert "Fee (before the exemption)" in breakdown and "¥2,800" in breakdown
    assert "WELFARE50" in breakdown and "Welfare groups" in breakdown and "条例第10条第2号" in breakdown
    assert "Rate 50%" in breakdown
    assert '<td class="money receipt-reduction">-¥1,400</td>' in breakdown
    assert "Amount received" in breakdown and breakdown.rindex("¥1,400") > breakdown.index("Amount received")

    plain_page = client.get(f"/bookings/{plain.id}/receipt").get_data(as_text=True)
    assert "¥2,800" in plain_page and "receipt-breakdown" not in plain_page

    # The receipt mail (Japanese: the resident's language) says the same.
    bodies = [m.get_body(("plain",)).get_content() for m in outbox(app)]
    body = next(b for b in bodies if receipt.number in b)
    assert "¥2,800" in body and "WELFARE50" in body and "福祉団体減免" in body and "-¥1,400" in body
    assert "¥1,400" in body.replace("-¥1,400", "")


def test_a_refused_exemption_leaves_the_full_fee_and_no_reduction_on_the_receipt(client, english, login_as,
                                                                               resident, room, staff, kinds):
    at = tokyo(2027, 2, 10, 10, 0)
    with time_machine.travel(at, tick=False):
        booking = place_hold(resident, room, division_slot(room, date(2027, 2, 24), ["MORNING"]), now=at,
                             exemption_kind=kinds["review"])
        assert booking.price == 2800 and booking.pay_mode == "deadline"  # held, not charged, while staff decide
        exemptions.refuse(booking.exemption, staff=staff, now=at, reason="対象外の団体")
        counter.record_counter_payment(booking, "cash", booking.price, staff=staff, now=at)
        db.session.commit()
    login_as(resident)
    html = client.get(f"/bookings/{booking.id}/receipt").get_data(as_text=True)
    assert "¥2,800" in html and "receipt-breakdown" not in html and "SCHOOL50" not in html
    assert closing.day_reductions(FEB_10) == []


# -- the export ------------------------------------------------------------------------------------------

def test_the_export_shows_the_full_fee_the_code_the_reduction_and_the_amount(client, english, login_as, finance,
                                                                              desk, kinds):
    exempted = desk.paid(tokyo(2027, 2, 10, 10, 0), kinds["welfare"])
    plain = desk.paid(tokyo(2027, 2, 10, 11, 0))
    refund = ledger_refund(exempted, 400, at=tokyo(2027, 2, 11, 9, 0))
    login_as(finance)

    rows = read_csv(download(client).data)
    heading = rows[0]
    assert heading[col("method"):col("amount") + 1] == [
        "Payment method", "Full fee (yen)", "Exemption code", "Reduction (yen)", "Amount (yen)"]
    by_booking = {(int(r[col("booking_id")]), r[col("amount")]): r for r in rows[1:]}
    capture = by_booking[(exempted.id, "1400")]
    assert [capture[col(k)] for k in ("full_fee", "exemption_code", "reduction", "amount")] == \
        ["2800", "WELFARE50", "1400", "1400"]
    plain_row = by_booking[(plain.id, "2800")]
    assert [plain_row[col(k)] for k in ("full_fee", "exemption_code", "reduction", "amount")] == ["", "", "", "2800"]
    # A refund of the exempted booking is money out, not a second reduction.
    refund_row = next(r for r in rows[1:] if int(r[col("id")]) == refund.id)
    assert [refund_row[col(k)] for k in ("full_fee", "exemption_code", "reduction", "amount")] == ["", "", "", "-400"]

    sheet = openpyxl.load_workbook(io.BytesIO(download(client, "xlsx").data), read_only=True).worksheets[0]
    cells = {r[col("id")]: r for r in sheet.iter_rows(min_row=2, values_only=True)}
    xlsx_capture = next(r for r in cells.values() if r[col("booking_id")] == exempted.id and r[col("amount")] == 1400)
    assert (xlsx_capture[col("full_fee")], xlsx_capture[col("exemption_code")], xlsx_capture[col("reduction")]) == \
        (2800, "WELFARE50", 1400)

    preview = ledger_export.preview(ledger_export.parse_filter("2027-02-10", "2027-02-11"))
    assert (preview.rows, preview.net, preview.exempted, preview.reductions) == (3, 1400 + 2800 - 400, 1, 1400)
    page = client.get("/finance/export", query_string={"from": "2027-02-10", "to": "2027-02-11"})
    assert page.status_code == 200 and "¥1,400" in page.get_data(as_text=True)


def test_the_export_joins_the_exemptions_in_its_one_query(app, desk, kinds):
    for n in range(3):
        desk.paid(tokyo(2027, 2, 10, 10, n), kinds["welfare"])
    db.session.expire_all()
    from tests.helpers import statements

    with app.test_request_context(), statements() as sent:
        rows = list(ledger_export.ledger_rows(ledger_export.parse_filter("2027-02-10", "2027-02-10")))
    assert len(rows) == 3 and all(cells[col("exemption_code")] == "WELFARE50" for _id, cells in rows)
    selects = [s for s in sent if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1 and "exemptions" in selects[0]  # no query per row


# -- the daily close ------------------------------------------------------------------------------------

def test_the_close_counts_reductions_apart_and_its_money_is_what_the_ledger_received(desk, kinds, finance):
    desk.paid(tokyo(2027, 2, 10, 10, 0), kinds["welfare"])
    desk.paid(tokyo(2027, 2, 10, 11, 0), kinds["welfare"])
    desk.paid(tokyo(2027, 2, 10, 12, 0))

    sheet = closing.day_sheet(FEB_10)

    [only] = sheet.sheets
    # Money: what was received (1,400 + 1,400 + 2,800), as ledger rows of a plain booking would give it.
    assert (only.revenue.count_in, only.revenue.amount_in, sheet.rows, sheet.net) == (3, 5600, 3, 5600)
    ledger_sum = db.session.scalar(select(func.sum(LedgerEntry.amount)).where(LedgerEntry.business_date == FEB_10))
    assert sheet.net == ledger_sum
    # Reductions apart: by code, the bookings, their full fees, the reductions and what was paid.
    assert [r.to_json() for r in only.reductions] == [
        {"code": "WELFARE50", "count": 2, "full_fee": 5600, "reduction": 2800, "paid": 2800, "free": 0}]
    assert (only.reduction_total.count, only.reduction_total.reduction) == (2, 2800)

    # The same money without exemptions gives the same figures: an exemption changes no money line.
    plain_day = date(2027, 3, 10)
    for n, amount in enumerate((1400, 1400, 2800)):
        ledger_booking(desk.resident, desk.room, date(2027, 6, 1) + timedelta(days=n),
                       at=tokyo(2027, 3, 10, 10 + n, 0), amount=amount)
    assert money(closing.day_sheet(plain_day)) == money(sheet)
    assert closing.day_sheet(plain_day).sheets[0].reductions == []

    # The close stores the reductions with the sheet, and the page compares both.
    close = closing.close_day(FEB_10, finance, now=tokyo(2027, 2, 10, 18, 0))
    db.session.commit()
    assert (close.rows, close.net) == (3, 5600)
    db.session.expire_all()
    stored = db.session.get(DayClose, FEB_10).totals
    assert stored[0][closing.REDUCTIONS] == [
        {"code": "WELFARE50", "count": 2, "full_fee": 5600, "reduction": 2800, "paid": 2800, "free": 0}]
    again = closing.day_sheet(FEB_10)
    assert again.matches_close and again.reductions_match_close


def test_a_full_exemption_has_no_ledger_row_and_is_counted_on_the_day_it_was_confirmed(desk, kinds, finance):
    free = desk.free(tokyo(2027, 2, 10, 10, 0), kinds["ward"])

    assert (free.state, free.price, free.exemption.reduction) == (BookingState.CONFIRMED, 0, 2800)
    assert db.session.scalar(select(func.count()).select_from(Payment).where(Payment.booking_id == free.id)) == 0
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0

    sheet = closing.day_sheet(FEB_10)
    assert (sheet.rows, sheet.net) == (0, 0) and sheet.sheets[0].lines == []
    assert [r.to_json() for r in sheet.sheets[0].reductions] == [
        {"code": "WARD100", "count": 1, "full_fee": 2800, "reduction": 2800, "paid": 0, "free": 1}]
    assert closing.day_reductions(date(2027, 2, 9)) == [] and closing.day_reductions(date(2027, 2, 11)) == []

    # Tokyo's day: 23:59:59 is still the 10th, 00:00 the 11th.
    desk.free(tokyo(2027, 2, 10, 23, 59, 59), kinds["ward"])
    desk.free(tokyo(2027, 2, 11, 0, 0, 0), kinds["ward"])
    assert [(r.code, r.count) for r in closing.day_reductions(FEB_10)] == [("WARD100", 2)]
    assert [(r.code, r.count) for r in closing.day_reductions(date(2027, 2, 11))] == [("WARD100", 1)]

    # The 10th closed: a full exemption confirmed later that day counts on the 11th, as a late ledger row
    # would, and the closed day's stored figures still hold.
    closing.close_day(FEB_10, finance, now=tokyo(2027, 2, 11, 0, 30))
    db.session.commit()
    desk.free(tokyo(2027, 2, 11, 1, 0), kinds["ward"])
    closing.close_day(date(2027, 2, 11), finance, now=tokyo(2027, 2, 11, 2, 0))
    db.session.commit()
    desk.free(tokyo(2027, 2, 11, 3, 0), kinds["ward"])  # the 11th closed meanwhile: on the 12th
    assert [(r.code, r.count, r.free) for r in closing.day_reductions(FEB_10)] == [("WARD100", 2, 2)]
    assert [(r.code, r.count) for r in closing.day_reductions(date(2027, 2, 11))] == [("WARD100", 2)]
    assert [(r.code, r.count) for r in closing.day_reductions(date(2027, 2, 12))] == [("WARD100", 1)]
    for day in (FEB_10, date(2027, 2, 11)):
        shown = closing.day_sheet(day)
        assert shown.matches_close and shown.reductions_match_close
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


def test_the_close_page_shows_the_reductions_apart(client, english, login_as, desk, kinds, finance):
    desk.paid(tokyo(2027, 2, 10, 10, 0), kinds["welfare"])
    desk.free(tokyo(2027, 2, 10, 11, 0), kinds["ward"])
    login_as(finance)

    html = client.get("/finance/close?date=2027-02-10").get_data(as_text=True)

    assert "Reductions (exemptions), counted apart" in html
    section = html[html.index('class="reductions"'):html.index('class="day-total"')]
    assert "WELFARE50" in section and "Welfare groups" in section and "条例第10条第2号" in section
    assert "WARD100" in section and "The ward&#39;s own events" in section and "100%" in section
    assert "¥5,600" in section and "¥4,200" in section and "¥1,400" in section  # full fees, reductions, paid
    # The money is what was received: one payment of ¥1,400.
    day_total = html[html.index('class="day-total"'):]
    assert "¥1,400" in day_total and "¥4,200" not in day_total
    empty = client.get("/finance/close?date=2027-02-12").get_data(as_text=True)
    assert "No reductions on this day." in empty


def test_a_day_closed_before_reductions_were_stored_still_matches(desk, kinds, finance):
    desk.paid(tokyo(2027, 2, 10, 10, 0), kinds["welfare"])
    sheet = closing.day_sheet(FEB_10)
    db.session.add(DayClose(business_date=FEB_10, closed_at=tokyo(2027, 2, 10, 18, 0), rows=sheet.rows,
                            net=sheet.net, totals=money(sheet)))  # as a close stored them before
    db.session.commit()
    shown = closing.day_sheet(FEB_10)
    assert shown.closed is not None and shown.matches_close and shown.reductions_match_close


def test_a_full_exemption_approved_later_counts_on_the_day_of_its_approval(resident, room, staff):
    kind = ExemptionKind(code="SCHOOL100", name_ja="学校行事", name_en="School events", rate_pct=100,
                         legal_ground="条例第10条第4号", eligible="individual", needs_approval=True)
    db.session.add(kind)
    db.session.commit()
    booked, approved = tokyo(2027, 2, 10, 10, 0), tokyo(2027, 2, 12, 9, 30)
    with time_machine.travel(booked, tick=False):
        booking = reserve(resident, room, division_slot(room, date(2027, 2, 24), ["MORNING"]), now=booked,
                          exemption_kind=kind)
        db.session.commit()
    assert booking.state == BookingState.HELD and booking.price == 2800  # pending: held, not charged
    assert closing.day_reductions(FEB_10) == []  # nothing is reduced before staff decide
    with time_machine.travel(approved, tick=False):
        exemptions.approve(booking.exemption, staff=staff, now=approved)
        db.session.commit()
    assert (booking.state, booking.price) == (BookingState.CONFIRMED, 0)
    assert closing.day_reductions(FEB_10) == []
    assert [r.to_json() for r in closing.day_reductions(date(2027, 2, 12))] == [
        {"code": "SCHOOL100", "count": 1, "full_fee": 2800, "reduction": 2800, "paid": 0, "free": 1}]
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0
