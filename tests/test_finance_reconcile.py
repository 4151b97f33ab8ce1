"""Reconciliation with Stripe: the ledger's card rows against localstripe's balance transactions, the payout
report import, the cases it opens (once each), and a charge whose booking was never confirmed.

localstripe makes a balance transaction on each capture and refund (fee 0, no payout); payouts and fees come
from a payout report built here with Stripe's real column names.
"""
import csv
import io
import json
import threading
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask_babel import force_locale
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import (
    AttentionCase,
    AuditEntry,
    BookingState,
    LedgerEntry,
    LedgerSettlement,
    Payment,
    PaymentState,
    Payout,
    ProviderTransaction,
    Receipt,
    ReconciliationRun,
    Role,
)
from reservations.payments import get_gateway
from reservations.services import ledger, refunds
from reservations.services.expiry import release_expired_holds
from reservations.services.finance import reconcile as rec
from reservations.timeutil import business_date, now_utc
from tests.helpers import api, book, charge_id, count, fetch_intent, ledger_booking, post_event, refunds_at_provider

# The columns of Stripe's itemized payout reconciliation report (payout_reconciliation.itemized.5) a download has
# by default, in its order; the import reads the ones it needs and leaves the rest (customer e-mail, addresses).
REPORT_COLUMNS = [
    "automatic_payout_id", "automatic_payout_effective_at_utc", "automatic_payout_effective_at",
    "balance_transaction_id", "created_utc", "created", "available_on_utc", "available_on", "currency", "gross",
    "fee", "net", "reporting_category", "source_id", "description", "customer_facing_amount",
    "customer_facing_currency", "customer_id", "customer_email", "charge_id", "payment_intent_id",
    "payment_metadata[booking_id]",
]


def today() -> date:
    return business_date(now_utc())


def statuses(run: ReconciliationRun) -> dict[str, int]:
    return rec.summary(run)


def reconciliation_cases() -> list[tuple[str, str]]:
    """(reason, the provider object it is about) of every reconciliation case, in order."""
    return [(c.reason, c.detail.split(": ", 1)[0]) for c in db.session.scalars(
        select(AttentionCase).where(AttentionCase.reason.in_(rec.CASE_KINDS)).order_by(AttentionCase.id))]


def stripe_charge(localstripe, amount: int, *, metadata: dict | None = None, capture: bool = True) -> dict:
    """A card payment made at localstripe directly, as someone at the Stripe dashboard (or another app) would."""
    card = api(localstripe, "GET", f"/v1/tokens/{localstripe.card_token()}").json()["card"]["id"]
    intent = api(localstripe, "POST", "/v1/payment_intents", data={
        "amount": amount, "currency": "jpy", "capture_method": "manual", "payment_method_types[]": "card",
        **{f"metadata[{k}]": v for k, v in (metadata or {}).items()}}).json()
    api(localstripe, "POST", f"/v1/payment_intents/{intent['id']}", data={"payment_method": card})
    api(localstripe, "POST", f"/v1/payment_intents/{intent['id']}/confirm")
    if capture:
        api(localstripe, "POST", f"/v1/payment_intents/{intent['id']}/capture")
    return fetch_intent(localstripe, intent["id"])


def txn_of(localstripe, source_id: str) -> dict:
    found = [t for t in api(localstripe, "GET", "/v1/balance_transactions", params={"limit": 100}).json()["data"]
             if t["source"] == source_id]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def finance(make_user):
    return make_user("finance@example.com", role=Role.FINANCE, name="会計 係")


# -- the API: everything of ours matches ---------------------------------------------------------------

@pytest.mark.payments
def test_a_paid_booking_and_a_partial_refund_reconcile_as_all_matched(app, localstripe, paid):
    payment = paid.payment
    refunds.refund(payment, 800, reason="staff")
    db.session.commit()

    run = rec.reconcile(today(), today())
    db.session.commit()

    assert statuses(run) == {"matched": 2, "only_in_stripe": 0, "only_in_ledger": 0, "mismatch": 0}
    assert rec.all_matched(run) and run.error == ""
    assert reconciliation_cases() == []
    # The ledger rows name their balance transactions (localstripe sets the charge's and the refund's).
    charge = charge_id(fetch_intent(localstripe, payment.intent_id))
    capture, refund = db.session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
    [back] = refunds_at_provider(localstripe, charge)
    assert capture.balance_transaction_id == txn_of(localstripe, charge)["id"]
    assert refund.balance_transaction_id == back["balance_transaction"] == txn_of(localstripe, back["id"])["id"]
    kept = db.session.scalars(select(ProviderTransaction).order_by(ProviderTransaction.amount)).all()
    assert [(t.amount, t.fee, t.net, t.seen_via, t.payout_id) for t in kept] == [
        (-800, 0, -800, "api", None), (2800, 0, 2800, "api", None)]


