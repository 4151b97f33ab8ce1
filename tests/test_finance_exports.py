"""The ledger export (services/finance/exports.py, /finance/export, `flask finance export`): each filter at its
boundaries (Tokyo midnight, 31 March / 1 April), CP932 that round-trips and reports every replaced character,
XLSX that openpyxl reads back, a streamed response equal to the CLI's file, and the audit entry."""
import csv
import io
import zipfile
from datetime import date, datetime, time

import openpyxl
import pytest
from flask_babel import gettext
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import (
    AuditEntry,
    Building,
    DayClose,
    Division,
    LedgerEntry,
    LedgerSettlement,
    Payout,
    Receipt,
    Role,
    Room,
)
from reservations.services import audit_trail
from reservations.services.finance import exports as ledger_export
from reservations.timeutil import at_tokyo
from tests.conftest import CHUO_DIVISIONS
from tests.helpers import ledger_booking, ledger_refund

KEYS = [key for key, _label in ledger_export.COLUMNS]
MARCH_31, APRIL_1, APRIL_2 = date(2027, 3, 31), date(2027, 4, 1), date(2027, 4, 2)


def col(name: str) -> int:
    return KEYS.index(name)


@pytest.fixture
def finance(make_user, login_as):
    return login_as(make_user("finance@example.com", role=Role.FINANCE, name="会計 係"))


@pytest.fixture
def books(room, make_user):
    """Five ledger rows around the fiscal-year boundary, in two buildings:
    - late_march: card, 2027-03-31 23:59:59 JST (FY2026), receipt 2026-000005, settled by po_1 on 2027-04-05;
    - midnight: cash, 2027-04-01 00:00:00 JST (= 2027-03-31 15:00 UTC; FY2027);
    - elsewhere: terminal, 2027-04-01 12:00 JST, in the other building (its own account 13-01-06-01);
    - astral: card, 2027-04-01 09:00 JST, paid by "𠮷田 🏀";
    - refund: 800 yen of late_march on 2027-04-02 10:00 JST: 現年度戻出 of FY2026, R2026-000001."""
    other = Building(name="別の会館", name_kana="ベツノカイカン", name_en="Other Hall", revenue_account="13-01-06-01")
    db.session.add(other)
    db.session.flush()
    gym = Room(building_id=other.id, name="体育室", name_en="Gym", letting="division", kind="gym")
    db.session.add(gym)
    db.session.flush()
    for pos, (code, start, end, weekday, holiday) in enumerate(CHUO_DIVISIONS):
        db.session.add(Division(room_id=gym.id, code=code, position=pos, start_time=start, end_time=end,
                                weekday_fee=weekday, holiday_fee=holiday))
    db.session.commit()
    payer = make_user(name="山田 花子")
    late_march = ledger_booking(payer, room, date(2027, 5, 10), at=at_tokyo(MARCH_31, time(23, 59, 59)),
                                amount=2800, method="card")
    midnight = ledger_booking(payer, room, date(2027, 5, 11), at=at_tokyo(APRIL_1, time(0, 0)), amount=3600,
                              method="cash")
    elsewhere = ledger_booking(payer, gym, date(2027, 5, 12), at=at_tokyo(APRIL_1, time(12, 0)), amount=1500,
                               method="terminal")
    astral = ledger_booking(make_user(name="𠮷田 🏀"), room, date(2027, 5, 13), at=at_tokyo(APRIL_1, time(9, 0)),
                            amount=2800, method="card")
    refund = ledger_refund(late_march, 800, at=at_tokyo(APRIL_2, time(10, 0)))
    entry = {b: db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.booking_id == b.id,
                                                                LedgerEntry.kind == "capture"))
             for b in (late_march, midnight, elsewhere, astral)}
    db.session.add(Receipt(booking_id=late_march.id, fiscal_year=2026, serial=5, payer_name="山田 花子", amount=2800,
                           issuer="中央区"))
    db.session.add(Payout(id="po_1", arrival_date=date(2027, 4, 5), gross=2800, net=2800))
    db.session.flush()
    db.session.add(LedgerSettlement(ledger_entry_id=entry[late_march], balance_transaction_id="txn_1",
                                    payout_id="po_1", arrival_date=date(2027, 4, 5)))
    db.session.commit()
    return {"late_march": entry[late_march], "midnight": entry[midnight], "elsewhere": entry[elsewhere],
            "astral": entry[astral], "refund": refund.id, "other_building": other.id, "building": room.building_id}


