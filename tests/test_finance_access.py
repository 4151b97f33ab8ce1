"""Finance sees money and what traces it (booking number, payer name, building, room), and no other
personal data: no e-mail address, phone number or name reading, on any finance page or export.

Every GET route under /finance/ is read (the authorisation matrix, tests/test_authorization.py, proves
who may read them); a route added later is read too, with its query-less defaults and, for the exports,
each format.
"""
import io
import zipfile
from datetime import time, timedelta

import openpyxl
import time_machine

from reservations.models import Role
from reservations.timeutil import at_tokyo, business_date, now_utc
from tests.helpers import ledger_booking, ledger_refund

SECRETS = ("hidden-address@example.com", "090-5555-0199", "ヒミツノヨミ")


def readable(body: bytes) -> list[str]:
    """The text a body holds: as UTF-8 and CP932, and inside a ZIP (an XLSX's cells, a CP932 bundle)."""
    texts = [body.decode("utf-8", "replace"), body.decode("cp932", "replace")]
    if body[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(body)) as bundle:
            for name in bundle.namelist():
                texts += readable(bundle.read(name)) if not name.endswith(".xlsx") else []
        if b"xl/worksheets" in body:
            book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
            texts += [" ".join(str(c) for row in sheet.iter_rows(values_only=True) for c in row if c is not None)
                      for sheet in book.worksheets]
    return texts


def test_no_finance_page_or_export_shows_personal_data_beyond_the_payers_name(
        app, client, login_as, make_user, room):
    # Noon in Tokyo for the whole test: the payment an hour ago and the refund are on the business day the
    # export is asked for, whenever the suite runs (before 00:30 JST the refund "30 minutes ago" was yesterday).
    with time_machine.travel(at_tokyo(business_date(now_utc()), time(12)), tick=False):
        read_every_finance_page(app, client, login_as, make_user, room)


def read_every_finance_page(app, client, login_as, make_user, room):
    payer = make_user(SECRETS[0], name="納付 花子", phone=SECRETS[1], name_kana=SECRETS[2])
    now = now_utc()
    day = business_date(now)
    booking = ledger_booking(payer, room, day + timedelta(days=20), at=now - timedelta(hours=1), amount=2800,
                             method="cash")
    ledger_refund(booking, 1400, at=now - timedelta(minutes=30))
    login_as(make_user("finance@example.com", role=Role.FINANCE))

    urls = [rule.rule for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/finance/") and "GET" in rule.methods and not rule.arguments]
    assert "/finance/" in urls and len(urls) > 3, urls
    exports = [f"/finance/export/download?from={day}&to={day}&format={fmt}"
               for fmt in ("csv", "cp932", "xlsx")]
    seen_name = False
    for url in urls + exports:
        response = client.get(url)
        # The download without its filter answers with the form and its errors.
        allowed = (200, 422) if url.endswith("/download") else (200,)
        assert response.status_code in allowed, (url, response.status_code)
        for text in readable(response.get_data()):
            for secret in SECRETS:
                assert secret not in text, (url, secret)
        seen_name = seen_name or any("納付 花子" in text for text in readable(response.get_data()))
    assert seen_name  # the payer's name is there where it traces the money (the export, the close)