# -- seeded mismatches, each reported once ---------------------------------------------------------------

@pytest.mark.payments
def test_seeded_mismatches_are_each_reported_exactly_once(app, localstripe, paid, resident, make_room):
    room = make_room("練習室")
    # 1. A missing ledger row: a refund made in the Stripe dashboard that we never heard of (localstripe sends no
    #    refund events), of our paid booking.
    charge = charge_id(fetch_intent(localstripe, paid.payment.intent_id))
    dashboard_refund = api(localstripe, "POST", "/v1/refunds", data={"charge": charge, "amount": 500}).json()
    # 2. An extra Stripe charge: none of ours (no booking, no metadata of ours).
    extra = stripe_charge(localstripe, 1200)
    # 3. An amount difference: a real charge of 2,800 yen that the ledger has as 2,000.
    real = stripe_charge(localstripe, 2800)
    other = ledger_booking(resident, room, today() + timedelta(days=20), at=now_utc(), amount=3600, method="card")
    ledger.post(db.session.get(Payment, other.payment.id), "capture", 2000, charge_id(real), charge_id=charge_id(real))
    db.session.commit()
    # (and the card row ledger_booking wrote is of a charge Stripe never had: only in the ledger)
    only_ours = db.session.scalar(select(LedgerEntry).where(LedgerEntry.reference == f"ch_led_{other.payment.id}"))

    first = rec.reconcile(today(), today())
    db.session.commit()
    second = rec.reconcile(today(), today())
    db.session.commit()

    for run in (first, second):
        assert statuses(run) == {"matched": 1, "only_in_stripe": 2, "only_in_ledger": 1, "mismatch": 1}, run.id
        [mismatch] = [i for i in run.items if i.status == "mismatch"]
        assert (mismatch.stripe_amount, mismatch.ledger_amount) == (2800, 2000)
    refund_txn, extra_txn = txn_of(localstripe, dashboard_refund["id"]), txn_of(localstripe, charge_id(extra))
    assert sorted(reconciliation_cases()) == sorted([
        ("reconciliation_only_in_stripe", refund_txn["id"]),
        ("reconciliation_only_in_stripe", extra_txn["id"]),
        ("reconciliation_mismatch", txn_of(localstripe, charge_id(real))["id"]),
        ("reconciliation_only_in_ledger", f"ledger-{only_ours.id}"),
    ])
    by_object = {c.detail.split(": ", 1)[0]: c for c in db.session.scalars(select(AttentionCase))}
    assert by_object[refund_txn["id"]].booking_id == paid.id  # Stripe said which charge it refunded
    assert by_object[extra_txn["id"]].booking_id is None and by_object[extra_txn["id"]].building_id is None
    assert by_object[f"ledger-{only_ours.id}"].booking_id == other.id
    assert not rec.all_matched(second)


@pytest.mark.payments
def test_a_resolved_case_is_not_opened_again(app, localstripe, paid, finance):
    stripe_charge(localstripe, 1200)
    rec.reconcile(today(), today())
    [case] = rec.open_reconciliation_cases()
    assert rec.resolve_case(case, finance, "another app of the ward's: not ours")
    db.session.commit()
    rec.reconcile(today(), today())
    db.session.commit()
    assert len(reconciliation_cases()) == 1 and rec.open_reconciliation_cases() == []


# -- the payout report ------------------------------------------------------------------------------------