def download(client, fmt="csv", **args):
    query = {"from": "2027-03-31", "to": "2027-04-02", **args}
    if fmt is not None:
        query["format"] = fmt
    return client.get("/finance/export/download", query_string=query)


def read_csv(data: bytes, encoding: str = "utf-8") -> list[list[str]]:
    if encoding == "utf-8":
        assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs
        text = data.decode("utf-8-sig")
    else:
        text = data.decode("cp932")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline="")))


def ids(rows: list[list[str]]) -> list[int]:
    return [int(r[col("id")]) for r in rows[1:]]


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# -- the filters, at their boundaries --------------------------------------------------------------------

def test_business_days_are_tokyo_days_both_included(client, finance, books):
    march = read_csv(download(client, **{"from": "2027-03-31", "to": "2027-03-31"}).data)
    assert ids(march) == [books["late_march"]]  # 23:59:59 JST is still 31 March
    april = read_csv(download(client, **{"from": "2027-04-01", "to": "2027-04-01"}).data)
    # 00:00 JST (15:00 UTC the day before) is 1 April; the day's rows in the order they were written
    assert ids(april) == sorted([books["midnight"], books["astral"], books["elsewhere"]])
    both = read_csv(download(client, **{"from": "2027-03-31", "to": "2027-04-02"}).data)
    assert len(both) == 6
    row = {int(r[col("id")]): r for r in both[1:]}
    assert row[books["midnight"]][col("business_date")] == "2027-04-01"
    assert row[books["midnight"]][col("paid_on")] == "2027-04-01"
    assert row[books["midnight"]][col("recorded_at")] == "2027-04-01 00:00:00"
    assert row[books["late_march"]][col("recorded_at")] == "2027-03-31 23:59:59"
    assert ids(read_csv(download(client, **{"from": "2027-04-03", "to": "2027-04-30"}).data)) == []


def test_fiscal_year_is_the_rows_own_across_31_march_and_1_april(client, finance, books):
    old = ids(read_csv(download(client, fiscal_year="2026").data))
    # the refund on 2 April gives back a FY2026 fee: 現年度戻出, booked to FY2026
    assert old == [books["late_march"], books["refund"]]
    new = ids(read_csv(download(client, fiscal_year="2027").data))
    assert sorted(new) == sorted([books["midnight"], books["astral"], books["elsewhere"]])
    refund = next(r for r in read_csv(download(client).data)[1:] if int(r[col("id")]) == books["refund"])
    assert refund[col("fiscal_year")] == "2026"
    assert refund[col("amount")] == "-800"
    assert refund[col("number")] == "R2026-000001"
    assert refund[col("refund_kind")] == str(ledger_export.REFUND_KIND_LABELS["current"])


def test_building_method_and_account_filters(client, finance, books):
    assert ids(read_csv(download(client, building=str(books["other_building"])).data)) == [books["elsewhere"]]
    assert books["elsewhere"] not in ids(read_csv(download(client, building=str(books["building"])).data))
    assert ids(read_csv(download(client, method="cash").data)) == [books["midnight"]]
    assert ids(read_csv(download(client, method="terminal").data)) == [books["elsewhere"]]
    assert sorted(ids(read_csv(download(client, method="card").data))) == sorted(
        [books["late_march"], books["astral"], books["refund"]])
    assert ids(read_csv(download(client, account="13-01-06-01").data)) == [books["elsewhere"]]
    assert books["elsewhere"] not in ids(read_csv(download(client, account="13-01-02-01").data))
    # every filter at once: AND
    assert ids(read_csv(download(client, method="card", fiscal_year="2027", building=str(books["building"]),
                                 account="13-01-02-01").data)) == [books["astral"]]


def test_every_kind_of_movement_has_its_words():
    from reservations.models.payment import LEDGER_SIGNS

    assert set(ledger_export.KIND_LABELS) == set(LEDGER_SIGNS)


