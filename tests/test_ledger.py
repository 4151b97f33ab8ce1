"""The finance ledger: what the database refuses, what services/ledger.post writes, and what each money path posts.

The refusals are sent as raw SQL, as a script or a person at a database prompt would send them: they must
not depend on the app's models. Dates are Tokyo business dates; instants are UTC.
"""
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from reservations.extensions import db
from reservations.models import Building, DayClose, LedgerEntry, Receipt, Role
from reservations.models.payment import LEDGER_SIGNS
from reservations.services import counter, ledger, refunds
from reservations.services.rules import division_slot
from reservations.timeutil import TOKYO, business_date, fiscal_year
from tests.helpers import (
    booking_day,
    charge_id,
    count,
    fetch_intent,
    ledger_booking,
    ledger_refund,
    post_event,
)

REVENUE, SPORTS = "13-01-02-01", "13-01-06-01"  # config.REVENUE_ACCOUNTS: the default, and gyms and courts
FEE_ACCOUNT, PRIOR_ACCOUNT, PRIOR_INCOME = "02-01-01-12", "02-01-01-22", "21-05-04-01"  # 役務費, 過年度支出, 過年度収入
MARCH_10 = datetime(2027, 3, 10, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo, FY2026
COLUMNS = [c.name for c in LedgerEntry.__table__.columns if c.name != "id"]


def tokyo(*args) -> datetime:
    """A Tokyo wall-clock time as the UTC instant the services take."""
    return datetime(*args, tzinfo=TOKYO).astimezone(UTC)


def rows(payment_id: int | None = None) -> list[LedgerEntry]:
    query = select(LedgerEntry).order_by(LedgerEntry.id)
    if payment_id is not None:
        query = query.where(LedgerEntry.payment_id == payment_id)
    return list(db.session.scalars(query))


# -- what the database refuses -------------------------------------------------------------------------

@pytest.fixture
def template(resident, room) -> dict:
    """The columns of a valid capture (a cash payment of 10 March 2027), to be varied one way at a time."""
    booking = ledger_booking(resident, room, date(2027, 3, 20), at=MARCH_10)
    [entry] = rows()
    values = {column: getattr(entry, column) for column in COLUMNS}
    # Written as text, the way a person at a prompt would: the same on both databases.
    values.update(at="2027-03-10 01:00:00.000000", paid_on="2027-03-10", business_date="2027-03-10",
                  reference="raw-1", payment_id=booking.payment.id)
    return values


def insert(values: dict, **changes) -> None:
    row = {**values, **changes}
    db.session.execute(text(f"INSERT INTO ledger_entries ({', '.join(COLUMNS)})"
                            f" VALUES ({', '.join(':' + c for c in COLUMNS)})"), row)
    db.session.flush()


def refused(values: dict, *, why: str, **changes) -> str:
    """The insert fails, naming the rule it broke; rows inserted before it in the test stay (a savepoint)."""
    with pytest.raises(IntegrityError) as caught, db.session.begin_nested():
        insert(values, **changes)
    assert why in str(caught.value)
    return str(caught.value)


def refund_columns(serial: int = 1, kind: str = "current") -> dict:
    return {"refund_kind": kind, "refund_serial": serial}


@pytest.mark.parametrize("kind", LEDGER_SIGNS)
def test_each_kind_has_its_sign_and_the_database_refuses_the_other(app, template, kind):
    sign = LEDGER_SIGNS[kind]
    extra = refund_columns() if kind == "refund" else {}
    refused(template, why="amount_sign", kind=kind, amount=-sign * 1000, **extra)
    refused(template, why="amount_sign", kind=kind, amount=0, **extra)
    insert(template, kind=kind, amount=sign * 1000, **extra)
    assert db.session.scalar(select(LedgerEntry.amount).where(LedgerEntry.reference == "raw-1")) == sign * 1000
    db.session.rollback()


def test_a_positive_refund_is_refused(app, template):
    """The issue's example: a refund written as money in."""
    refused(template, why="amount_sign", kind="refund", amount=2800, **refund_columns())


def test_an_unknown_kind_is_refused(app, template):
    # Both the kind check and the sign check (which names every kind) refuse it; either may say so first.
    message = refused(template, why="ck_ledger_entries_", kind="adjustment", amount=100)
    assert "ck_ledger_entries_kind" in message or "ck_ledger_entries_amount_sign" in message


def test_only_a_refund_names_its_kind_and_its_number_and_a_refund_names_both(app, template):
    for kind, sign in LEDGER_SIGNS.items():
        if kind == "refund":
            continue
        amount = sign * 100
        refused(template, why="ck_ledger_entries_refund_kind", kind=kind, amount=amount, refund_kind="current")
        refused(template, why="ck_ledger_entries_refund_serial", kind=kind, amount=amount, refund_serial=1)
    refused(template, why="ck_ledger_entries_refund_kind", kind="refund", amount=-100, refund_serial=1)
    refused(template, why="ck_ledger_entries_refund_serial", kind="refund", amount=-100, refund_kind="prior")
    refused(template, why="ck_ledger_entries_refund_kind_value", kind="refund", amount=-100,
            **refund_columns(kind="later"))
    for serial, refund_kind in enumerate(ledger.REFUND_KINDS, start=1):  # 現年度戻出, 過年度支出
        insert(template, kind="refund", amount=-100, reference=f"raw-{refund_kind}",
               **refund_columns(serial=serial, kind=refund_kind))
    db.session.rollback()


def test_a_refund_number_is_used_once_within_its_fiscal_year(app, template):
    insert(template, kind="refund", amount=-100, reference="raw-a", **refund_columns(serial=7))
    refused(template, why="refund_serial", kind="refund", amount=-100, reference="raw-b", **refund_columns(serial=7))
    insert(template, kind="refund", amount=-100, reference="raw-c", fiscal_year=2027, **refund_columns(serial=7))
    assert count(LedgerEntry, LedgerEntry.refund_serial == 7) == 2  # R2026-000007 and R2027-000007
    db.session.rollback()


@pytest.mark.parametrize("method", ["stripe", "paypay", "", "Card"])
def test_the_method_is_card_cash_or_terminal(app, template, method):
    refused(template, why="ck_ledger_entries_method", method=method)


def test_every_method_is_accepted(app, template):
    for n, method in enumerate(("card", "cash", "terminal")):
        insert(template, method=method, reference=f"raw-m{n}")
    db.session.rollback()


def test_a_row_is_never_counted_on_a_day_before_it_happened(app, template):
    refused(template, why="ck_ledger_entries_business_date", business_date="2027-03-09")
    insert(template, business_date="2027-03-11")  # late: counted on the next open day
    db.session.rollback()


def test_a_closed_day_takes_no_more_rows(app, template):
    """Migration 0011's trigger: whoever writes, the database refuses a row for a day finance closed."""
    db.session.add(DayClose(business_date=date(2027, 3, 10), rows=1, net=2800))
    db.session.commit()

    refused(template, why="day_closed")
    refused(template, why="day_closed", paid_on="2027-03-09")  # a late row may not land on it either
    insert(template, business_date="2027-03-11")
    db.session.rollback()
    # The model is no way round it.
    db.session.add(LedgerEntry(**{**template, "at": MARCH_10, "paid_on": date(2027, 3, 10),
                                  "business_date": date(2027, 3, 10)}))
    with pytest.raises(IntegrityError, match="day_closed"):
        db.session.flush()
    db.session.rollback()


# -- what post() writes ------------------------------------------------------------------------------

def test_a_capture_carries_the_booking_payer_place_account_and_provider_ids(app, resident, room):
    booking = ledger_booking(resident, room, date(2027, 3, 20), method="card", at=MARCH_10)
    payment = booking.payment
    resident.name = "山田 花子（改姓）"  # later changes never reach a row already written
    db.session.commit()

    [entry] = rows()
    assert (entry.kind, entry.amount, entry.reference, entry.at) == ("capture", 2800, f"ch_led_{payment.id}", MARCH_10)
    assert (entry.payment_id, entry.booking_id, entry.payer_id, entry.payer_name) == (
        payment.id, booking.id, resident.id, "山田 花子")
    assert (entry.building_id, entry.room_id, entry.account_code) == (room.building_id, room.id, REVENUE)
    assert (entry.paid_on, entry.business_date, entry.fiscal_year, entry.late) == (
        date(2027, 3, 10), date(2027, 3, 10), 2026, False)
    assert (entry.method, entry.intent_id, entry.charge_id) == ("card", payment.intent_id, f"ch_led_{payment.id}")
    assert (entry.provider_refund_id, entry.balance_transaction_id) == (None, None)
    assert (entry.refund_kind, entry.refund_serial, entry.refund_number) == (None, None, None)


@pytest.mark.parametrize(("at", "paid_on", "year"), [
    (datetime(2027, 3, 31, 14, 59, 59, tzinfo=UTC), date(2027, 3, 31), 2026),  # 23:59:59 in Tokyo
    (datetime(2027, 3, 31, 15, 0, tzinfo=UTC), date(2027, 4, 1), 2027),  # midnight in Tokyo: a new fiscal year
    (datetime(2026, 12, 31, 15, 0, tzinfo=UTC), date(2027, 1, 1), 2026),  # a new calendar year is not one
    (datetime(2027, 4, 1, 14, 59, 59, tzinfo=UTC), date(2027, 4, 1), 2027),
])
def test_paid_on_is_the_tokyo_date_and_the_fiscal_year_follows_it(app, resident, room, at, paid_on, year):
    ledger_booking(resident, room, date(2027, 4, 20), at=at)
    [entry] = rows()
    assert (entry.at, entry.paid_on, entry.business_date, entry.fiscal_year) == (at, paid_on, paid_on, year)


@pytest.mark.parametrize(("method", "provider"), [("cash", "cash"), ("terminal", "terminal"), ("card", "stripe")])
def test_the_method_is_named_from_the_payment(app, resident, room, method, provider):
    booking = ledger_booking(resident, room, date(2027, 3, 20), method=method, at=MARCH_10)
    [entry] = rows()
    assert booking.payment.provider == provider and entry.method == method
    assert entry.intent_id == booking.payment.intent_id  # none at the counter
    assert (entry.charge_id is not None) == (method == "card")


def test_the_account_is_the_room_kinds_unless_the_building_names_its_own(app, resident, make_room):
    music, gym, court = make_room(), make_room("体育館"), make_room("多目的コート")
    gym.kind, court.kind = "gym", "court"
    db.session.commit()
    for n, room in enumerate((music, gym, court)):
        ledger_booking(resident, room, date(2027, 3, 20 + n), at=MARCH_10)
    assert [e.account_code for e in rows()] == [REVENUE, SPORTS, SPORTS]

    db.session.get(Building, music.building_id).revenue_account = "13-01-02-09"
    db.session.commit()
    ledger_booking(resident, gym, date(2027, 3, 25), at=MARCH_10)
    assert rows()[-1].account_code == "13-01-02-09"  # the building's own account wins over the room kind
    assert [e.account_code for e in rows()][:3] == [REVENUE, SPORTS, SPORTS]  # and rows written stay as written


def test_money_back_is_booked_to_the_account_the_fee_came_into_even_after_the_setting_changed(
        app, resident, room):
    """現年度戻出 reduces the revenue the fee was booked as: a building given its own account in the middle
    of the year books its new fees there, but refunds of its earlier fees still come out of the old one."""
    booking = ledger_booking(resident, room, date(2027, 3, 20), method="card", at=MARCH_10)
    db.session.get(Building, room.building_id).revenue_account = "13-01-02-09"
    db.session.commit()
    refund = ledger_refund(booking, 1000, at=tokyo(2027, 3, 20, 9, 0))
    withdrawn = ledger.post(booking.payment, "dispute_withdrawal", 1800, "dp_1", at=tokyo(2027, 5, 1, 9, 0))
    newer = ledger_booking(resident, room, date(2027, 3, 21), at=MARCH_10)
    db.session.commit()
    assert (refund.account_code, withdrawn.account_code) == (REVENUE, REVENUE)
    assert rows(newer.payment.id)[0].account_code == "13-01-02-09"


def test_a_fee_is_an_expense_row_of_the_year_it_is_charged_in(app, resident, room):
    booking = ledger_booking(resident, room, date(2027, 3, 20), method="card", at=MARCH_10)
    fee = ledger.post(booking.payment, "fee", 101, "txn_fee_1", balance_transaction_id="txn_fee_1",
                      at=tokyo(2027, 4, 2, 9, 0))
    db.session.commit()
    assert (fee.kind, fee.amount, fee.account_code, fee.balance_transaction_id) == (
        "fee", -101, FEE_ACCOUNT, "txn_fee_1")
    assert (fee.paid_on, fee.fiscal_year, fee.refund_kind, fee.refund_serial) == (date(2027, 4, 2), 2027, None, None)
    assert ledger.balance(booking.payment) == 2800  # revenue stays gross: a fee is never netted from it


@pytest.mark.parametrize(("refunded_at", "kind", "year", "account"), [
    (tokyo(2027, 3, 31, 23, 59), "current", 2026, REVENUE),  # the same fiscal year
    (tokyo(2027, 4, 1, 0, 0), "current", 2026, REVENUE),  # 出納整理期間: still the fee's own year
    (tokyo(2027, 5, 31, 23, 59, 59), "current", 2026, REVENUE),  # its last second
    (tokyo(2027, 6, 1, 0, 0), "prior", 2027, PRIOR_ACCOUNT),  # 過年度支出: an expense of the year paid in
    (tokyo(2028, 6, 1, 0, 0), "prior", 2028, PRIOR_ACCOUNT),
])
def test_a_refund_is_current_until_the_end_of_may_then_a_prior_year_expense(
        app, resident, room, refunded_at, kind, year, account):
    booking = ledger_booking(resident, room, date(2027, 3, 20), at=MARCH_10)
    entry = ledger_refund(booking, 1000, at=refunded_at)
    assert (entry.kind, entry.amount, entry.method) == ("refund", -1000, "cash")
    assert (entry.refund_kind, entry.fiscal_year, entry.account_code) == (kind, year, account)
    assert entry.paid_on == business_date(refunded_at) and entry.refund_serial == 1
    assert entry.refund_number == f"R{year}-000001"
    assert ledger.REFUND_KINDS[entry.refund_kind] == {"current": "現年度戻出", "prior": "過年度支出"}[kind]


def test_a_refund_of_a_fee_paid_this_year_is_current_whatever_the_month(app, resident, room):
    booking = ledger_booking(resident, room, date(2027, 5, 20), at=tokyo(2027, 4, 1, 0, 0))
    first = ledger_refund(booking, 500, at=tokyo(2027, 4, 1, 0, 5))
    second = ledger_refund(booking, 500, at=tokyo(2028, 3, 31, 23, 59))
    assert [(e.refund_kind, e.fiscal_year, e.account_code, e.refund_number) for e in (first, second)] == [
        ("current", 2027, REVENUE, "R2027-000001"), ("current", 2027, REVENUE, "R2027-000002")]


def test_money_back_from_a_dispute_follows_the_same_dates_but_takes_no_refund_number(app, resident, room):
    booking = ledger_booking(resident, room, date(2027, 3, 20), method="card", at=MARCH_10)
    payment = booking.payment
    withdrawn = ledger.post(payment, "dispute_withdrawal", 2800, "dp_1", at=tokyo(2027, 5, 31, 12, 0))
    reinstated = ledger.post(payment, "dispute_reinstatement", 2800, "dp_1", at=tokyo(2027, 6, 1, 12, 0))
    db.session.commit()
    assert (withdrawn.amount, withdrawn.fiscal_year, withdrawn.account_code) == (-2800, 2026, REVENUE)
    assert (reinstated.amount, reinstated.fiscal_year, reinstated.account_code) == (2800, 2027, PRIOR_INCOME)
    assert [(e.refund_kind, e.refund_serial) for e in (withdrawn, reinstated)] == [(None, None)] * 2


def test_a_movement_on_a_closed_day_is_counted_on_the_next_open_day_and_marked_late(app, resident, room):
    db.session.add_all([DayClose(business_date=date(2027, 4, 1)), DayClose(business_date=date(2027, 4, 2))])
    db.session.commit()
    booking = ledger_booking(resident, room, date(2027, 4, 20), at=tokyo(2027, 4, 1, 17, 0))
    [entry] = rows()
    assert (entry.paid_on, entry.business_date, entry.late, entry.fiscal_year) == (
        date(2027, 4, 1), date(2027, 4, 3), True, 2027)
    assert ledger.first_open_day(date(2027, 4, 1)) == date(2027, 4, 3)
    refund = ledger_refund(booking, 100, at=tokyo(2027, 4, 4, 9, 0))
    assert (refund.paid_on, refund.business_date, refund.late) == (date(2027, 4, 4), date(2027, 4, 4), False)


def test_post_takes_a_positive_magnitude_only(app, resident, room):
    booking = ledger_booking(resident, room, date(2027, 3, 20), at=MARCH_10)
    for amount in (0, -100):
        with pytest.raises(ValueError):
            ledger.post(booking.payment, "refund", amount, "r-1", at=MARCH_10)
    db.session.rollback()
    assert count(LedgerEntry) == 1


def test_booked_year_and_the_closing_period():
    assert ledger.closing_period_end(2026) == date(2027, 5, 31)
    assert ledger.booked_year(date(2027, 3, 31), date(2027, 5, 31)) == (2026, True)
    assert ledger.booked_year(date(2027, 3, 31), date(2027, 6, 1)) == (2027, False)
    assert ledger.booked_year(date(2027, 4, 1), date(2028, 5, 31)) == (2027, True)
    assert ledger.booked_year(date(2027, 4, 1), date(2027, 4, 1)) == (2027, True)
    assert fiscal_year(date(2027, 3, 31)) == 2026 and fiscal_year(date(2027, 4, 1)) == 2027


# -- what the money paths post ----------------------------------------------------------------------

@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


WALK_IN = {"name": "窓口 太郎", "name_kana": "マドグチ タロウ", "phone": "03-1234-5678"}


@pytest.mark.payments
def test_a_card_payment_through_checkout_posts_its_capture_with_the_charge(app, localstripe, paid, now):
    payment = paid.payment
    intent = fetch_intent(localstripe, payment.intent_id)
    [entry] = rows()
    assert (entry.kind, entry.amount, entry.method) == ("capture", 2800, "card")
    assert (entry.intent_id, entry.charge_id, entry.reference) == (payment.intent_id, charge_id(intent),
                                                                   charge_id(intent))
    assert (entry.booking_id, entry.payer_id, entry.payer_name) == (paid.id, paid.user_id, paid.user.name)
    assert (entry.building_id, entry.room_id, entry.account_code) == (paid.room.building_id, paid.room_id, REVENUE)
    assert entry.paid_on == business_date(entry.at) == entry.business_date
    assert entry.fiscal_year == fiscal_year(entry.paid_on) and entry.refund_serial is None
    receipt = db.session.scalar(select(Receipt).where(Receipt.booking_id == paid.id))
    assert (receipt.method, receipt.amount, receipt.fiscal_year) == ("card", 2800, entry.fiscal_year)


@pytest.mark.payments
def test_a_card_refund_posts_a_negative_row_with_the_refund_id_and_its_number(app, localstripe, paid):
    payment = paid.payment
    refund = refunds.refund(payment, 1000, reason="staff")
    db.session.commit()
    capture, entry = rows()
    assert refund.provider_refund_id.startswith("re_")
    assert (entry.kind, entry.amount, entry.method, entry.reference) == (
        "refund", -1000, "card", refund.provider_refund_id)
    assert (entry.provider_refund_id, entry.intent_id) == (refund.provider_refund_id, payment.intent_id)
    assert (entry.refund_kind, entry.refund_serial, entry.fiscal_year) == ("current", 1, capture.fiscal_year)
    assert entry.refund_number == f"R{capture.fiscal_year}-000001"
    assert entry.account_code == capture.account_code == REVENUE
    assert ledger.balance(payment) == 1800


@pytest.mark.payments
def test_a_card_refund_that_fails_later_is_reversed_by_a_new_row(app, client, localstripe, paid):
    from tests.test_webhooks import set_refund_status

    refund = refunds.refund(paid.payment, 2800, reason="staff")
    db.session.commit()
    set_refund_status(localstripe, refund.provider_refund_id, "failed")
    post_event(client, localstripe, "refund.failed", {"id": refund.provider_refund_id, "object": "refund"})
    db.session.expire_all()

    capture, out, back = rows()
    assert [(e.kind, e.amount) for e in (capture, out, back)] == [
        ("capture", 2800), ("refund", -2800), ("refund_reversal", 2800)]
    assert (back.provider_refund_id, back.method, back.refund_kind, back.refund_serial) == (
        refund.provider_refund_id, "card", None, None)
    assert out.refund_serial == 1 and ledger.balance(paid.payment) == 2800


@pytest.mark.payments
def test_a_dispute_withdrawal_and_its_reinstatement_post_a_row_each(app, client, localstripe, paid):
    from tests.test_disputes import dispute_object, reinstatement, withdrawal

    post_event(client, localstripe, "charge.dispute.funds_withdrawn",
               dispute_object(localstripe, paid, transactions=[withdrawal(2800)]))
    both = [withdrawal(2800), reinstatement(2800)]
    post_event(client, localstripe, "charge.dispute.funds_reinstated",
               dispute_object(localstripe, paid, status="won", transactions=both))
    db.session.expire_all()

    capture, out, back = rows()
    assert [(e.kind, e.amount, e.reference) for e in (out, back)] == [
        ("dispute_withdrawal", -2800, "dp_1OtherBank"), ("dispute_reinstatement", 2800, "dp_1OtherBank")]
    for entry in (out, back):
        assert (entry.method, entry.charge_id, entry.intent_id) == ("card", capture.charge_id, capture.intent_id)
        assert (entry.refund_kind, entry.refund_serial, entry.account_code) == (None, None, REVENUE)
        assert entry.booking_id == paid.id and entry.fiscal_year == capture.fiscal_year
    assert ledger.balance(paid.payment) == 2800


@pytest.mark.parametrize("method", ["cash", "terminal"])
def test_a_counter_payment_and_its_refund_at_the_counter(app, staff, room, method):
    # One second past midnight in Tokyo on 1 April 2027: the new fiscal year, for the capture and its receipt.
    at = tokyo(2027, 4, 1, 0, 0, 1)
    with time_machine.travel(at, tick=False):
        made = counter.book_on_behalf(staff, room, division_slot(room, booking_day(), ["MORNING"]), method=method,
                                      slip_number="T-0042" if method == "terminal" else None, **WALK_IN)
        db.session.commit()
    booking, payment = made.booking, made.booking.payment
    [entry] = rows()
    assert (entry.kind, entry.amount, entry.method, entry.reference) == (
        "capture", 2800, method, f"{method}-{payment.id}")
    assert (entry.intent_id, entry.charge_id, entry.provider_refund_id) == (None, None, None)
    assert (entry.payer_id, entry.payer_name, entry.room_id) == (booking.user_id, "窓口 太郎", room.id)
    assert (entry.at, entry.paid_on, entry.fiscal_year, entry.account_code) == (at, date(2027, 4, 1), 2027, REVENUE)
    assert (made.receipt.fiscal_year, made.receipt.method) == (2027, method)

    # Paid back at the counter on 1 June 2028: after FY2027's closing period, a 過年度支出 of FY2028.
    refunds.refund(payment, 2800, reason="staff", actor_id=staff.id, now=tokyo(2028, 6, 1, 10, 0))
    db.session.commit()
    _, back = rows()
    assert (back.kind, back.amount, back.method, back.reference) == (
        "refund", -2800, method, f"counter-refund-{payment.refunds[0].id}")
    assert (back.refund_kind, back.fiscal_year, back.account_code, back.refund_number) == (
        "prior", 2028, PRIOR_ACCOUNT, "R2028-000001")
    assert (back.paid_on, back.provider_refund_id, back.charge_id) == (date(2028, 6, 1), None, None)


def test_a_counter_refund_in_the_closing_period_is_current_and_numbered_in_the_old_year(app, staff, room):
    at = tokyo(2027, 3, 31, 23, 59)
    with time_machine.travel(at, tick=False):
        made = counter.book_on_behalf(staff, room, division_slot(room, booking_day(), ["MORNING"]),
                                      method="cash", **WALK_IN)
        db.session.commit()
    refunds.refund(made.booking.payment, 1400, reason="staff", now=at + timedelta(minutes=2))
    db.session.commit()
    capture, back = rows()
    assert (capture.paid_on, capture.fiscal_year) == (date(2027, 3, 31), 2026)
    assert (back.paid_on, back.refund_kind, back.fiscal_year, back.refund_number) == (
        date(2027, 4, 1), "current", 2026, "R2026-000001")