def report(rows: list[dict], columns=REPORT_COLUMNS, *, bom: bool = True) -> bytes:
    """A payout report as the Stripe dashboard downloads it: UTF-8 (with a BOM), CRLF, amounts like "2800.00"."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return (("\ufeff" if bom else "") + out.getvalue()).encode("utf-8")


def report_row(txn: str, *, payout: str, arrival_utc: str, created: datetime, gross: str, fee: str, net: str,
               category: str, source: str, intent: str = "") -> dict:
    return {
        "automatic_payout_id": payout, "automatic_payout_effective_at_utc": arrival_utc,
        "automatic_payout_effective_at": arrival_utc, "balance_transaction_id": txn,
        "created_utc": created.strftime("%Y-%m-%d %H:%M:%S"), "created": created.strftime("%Y-%m-%d %H:%M:%S"),
        "available_on_utc": arrival_utc, "available_on": arrival_utc, "currency": "jpy", "gross": gross,
        "fee": fee, "net": net, "reporting_category": category, "source_id": source, "description": "",
        "customer_facing_amount": gross, "customer_facing_currency": "jpy", "customer_email": "taro@example.com",
        "charge_id": source if category == "charge" else "", "payment_intent_id": intent,
    }


PAID_AT = datetime(2027, 1, 12, 1, 0, tzinfo=UTC)  # 10:00 Tokyo, 12 January 2027


@pytest.fixture
def paid_in_january(resident, make_room):
    """Three card payments on 12 January 2027 and a 1,000 yen refund of the second, in the ledger."""
    room = make_room("会議室")
    bookings = [ledger_booking(resident, room, date(2027, 2, 10), at=PAID_AT, amount=2800, method="card"),
                ledger_booking(resident, room, date(2027, 2, 10), at=PAID_AT, amount=3600, method="card",
                               code="AFTERNOON"),
                ledger_booking(resident, room, date(2027, 2, 11), at=PAID_AT, amount=2800, method="card")]
    second = db.session.get(Payment, bookings[1].payment.id)
    second.refunded_amount = 1000
    ledger.post(second, "refund", 1000, "re_test_second", provider_refund_id="re_test_second",
                at=PAID_AT + timedelta(hours=2))
    db.session.commit()
    return bookings


def january_report(bookings, *, refund_gross: str = "-1000.00") -> bytes:
    charges = [f"ch_led_{b.payment.id}" for b in bookings]
    on_15th = "2027-01-14 15:00:00"  # 15 January in Tokyo: 入金日
    return report([
        report_row("txn_a", payout="po_1", arrival_utc=on_15th, created=PAID_AT, gross="2800.00", fee="101.00",
                   net="2699.00", category="charge", source=charges[0], intent=bookings[0].payment.intent_id),
        report_row("txn_b", payout="po_1", arrival_utc=on_15th, created=PAID_AT, gross="3600", fee="130",
                   net="3470", category="charge", source=charges[1]),
        report_row("txn_c", payout="po_1", arrival_utc=on_15th, created=PAID_AT + timedelta(hours=2),
                   gross=refund_gross, fee="0.00", net=refund_gross, category="refund", source="re_test_second"),
        report_row("txn_d", payout="po_2", arrival_utc="2027-01-15 15:00:00", created=PAID_AT, gross="2800.00",
                   fee="101.00", net="2699.00", category="charge", source=charges[2]),
    ])


def test_a_payout_report_with_fees_gives_each_payout_its_parts_and_arrival_date(app, paid_in_january):
    result = rec.import_payout_report(january_report(paid_in_january))
    db.session.commit()

    assert (result.rows, result.payouts, result.fees_booked) == (4, ["po_1", "po_2"], 3)
    first, second = db.session.get(Payout, "po_1"), db.session.get(Payout, "po_2")
    assert (first.gross, first.fees, first.refunds, first.other, first.net, first.arrival_date) == (
        6400, 231, 1000, 0, 5169, date(2027, 1, 15))
    assert (second.gross, second.fees, second.refunds, second.net, second.arrival_date) == (
        2800, 101, 0, 2699, date(2027, 1, 16))
    fees = db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "fee").order_by(LedgerEntry.id)).all()
    assert [(f.amount, f.reference, f.balance_transaction_id, f.account_code, f.paid_on) for f in fees] == [
        (-101, "txn_a", "txn_a", app.config["FEE_EXPENSE_ACCOUNT"], date(2027, 1, 12)),
        (-130, "txn_b", "txn_b", app.config["FEE_EXPENSE_ACCOUNT"], date(2027, 1, 12)),
        (-101, "txn_d", "txn_d", app.config["FEE_EXPENSE_ACCOUNT"], date(2027, 1, 12))]
    # 入金日: every ledger row of a payout (captures, the refund, the fees) has its payout's arrival date.
    assert sorted((s.entry.kind, s.entry.amount, s.payout_id, s.arrival_date, s.balance_transaction_id)
                  for s in db.session.scalars(select(LedgerSettlement))) == [
        ("capture", 2800, "po_1", date(2027, 1, 15), "txn_a"), ("capture", 2800, "po_2", date(2027, 1, 16), "txn_d"),
        ("capture", 3600, "po_1", date(2027, 1, 15), "txn_b"), ("fee", -130, "po_1", date(2027, 1, 15), "txn_b"),
        ("fee", -101, "po_1", date(2027, 1, 15), "txn_a"), ("fee", -101, "po_2", date(2027, 1, 16), "txn_d"),
        ("refund", -1000, "po_1", date(2027, 1, 15), "txn_c")]
    assert result.settled == 7
    by_payout = {}
    for s in db.session.scalars(select(LedgerSettlement)):
        by_payout[s.payout_id] = by_payout.get(s.payout_id, 0) + s.entry.amount
    assert by_payout == {"po_1": 5169, "po_2": 2699}  # the ledger's net of each payout is what reached the ward

    run = rec.reconcile(date(2027, 1, 12), date(2027, 1, 12), fetch=False)
    assert statuses(run) == {"matched": 7, "only_in_stripe": 0, "only_in_ledger": 0, "mismatch": 0}
    assert [(c.payout.id, c.transactions_net, c.ledger_net, c.agrees) for c in rec.payout_checks(run)] == [
        ("po_1", 5169, 5169, True), ("po_2", 2699, 2699, True)]
    assert rec.all_matched(run)


def test_the_same_report_twice_changes_nothing(app, paid_in_january):
    data = january_report(paid_in_january)
    rec.import_payout_report(data)
    db.session.commit()
    before = [(t.id, t.amount, t.fee, t.payout_id, t.seen_via, t.updated_at)
              for t in db.session.scalars(select(ProviderTransaction).order_by(ProviderTransaction.id))]
    counts = (count(LedgerEntry), count(LedgerSettlement), count(Payout), count(AuditEntry))

    again = rec.import_payout_report(data)
    db.session.commit()

    assert again.fees_booked == 0 and again.settled == 0
    assert [(t.id, t.amount, t.fee, t.payout_id, t.seen_via, t.updated_at)
            for t in db.session.scalars(select(ProviderTransaction).order_by(ProviderTransaction.id))] == before
    assert (count(LedgerEntry), count(LedgerSettlement), count(Payout), count(AuditEntry)) == counts


def test_a_report_row_with_another_amount_is_a_mismatch_and_gets_no_arrival_date(app, paid_in_january):
    rec.import_payout_report(january_report(paid_in_january, refund_gross="-1200.00"))
    run = rec.reconcile(date(2027, 1, 12), date(2027, 1, 12), fetch=False)
    [item] = [i for i in run.items if i.status == "mismatch"]
    assert (item.balance_transaction_id, item.stripe_amount, item.ledger_amount) == ("txn_c", -1200, -1000)
    refund_row = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "refund"))
    assert db.session.scalar(select(LedgerSettlement).where(LedgerSettlement.ledger_entry_id == refund_row.id)) \
        is None
    [check, _] = rec.payout_checks(run)
    assert (check.payout.id, check.transactions_net, check.ledger_net, check.agrees) == ("po_1", 4969, 6169, False)
    assert reconciliation_cases() == [("reconciliation_mismatch", "txn_c")]


def header_without(column: str) -> list[str]:
    return [c for c in REPORT_COLUMNS if c != column]


@pytest.mark.parametrize(("name", "make", "message"), [
    ("a missing column", lambda rows: report(rows, header_without("fee")), "column fee"),
    ("no payout date", lambda rows: report(rows, [c for c in REPORT_COLUMNS if "effective_at" not in c]),
     "automatic_payout_effective_at_utc"),
    ("yen that are not whole", lambda rows: report([{**rows[0], "gross": "2800.50", "net": "2699.50"}]),
     "Line 2: gross is not a whole number of yen"),
    ("a net that does not add up", lambda rows: report([{**rows[1], "net": "3000"}]), "Line 2: net 3000"),
    ("another currency", lambda rows: report([{**rows[0], "currency": "usd"}]), "usd"),
    ("a bad amount on a later line", lambda rows: report([rows[0], {**rows[1], "fee": "1,30"}]),
     "Line 3: fee is not an amount"),
    ("a bad date", lambda rows: report([{**rows[0], "created_utc": "yesterday"}]), "created_utc"),
    ("a row twice", lambda rows: report([rows[0], rows[0]]), "listed twice"),
    ("a short row", lambda rows: report(rows)[:-30], "values; the header has"),
    ("garbage bytes", lambda rows: b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00binary", "not UTF-8"),
    ("an empty file", lambda rows: b"", "empty"),
    ("a header only", lambda rows: report([]), "no transactions"),
])
def test_a_bad_report_is_refused_with_a_clear_reason_and_imports_nothing(app, paid_in_january, name, make,
                                                                         message):
    good = january_report(paid_in_january)
    rows = list(csv.DictReader(io.StringIO(good.decode("utf-8-sig"))))
    entries = count(LedgerEntry)

    with force_locale("en"), pytest.raises(rec.ReportError) as refused:  # the messages, as English pages say them
        rec.import_payout_report(make(rows))
    db.session.rollback()

    assert message in str(refused.value), (name, str(refused.value))
    assert (count(ProviderTransaction), count(Payout), count(LedgerSettlement), count(LedgerEntry)) == (
        0, 0, 0, entries)


def test_a_report_without_a_bom_and_with_a_tokyo_payout_date_imports(app, paid_in_january):
    """UTF-8 with or without a BOM; only the report's own time zone column: read as Tokyo time."""
    rows = list(csv.DictReader(io.StringIO(january_report(paid_in_january).decode("utf-8-sig"))))
    columns = [c for c in REPORT_COLUMNS if c != "automatic_payout_effective_at_utc"]
    rows = [{**r, "automatic_payout_effective_at": "2027-01-15 00:00:00"} for r in rows]
    rec.import_payout_report(report(rows, columns, bom=False))
    assert db.session.get(Payout, "po_1").arrival_date == date(2027, 1, 15)