def test_the_columns_trace_each_row(client, finance, books):
    rows = {int(r[col("id")]): r for r in read_csv(download(client).data)[1:]}
    capture = rows[books["late_march"]]
    assert capture[col("number")] == "2026-000005"  # the booking's receipt
    assert capture[col("payout_id")] == "po_1" and capture[col("arrival_date")] == "2027-04-05"
    assert capture[col("balance_transaction_id")] == "txn_1"
    assert capture[col("charge_id")].startswith("ch_led_") and capture[col("intent_id")].startswith("pi_led_")
    assert capture[col("amount")] == "2800" and capture[col("payer")] == "山田 花子"
    assert capture[col("building")] == "テスト会館" and capture[col("room")] == "音楽室"
    assert capture[col("account_code")] == "13-01-02-01"
    assert capture[col("account_name")] == "使用料及手数料 使用料 総務使用料 区民施設使用料"
    assert capture[col("late")] == gettext("No") and capture[col("business_date")] == "2027-03-31"
    assert rows[books["midnight"]][col("number")] == "" and rows[books["midnight"]][col("arrival_date")] == ""
    body = download(client).get_data(as_text=True)
    assert "@example.com" not in body  # no e-mail (nor phone: the export has no such column)


def test_a_late_row_is_on_the_day_it_is_counted(client, finance, room, resident):
    db.session.add(DayClose(business_date=date(2027, 4, 3)))
    db.session.commit()
    late = ledger_booking(resident, room, date(2027, 5, 14), at=at_tokyo(date(2027, 4, 3), time(10)), method="cash")
    assert ids(read_csv(download(client, **{"from": "2027-04-03", "to": "2027-04-03"}).data)) == []
    rows = read_csv(download(client, **{"from": "2027-04-04", "to": "2027-04-04"}).data)
    assert [r[col("booking_id")] for r in rows[1:]] == [str(late.id)]
    assert (rows[1][col("business_date")], rows[1][col("paid_on")]) == ("2027-04-04", "2027-04-03")
    assert rows[1][col("late")] == gettext("Yes")


@pytest.mark.parametrize("args, field", [
    ({"from": "2027-04-02", "to": "2027-04-01"}, "to"),
    ({"from": "2026-04-01", "to": "2027-06-02"}, "to"),  # 428 days
    ({"from": "2027-02-30", "to": "2027-03-01"}, "from"),
    ({"from": "", "to": "2027-03-01"}, "from"),
    ({"from": "99999-01-01", "to": "2027-03-01"}, "from"),
    ({"fiscal_year": "２０２６"}, "fiscal_year"),
    ({"fiscal_year": "1"}, "fiscal_year"),
    ({"building": "999999"}, "building"),
    ({"building": "1e3"}, "building"),
    ({"method": "bitcoin"}, "method"),
    ({"account": "99-99"}, "account"),
    ({"format": "pdf"}, "format"),
])
def test_a_bad_filter_gets_the_form_back_with_the_reason(client, finance, books, args, field):
    query = {"from": "2027-03-31", "to": "2027-04-02", "format": "csv", **args}
    response = client.get("/finance/export/download", query_string=query)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'class="error-summary"' in page and "<form" in page
    with pytest.raises(ledger_export.FilterError) as caught:
        ledger_export.parse_filter(query["from"], query["to"], fiscal_year=query.get("fiscal_year"),
                                   building=query.get("building"), method=query.get("method"),
                                   account=query.get("account"))
        ledger_export.parse_format(query["format"])
    assert field in caught.value.errors
    assert client.get("/finance/export", query_string=query).status_code == (422 if field != "format" else 200)
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "finance_export")) is None


def test_a_fiscal_year_with_its_closing_period_fits_in_one_export(client, finance, books):
    response = download(client, **{"from": "2026-04-01", "to": "2027-06-01"})  # 427 days
    assert response.status_code == 200
    assert len(read_csv(response.data)) == 6


# -- CP932 ------------------------------------------------------------------------------------------------

def test_cp932_round_trips_and_reports_every_replaced_character(client, finance, books):
    utf8 = read_csv(download(client).data)
    files = unzip(download(client, "cp932").data)
    assert set(files) == {"ledger.csv", "replacements.csv"}
    cp932 = read_csv(files["ledger.csv"], "cp932")
    assert len(cp932) == len(utf8) == 6  # the row is there: never dropped
    for theirs, ours in zip(cp932, utf8, strict=True):
        if ours[col("id")] == str(books["astral"]):
            assert theirs[col("payer")] == "〓田 〓"
            assert ours[col("payer")] == "𠮷田 🏀"
            assert theirs[:col("payer")] == ours[:col("payer")] and theirs[col("payer") + 1:] == ours[col("payer") + 1:]
        else:
            assert theirs == ours
    report = read_csv(files["replacements.csv"])
    assert report[0] == [str(h) for h in ledger_export.REPORT_COLUMNS]
    assert [r[:5] for r in report[1:]] == [
        [str(books["astral"]), str(ledger_export.COLUMNS[col("payer")][1]), "𠮷", "U+20BB7", "〓"],
        [str(books["astral"]), str(ledger_export.COLUMNS[col("payer")][1]), "🏀", "U+1F3C0", "〓"],
    ]


