"""Staff exports of a building's bookings: CSV for Excel (UTF-8 with a BOM) and XLSX, scoped and formula-safe."""
import csv
import io
from datetime import timedelta

import openpyxl
import pytest

from reservations.extensions import db
from reservations.models import Building, Division, Receipt, Refund, Role, Room
from reservations.services import exports
from tests.conftest import CHUO_DIVISIONS
from tests.helpers import booking_day, calendar_booking


@pytest.fixture
def staff(make_user, login_as):
    return login_as(make_user("staff@example.com", role=Role.STAFF, name="窓口 職員"))


@pytest.fixture
def ledger(room, make_user):
    """Three bookings of the test building's room on one day, and one of another building's room."""
    day = booking_day()
    paid_user = make_user(name="山田 花子", name_kana="ヤマダ ハナコ", phone="03-1234-5678")
    paid = calendar_booking(paid_user, room, day, "MORNING", paid=True)
    db.session.add(Receipt(booking_id=paid.id, fiscal_year=2026, serial=7, payer_name="山田 花子", amount=2800,
                           issuer="中央区"))
    db.session.add(Refund(payment_id=paid.payment.id, amount=800, partial=True, reason="policy", state="succeeded"))
    db.session.add(Refund(payment_id=paid.payment.id, amount=500, partial=True, reason="policy", state="failed"))
    # Names typed at the counter that a spreadsheet would run as formulas.
    evil = make_user(name="=HYPERLINK(\"http://evil.example\",\"x\")", name_kana="@SUM(A1)", phone="+81-3-0000")
    unpaid = calendar_booking(evil, room, day, "AFTERNOON", state="held", channel="counter", pay_mode="deadline",
                              hold_expires_at=day_end(day))
    lapsed = calendar_booking(make_user(name="Lapsed Person"), room, day, "EVENING", state="held",
                              hold_expires_at=paid.start_at - timedelta(days=30))
    other = Building(name="別の会館")
    db.session.add(other)
    db.session.flush()
    elsewhere = Room(building_id=other.id, name="他館の部屋", letting="division")
    db.session.add(elsewhere)
    db.session.flush()
    for pos, (code, start, end, wd, hd) in enumerate(CHUO_DIVISIONS):
        db.session.add(Division(room_id=elsewhere.id, code=code, position=pos, start_time=start, end_time=end,
                                weekday_fee=wd, holiday_fee=hd))
    db.session.commit()
    theirs = calendar_booking(make_user(name="他館 太郎"), elsewhere, day, "MORNING", paid=True)
    return {"day": day, "paid": paid.id, "unpaid": unpaid.id, "lapsed": lapsed.id, "theirs": theirs.id,
            "building": room.building_id, "other": other.id}


def day_end(day):
    from reservations.services.availability import day_bounds

    return day_bounds(day)[1] + timedelta(days=10)


def export(client, building_id, fmt, first, last):
    return client.get(f"/staff/buildings/{building_id}/export", query_string={"from": first, "to": last, "format": fmt})