def test_a_movement_just_across_midnight_pairs_from_either_day(app, resident, room):
    """Stripe's transaction at 23:59:59 Tokyo, our row a second later: each day's run pairs them."""
    booking = ledger_booking(resident, room, date(2027, 2, 10), at=datetime(2027, 1, 12, 15, 0, 1, tzinfo=UTC),
                             method="card")
    rec.import_payout_report(report([report_row(
        "txn_night", payout="po_9", arrival_utc="2027-01-14 15:00:00", created=datetime(2027, 1, 12, 14, 59, 59,
                                                                                      tzinfo=UTC),
        gross="2800", fee="0", net="2800", category="charge", source=f"ch_led_{booking.payment.id}")]))
    for day in (date(2027, 1, 12), date(2027, 1, 13)):
        assert statuses(rec.reconcile(day, day, fetch=False))["matched"] == 1, day
    assert reconciliation_cases() == []


def test_a_report_larger_than_the_limit_is_refused(app):
    with force_locale("en"), pytest.raises(rec.ReportError, match="larger than"):
        rec.import_payout_report(io.BytesIO(b"x" * 2048), max_bytes=1024)


# -- the page and the commands -------------------------------------------------------------------------

def test_the_page_imports_a_report_and_shows_the_payouts(app, client, login_as, finance, english, paid_in_january):
    login_as(finance)
    sent = client.post("/finance/reconcile/import", data={
        "report-report": (io.BytesIO(january_report(paid_in_january)), "Itemized_payout_reconciliation.csv")},
        content_type="multipart/form-data")
    assert sent.status_code == 302
    page = client.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Imported 4 transactions of 2 payouts; 3 fees booked" in page
    assert "po_1" in page and "¥5,169" in page and "¥6,400" in page and "January 15, 2027" in page
    assert "taro@example.com" not in page  # the report's personal columns are neither kept nor shown
    assert "Payout report import" in page
    [run] = db.session.scalars(select(ReconciliationRun)).all()
    assert (run.trigger, run.actor_id, run.date_from, run.date_to) == ("import", finance.id, date(2027, 1, 12),
                                                                       date(2027, 1, 12))