def test_the_configured_substitution_is_honoured(app, client, finance, books):
    app.config["CP932_SUBSTITUTIONS"] = {"𠮷": "吉"}
    files = unzip(download(client, "cp932").data)
    row = next(r for r in read_csv(files["ledger.csv"], "cp932") if r[0] == str(books["astral"]))
    assert row[col("payer")] == "吉田 〓"
    report = read_csv(files["replacements.csv"])[1:]
    assert [(r[2], r[4], r[5]) for r in report] == [("𠮷", "吉", str(ledger_export.RULES["table"])),
                                                    ("🏀", "〓", str(ledger_export.RULES["substitute"]))]


def test_what_cp932_holds_under_another_code_point_is_reported_too(app):
    """Python's cp932 writes 〜 (U+301C) as 0x8160, which reads back as ～ (U+FF5E): same bytes, other
    character; a decomposed が is composed; — (U+2014) takes CP932's ―; 葛 with a variation selector loses it;
    an emoji with a skin tone or a flag is one 〓, not two."""
    found = []
    fit = ledger_export.Cp932(found.append)
    assert fit.text("山田", 1, "c") == "山田" and found == []
    assert fit.text("〜か\u3099—葛\U000E0100👍🏽🇯🇵", 1, "c") == "～が―葛〓〓"
    assert [(r.original, r.replaced_by, r.rule) for r in found] == [
        ("〜", "～", "same"), ("か\u3099", "が", "composed"), ("—", "―", "same"), ("葛\U000E0100", "葛", "selector"),
        ("👍🏽", "〓", "substitute"), ("🇯🇵", "〓", "substitute")]
    assert found[1].code_points == "U+304B U+3099"
    for r in found:
        r.replaced_by.encode("cp932")