def test_the_csv_opens_in_excel_as_utf8_and_parses_with_csv(client, english, staff, ledger):
    day = ledger["day"].isoformat()
    response = export(client, ledger["building"], "csv", day, day)
    assert response.status_code == 200
    assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf")  # the byte-order mark Excel needs to read UTF-8
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == [str(label) for _key, label in exports.COLUMNS]
    assert rows[0][:3] == ["Booking number", "Date", "Start"]
    by_id = {int(r[0]): dict(zip([k for k, _ in exports.COLUMNS], r, strict=True)) for r in rows[1:]}
    assert set(by_id) == {ledger["paid"], ledger["unpaid"]}  # no lapsed hold, nothing of the other building
    paid = by_id[ledger["paid"]]
    assert paid == {"id": str(ledger["paid"]), "date": day, "start": "09:00", "end": "12:00", "room": "音楽室",
                    "name": "山田 花子", "kana": "ヤマダ ハナコ", "phone": "03-1234-5678",
                    "residency": "Lives in the ward", "channel": "Online", "state": "Paid",
                    "method": "Card (online)", "paid": "2800", "refunded": "800", "receipt": "2026-000007"}
    unpaid = by_id[ledger["unpaid"]]
    assert (unpaid["channel"], unpaid["state"], unpaid["paid"], unpaid["method"]) == (
        "Counter", "Unpaid, at the counter", "0", "")
    # Formula injection: every such cell starts with an apostrophe, so Excel shows it as text.
    assert unpaid["name"] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert unpaid["kana"] == "'@SUM(A1)" and unpaid["phone"] == "'+81-3-0000"
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_the_xlsx_opens_in_openpyxl_with_the_same_rows(client, english, staff, ledger):
    day = ledger["day"].isoformat()
    response = export(client, ledger["building"], "xlsx", day, day)
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.get_data())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == [str(label) for _key, label in exports.COLUMNS]
    assert [r[0] for r in rows[1:]] == [ledger["paid"], ledger["unpaid"]]  # in time order
    paid = rows[1]
    assert paid[1].date() == ledger["day"] and paid[2:6] == ("09:00", "12:00", "音楽室", "山田 花子")
    assert paid[12:] == (2800, 800, "2026-000007")
    assert rows[2][5] == "'=HYPERLINK(\"http://evil.example\",\"x\")"  # text, never a formula
    assert all(sheet.cell(row=3, column=c).data_type != "f" for c in range(1, len(exports.COLUMNS) + 1))


def test_staff_export_only_their_buildings(client, english, make_user, login_as, ledger):
    day = ledger["day"].isoformat()
    other = db.session.get(Building, ledger["other"])
    login_as(make_user("elsewhere@example.com", role=Role.STAFF, buildings=[other]))
    for fmt in ("csv", "xlsx"):
        assert export(client, ledger["building"], fmt, day, day).status_code == 404
    theirs = export(client, ledger["other"], "csv", day, day).get_data().decode("utf-8-sig")
    assert "他館 太郎" in theirs and "山田 花子" not in theirs and "音楽室" not in theirs
    assert len(list(csv.reader(io.StringIO(theirs)))) == 2


@pytest.mark.parametrize(("first", "last", "fmt", "message"), [
    ("", "", "csv", "Choose the first and the last day to export."),
    ("2027-02-30", "2027-03-01", "csv", "Enter the days as YYYY-MM-DD"),
    ("2027-03-02", "2027-03-01", "xlsx", "The last day must not be before the first day."),
    ("2027-01-01", "2028-01-02", "csv", "Export at most 366 days at a time."),
    ("2027-01-01", "2027-01-02", "pdf", "Choose CSV or Excel (XLSX)."),
    ("9999-12-31", "9999-12-31", "csv", "Enter the days as YYYY-MM-DD"),
])
def test_a_bad_range_is_refused_with_a_clear_message(client, english, staff, room, first, last, fmt, message):
    response = export(client, room.building_id, fmt, first, last)
    assert response.status_code == 422 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert message in page
    assert f'value="{first}"' in page  # what was typed stays, to be corrected


def test_the_export_page_offers_this_month(client, english, staff, room):
    response = client.get(f"/staff/buildings/{room.building_id}/export")
    assert response.status_code == 200
    assert 'name="format" value="csv"' in response.get_data(as_text=True)


def test_a_full_leap_year_is_the_longest_range(app):
    assert exports.parse_period("2028-01-01", "2028-12-31").days == 366
    assert exports.parse_period("2027-01-01", "2028-01-01").days == 366
    with pytest.raises(exports.ExportError):
        exports.parse_period("2027-01-01", "2028-01-02")


def test_the_day_view_links_to_both_exports(client, english, staff, room):
    html = client.get(f"/staff/buildings/{room.building_id}/day?date=2027-02-10").get_data(as_text=True)
    assert f'action="/staff/buildings/{room.building_id}/export"' in html
    assert 'name="format" value="csv"' in html and 'name="format" value="xlsx"' in html
    assert 'value="2027-02-01"' in html and 'value="2027-02-28"' in html  # the day's month, by default