def test_the_page_says_why_a_report_or_a_period_is_refused(app, client, login_as, finance, english):
    login_as(finance)
    refused = client.post("/finance/reconcile/import", data={
        "report-report": (io.BytesIO(report([], header_without("net"))), "report.csv")},
        content_type="multipart/form-data")
    assert refused.status_code == 422
    assert "it has no column net" in refused.get_data(as_text=True)
    missing = client.post("/finance/reconcile/import", data={}, content_type="multipart/form-data")
    assert missing.status_code == 422 and "Choose the CSV file" in missing.get_data(as_text=True)
    backwards = client.post("/finance/reconcile", data={"run-first": "2027-03-02", "run-last": "2027-03-01"})
    assert backwards.status_code == 422
    assert "The last day must not be before the first day." in backwards.get_data(as_text=True)
    too_long = client.post("/finance/reconcile", data={"run-first": "2025-01-01", "run-last": "2027-03-01"})
    assert too_long.status_code == 422 and "at most 366 days" in too_long.get_data(as_text=True)
    assert count(ReconciliationRun) == 0


def test_a_period_reconciled_from_the_page_is_shown_with_its_items(app, client, login_as, finance, english,
                                                                    paid_in_january):
    rec.import_payout_report(january_report(paid_in_january))
    db.session.commit()
    login_as(finance)
    sent = client.post("/finance/reconcile", data={"run-first": "2027-01-12", "run-last": "2027-01-12"})
    assert sent.status_code == 302
    page = client.get(sent.headers["Location"]).get_data(as_text=True)
    assert "Everything matched: 7 items." in page
    assert "山田 花子" in page and "会議室" in page  # payer and room, to trace the money
    assert "resident@example.com" not in page  # never the e-mail