def test_the_page_lists_the_replacements_before_the_download(client, finance, books):
    response = client.get("/finance/export", query_string={"from": "2027-03-31", "to": "2027-04-02"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "U+20BB7" in page and "U+1F3C0" in page and "<caption" in page and 'scope="col"' in page
    preview = ledger_export.preview(ledger_export.parse_filter("2027-03-31", "2027-04-02"))
    assert (preview.rows, preview.net, preview.replacements.count) == (5, 2800 + 3600 + 1500 + 2800 - 800, 2)


# -- XLSX -------------------------------------------------------------------------------------------------

def test_the_xlsx_opens_in_openpyxl_with_the_same_rows(client, finance, books):
    response = download(client, "xlsx")
    assert response.status_code == 200 and response.is_streamed
    sheet = openpyxl.load_workbook(io.BytesIO(response.data), read_only=True).worksheets[0]

    def text(value):
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S") if value.time() != time(0) else value.date().isoformat()
        return "" if value is None else str(value)

    xlsx = [[text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    utf8 = read_csv(download(client).data)
    # the recorded time at exactly 00:00:00 reads back as a date-time at midnight
    midnight = next(i for i, r in enumerate(utf8) if r[0] == str(books["midnight"]))
    xlsx[midnight][col("recorded_at")] = utf8[midnight][col("recorded_at")]
    assert [r + [""] * (len(KEYS) - len(r)) for r in xlsx] == utf8


def test_an_empty_xlsx_has_its_headings(client, finance, books):
    response = download(client, "xlsx", **{"from": "2027-05-01", "to": "2027-05-02"})
    rows = list(openpyxl.load_workbook(io.BytesIO(response.data), read_only=True).worksheets[0].iter_rows(
        values_only=True))
    assert [list(r) for r in rows] == [ledger_export.headings()]


# -- streamed, the CLI, audited ---------------------------------------------------------------------------

def test_the_download_is_streamed_and_the_cli_writes_the_same_file(app, client, finance, books, runner, tmp_path):
    web = {}
    for fmt in ("csv", "cp932"):
        response = download(client, fmt)
        assert response.status_code == 200 and response.is_streamed  # before reading it, which makes it a list
        web[fmt] = response.data
        assert response.mimetype == {"csv": "text/csv", "cp932": "application/zip"}[fmt]
        assert response.headers["Content-Disposition"] == \
            f'attachment; filename="ledger-2027-03-31-2027-04-02{ {"csv": ".csv", "cp932": "-cp932.zip"}[fmt]}"'
    db.session.commit()  # nothing open in the test's session while the command writes (SQLite)
    out = tmp_path / "ledger.csv"
    result = runner.invoke(args=["finance", "export", "--from", "2027-03-31", "--to", "2027-04-02",
                                 "--format", "csv", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == web["csv"]
    result = runner.invoke(args=["finance", "export", "--from", "2027-03-31", "--to", "2027-04-02",
                                 "--format", "cp932", "--output", str(tmp_path / "ledger-cp932.csv")])
    assert result.exit_code == 0, result.output
    assert "2 characters replaced" in result.output
    files = unzip(web["cp932"])
    assert (tmp_path / "ledger-cp932.csv").read_bytes() == files["ledger.csv"]
    assert (tmp_path / "ledger-cp932.csv.replacements.csv").read_bytes() == files["replacements.csv"]
    result = runner.invoke(args=["finance", "export", "--from", "2027-04-02", "--to", "2027-03-31", "--format", "csv"])
    assert result.exit_code == 2 and "--to:" in result.output


def test_every_export_is_audited_with_who_the_filter_and_the_rows(app, client, finance, books, runner, make_user,
                                                                  tmp_path):
    download(client, "csv", method="card").get_data()
    download(client, "xlsx", **{"from": "2027-05-01", "to": "2027-05-31"}).get_data()  # no row: recorded too
    db.session.commit()
    runner.invoke(args=["finance", "export", "--from", "2027-04-01", "--to", "2027-04-01", "--format", "csv",
                        "--output", str(tmp_path / "out.csv")])
    entries = db.session.scalars(select(AuditEntry).where(AuditEntry.subject == "finance_export")
                                 .order_by(AuditEntry.id)).all()
    assert [(e.actor_id, e.subject_id, e.action) for e in entries] == [
        (finance.id, finance.id, "exported"), (finance.id, finance.id, "exported"), (None, 0, "exported")]
    web, empty, cli = (e.data for e in entries)
    assert web["filter"] == {"from": "2027-03-31", "to": "2027-04-02", "method": "card"}
    assert (web["format"], web["rows"], web["complete"], web["via"]) == ("csv", 3, True, "web")
    assert (empty["format"], empty["rows"], empty["complete"]) == ("xlsx", 0, True)
    assert (cli["rows"], cli["via"], cli["filter"]) == (3, "cli", {"from": "2027-04-01", "to": "2027-04-01"})
    # an administrator finds them in the audit trail's search, by who did it
    admin = make_user("admin@example.com", role=Role.ADMIN)
    found = audit_trail.search(audit_trail.Filters(actor_id=finance.id), admin)
    assert [e.id for e in found] == [entries[1].id, entries[0].id]


def test_a_download_cut_short_is_recorded_as_incomplete(client, finance, books, monkeypatch):
    monkeypatch.setattr(ledger_export, "CHUNK", 64)  # many small chunks
    response = download(client)
    first = next(iter(response.response))
    assert first.startswith(b"\xef\xbb\xbf")
    response.close()  # the client went away
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "finance_export"))
    assert entry.data["complete"] is False and 0 < entry.data["rows"] <= 5


def test_formula_like_names_are_guarded(client, finance, room, make_user):
    ledger_booking(make_user(name="=HYPERLINK(\"http://evil.example\")"), room, date(2027, 5, 10),
                   at=at_tokyo(APRIL_1, time(10)), method="cash")
    rows = read_csv(download(client).data)
    assert rows[1][col("payer")] == "'=HYPERLINK(\"http://evil.example\")"
    sheet = openpyxl.load_workbook(io.BytesIO(download(client, "xlsx").data), read_only=True).worksheets[0]
    cells = list(sheet.iter_rows(min_row=2, values_only=True))[0]
    assert cells[col("payer")] == "'=HYPERLINK(\"http://evil.example\")"