def test_every_post_needs_the_csrf_token(app, client, login_as, finance, app_config):
    app.config["WTF_CSRF_ENABLED"] = True
    login_as(finance)
    assert client.post("/finance/reconcile", data={"run-first": "2027-01-12", "run-last": "2027-01-12"}
                       ).status_code == 400
    assert client.post("/finance/reconcile/import", data={}).status_code == 400
    assert count(ReconciliationRun) == 0


def test_the_commands_import_and_reconcile_and_say_so_by_their_exit_code(app, runner, paid_in_january, tmp_path):
    path = tmp_path / "payouts.csv"
    path.write_bytes(january_report(paid_in_january))
    imported = runner.invoke(args=["finance", "import-payouts", str(path)])
    assert imported.exit_code == 0, imported.output
    assert "imported 4 transactions, 2 payouts (po_1, po_2); 3 fees booked" in imported.output

    matched = runner.invoke(args=["finance", "reconcile", "--from", "2027-01-12", "--to", "2027-01-12"])
    assert matched.exit_code == 0, matched.output
    assert "matched: 7" in matched.output and "payout po_1 arrival 2027-01-15" in matched.output
    assert "net 5169" in matched.output and ": ok" in matched.output

    ledger_booking(paid_in_january[0].user, paid_in_january[0].room, date(2027, 2, 12), at=PAID_AT, method="card")
    differs = runner.invoke(args=["finance", "reconcile", "--from", "2027-01-12", "--to", "2027-01-12"])
    assert differs.exit_code == 1 and "only_in_ledger: 1" in differs.output

    bad = runner.invoke(args=["finance", "reconcile", "--from", "2027-01-12", "--to", "2026-01-12"])
    assert bad.exit_code == 2
    path.write_bytes(b"\xff\xfe garbage")
    refused = runner.invoke(args=["finance", "import-payouts", str(path)])
    assert refused.exit_code == 1 and "Nothing was imported." in refused.output


@pytest.mark.payments
def test_a_provider_that_cannot_be_reached_opens_no_case(app, localstripe, paid, runner):
    from tests.helpers import provider_down

    with provider_down(app):
        run = rec.reconcile(today(), today())
        db.session.commit()  # the command works in a session of its own
        failed = runner.invoke(args=["finance", "reconcile", "--from", today().isoformat(),
                                     "--to", today().isoformat()])
    assert run.error and run.items == [] and reconciliation_cases() == []
    assert failed.exit_code == 3


@pytest.mark.payments
def test_the_daily_job_reconciles_yesterday_once(app, localstripe, paid):
    from reservations.jobs import JOBS, run_job

    job = {j.id: j for j in JOBS}["reconcile_yesterday"]
    tomorrow = now_utc() + timedelta(days=1)
    assert rec.reconcile_yesterday(now=tomorrow) == {"matched": 1, "only_in_stripe": 0, "only_in_ledger": 0,
                                                     "mismatch": 0}
    db.session.commit()
    assert rec.reconcile_yesterday(now=tomorrow) == {"already_done": 1}
    [run] = db.session.scalars(select(ReconciliationRun)).all()
    assert (run.trigger, run.date_from, run.date_to) == ("job", today(), today())
    run_job(job)  # today's yesterday: a run of its own, safe to repeat
    assert count(ReconciliationRun) == 2


# -- disputes: their balance transactions come in the events --------------------------------------------------

@pytest.mark.payments
def test_a_disputes_transactions_are_kept_from_its_event_and_match_with_the_fee_booked(app, client, localstripe,
                                                                                      paid):
    intent = fetch_intent(localstripe, paid.payment.intent_id)
    withdrawal = {"id": "txn_dispute_1", "object": "balance_transaction", "amount": -2800, "fee": 1500,
                  "net": -4300, "currency": "jpy", "reporting_category": "dispute", "type": "adjustment"}
    dispute = {"id": "du_1Bank", "object": "dispute", "amount": 2800, "currency": "jpy", "charge": charge_id(intent),
               "payment_intent": intent["id"], "status": "needs_response", "reason": "fraudulent",
               "balance_transactions": [withdrawal], "metadata": {}}
    assert post_event(client, localstripe, "charge.dispute.funds_withdrawn", dispute).status_code == 200

    db.session.expire_all()
    kept = db.session.get(ProviderTransaction, "txn_dispute_1")
    assert (kept.amount, kept.fee, kept.net, kept.source_id, kept.seen_via) == (-2800, 1500, -4300, "du_1Bank",
                                                                                 "event")
    row = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "dispute_withdrawal"))
    assert row.balance_transaction_id == "txn_dispute_1"

    run = rec.reconcile(today(), today())
    assert statuses(run) == {"matched": 3, "only_in_stripe": 0, "only_in_ledger": 0, "mismatch": 0}
    fee = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "fee"))
    assert (fee.amount, fee.reference, fee.account_code) == (-1500, "txn_dispute_1", app.config["FEE_EXPENSE_ACCOUNT"])


# -- a charge that reached Stripe while its booking was never confirmed ------------------------------------------

def crash_after_the_charge(localstripe, resident, room, now, *, capture: bool):
    """The resident's card is charged at Stripe for a held booking, and the app dies before recording any of it
    (the intent was made in the same request: its id is lost too). The hold then runs out and the job releases
    it as never paid."""
    booking = book(resident, room, now=now)
    payment = booking.payment
    gateway = get_gateway()
    intent = gateway.create_intent(amount=payment.amount, booking_id=booking.id, payment_id=payment.id,
                                   payment_key=payment.idempotency_key, description="")
    intent = gateway.confirm_with_token(intent.id, localstripe.card_token(), payment_key=payment.idempotency_key)
    if capture:  # as with PAYMENT_CAPTURE_METHOD=automatic: the money is taken at once
        intent = gateway.capture(intent.id, payment_key=payment.idempotency_key)
    db.session.rollback()
    release_expired_holds(now=now + timedelta(minutes=11))
    db.session.commit()
    db.session.expire_all()
    assert (booking.state, payment.state, payment.intent_id) == (BookingState.EXPIRED, PaymentState.CANCELLED, None)
    return booking, intent


@pytest.mark.payments
def test_a_charge_without_a_booking_becomes_a_case_refunded_by_finance(app, client, localstripe, resident, room,
                                                                      now, finance, login_as, english, make_user):
    booking, intent = crash_after_the_charge(localstripe, resident, room, now, capture=True)

    run = rec.reconcile(today(), today())
    db.session.commit()
    rec.reconcile(today(), today())  # twice: still one case
    db.session.commit()

    assert statuses(run)["only_in_stripe"] == 1
    assert reconciliation_cases() == [("charged_without_booking", intent.id)]
    [case] = rec.open_reconciliation_cases()
    assert case.booking_id == booking.id
    login_as(finance)
    page = client.get("/finance/reconcile").get_data(as_text=True)
    assert "Charged at Stripe, but the booking was never confirmed" in page
    assert "Refund the whole amount" in page and "Confirm the booking and keep the payment" in page
    # It is never closed with a note alone, on this page or by the service.
    assert client.post(f"/finance/reconcile/cases/{case.id}/resolve", data={f"case{case.id}-note": "ok"}
                       ).status_code == 302
    with pytest.raises(rec.ReconcileError):
        rec.resolve_case(case, finance, "kept")
    db.session.rollback()
    # Nor by the building's staff on the attention list, where every other case takes a note.
    login_as(make_user("staff@example.com", role=Role.STAFF))
    assert "Finance closes this case" in client.get("/staff/attention").get_data(as_text=True)
    refused = client.post(f"/staff/attention/{case.id}/resolve", data={f"case{case.id}-note": "kept"})
    assert refused.status_code == 303
    assert db.session.get(AttentionCase, case.id).resolved_at is None
    login_as(finance)

    refunded = client.post(f"/finance/reconcile/cases/{case.id}/refund")

    assert refunded.status_code == 302
    assert "The money is being returned to the card." in client.get("/finance/reconcile").get_data(as_text=True)
    db.session.expire_all()
    [back] = refunds_at_provider(localstripe, intent.charge_id)
    assert (back["amount"], back["status"]) == (2800, "succeeded")
    assert db.session.scalars(select(LedgerEntry.kind).where(LedgerEntry.booking_id == booking.id)
                              .order_by(LedgerEntry.id)).all() == ["capture", "refund"]
    payment = booking.payment
    assert (payment.state, payment.intent_id, payment.refunded_amount) == (PaymentState.CAPTURED, intent.id, 2800)
    assert booking.state == BookingState.EXPIRED
    resolved = db.session.get(AttentionCase, case.id)
    assert resolved.resolved_by_id == finance.id and "Refunded 2800 yen" in resolved.resolution_note
    assert db.session.scalar(select(AuditEntry.id).where(
        AuditEntry.subject == "payment", AuditEntry.subject_id == payment.id, AuditEntry.actor_id == finance.id,
        AuditEntry.action == "charged without booking: refunded")) is not None

    after = rec.reconcile(today(), today())
    assert statuses(after) == {"matched": 2, "only_in_stripe": 0, "only_in_ledger": 0, "mismatch": 0}
    assert rec.open_reconciliation_cases() == []


@pytest.mark.payments
def test_a_charge_without_a_booking_is_confirmed_when_its_slot_is_still_free(app, client, localstripe, resident,
                                                                            room, now, finance, login_as, english):
    """Only authorised (no balance transaction yet): found from Stripe's intents, confirmed through settle."""
    booking, intent = crash_after_the_charge(localstripe, resident, room, now, capture=False)
    assert intent.status == "requires_capture"

    rec.reconcile(today(), today())
    db.session.commit()
    [case] = rec.open_reconciliation_cases()
    assert case.reason == "charged_without_booking"

    login_as(finance)
    assert client.post(f"/finance/reconcile/cases/{case.id}/confirm").status_code == 302

    db.session.expire_all()
    assert booking.state == BookingState.CONFIRMED
    assert (booking.payment.state, booking.payment.captured_amount) == (PaymentState.CAPTURED, 2800)
    assert fetch_intent(localstripe, intent.id)["status"] == "succeeded"
    assert count(Receipt, Receipt.booking_id == booking.id) == 1
    assert db.session.get(AttentionCase, case.id).resolved_by_id == finance.id
    run = rec.reconcile(today(), today())
    assert statuses(run) == {"matched": 1, "only_in_stripe": 0, "only_in_ledger": 0, "mismatch": 0}


@pytest.mark.payments
def test_a_charge_without_a_booking_whose_slot_was_taken_cannot_be_confirmed(app, localstripe, resident, room, now,
                                                                            make_user, finance):
    booking, _intent = crash_after_the_charge(localstripe, resident, room, now, capture=True)
    book(make_user(), room, now=now + timedelta(minutes=12))  # someone else holds the slot now
    rec.reconcile(today(), today())
    [case] = rec.open_reconciliation_cases()

    assert not rec.can_confirm(case, now + timedelta(minutes=13))
    with pytest.raises(rec.ReconcileError):
        rec.confirm_charged(case, finance, now=now + timedelta(minutes=13))
    assert rec.refund_charged(case, finance, now=now + timedelta(minutes=13)) == "refunded"


# -- the gateway, live: Stripe filters (localstripe cannot; the tests above read it unfiltered) ------------------

@contextmanager
def stripe_answering(lists: dict[str, list[dict]]):
    """A loopback HTTP server that answers Stripe's list endpoints with `lists` (path -> objects) and records
    each request's path and query string, so that a live-mode gateway's real SDK calls can be read back:
    localstripe refuses the `created` and `payout` filters that live mode sends."""
    asked: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            asked.append((url.path, dict(parse_qsl(url.query))))
            body = json.dumps({"object": "list", "url": url.path, "has_more": False,
                               "data": lists.get(url.path, [])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_live_the_gateway_asks_stripe_to_filter_by_day_and_payout():
    from reservations.payments.stripe_gateway import StripeGateway

    txn = {"id": "txn_1", "object": "balance_transaction", "amount": 2800, "fee": 101, "net": 2699,
           "currency": "jpy", "created": 1799500000, "available_on": 1799600000, "source": "ch_1",
           "type": "charge", "reporting_category": "charge"}
    start, end = datetime(2027, 1, 11, 15, 0, tzinfo=UTC), datetime(2027, 1, 12, 15, 0, tzinfo=UTC)
    with stripe_answering({"/v1/balance_transactions": [txn]}) as (base, asked):
        gateway = StripeGateway("sk_live_x", "pk_live_x", api_base=base, js_url="", webhook_secret="whsec_x",
                                live_params=True)
        [view] = gateway.list_balance_transactions(start, end)
        [of_payout] = gateway.list_balance_transactions(payout="po_1")
        assert gateway.list_intents(start, end) == []

    day = {"created[gte]": str(int(start.timestamp())), "created[lt]": str(int(end.timestamp()))}
    assert asked == [("/v1/balance_transactions", {"limit": "100", **day}),
                     ("/v1/balance_transactions", {"limit": "100", "payout": "po_1"}),
                     ("/v1/payment_intents", {"limit": "100", **day})]
    assert (view.id, view.amount, view.fee, view.net, view.source_id, view.payout_id) == (
        "txn_1", 2800, 101, 2699, "ch_1", None)
    assert view.created == datetime.fromtimestamp(1799500000, UTC) and of_payout.payout_id == "po_1"
