"""Reconciliation with Stripe: the ledger's card rows against the provider's balance transactions.

What Stripe says is kept as ProviderTransaction rows, one per balance transaction, from three sources:
- its API (`fetch_from_api`, seen_via "api"): every transaction created in a range of days;
- the signed dispute events (services/disputes.py, "event"): localstripe has no dispute transactions;
- the itemized payout reconciliation report finance staff download from the dashboard
  (`import_payout_report`, "report"): the only source that names each transaction's payout, and so the
  payout's 入金日 (arrival date).
A source never overrides a better one: the report outranks the API, which outranks an event's copy, and a
payout once named stays. Fees are booked from what either the API or the report says (a `fee` ledger row per
balance transaction with a fee, once: revenue is booked gross, the fee is an expense, 役務費).

How `reconcile` pairs them (ledger rows of method card; cash and terminal are not Stripe's, counted apart):
1. A ledger row that names its balance transaction (`balance_transaction_id`) is paired with it: a fee row
   with the transaction's fee, any other row with its amount.
2. Otherwise by what the money came from and which way it went: a capture with the charge transaction whose
   source is the row's charge id; a refund with its refund's transaction (source re_, negative) and a refund
   reversal with the refund's failure (re_, positive); a dispute withdrawal with the dispute's negative
   transaction and a reinstatement with its positive one (source: the dispute, the row's reference); a fee row
   with the fee of the transaction its reference names.
3. A pair is `matched` when the ledger amount equals Stripe's (the transaction's amount, or minus its fee for
   a fee row), both signed; otherwise `mismatch`. A transaction left over is `only_in_stripe`, a ledger row
   left over `only_in_ledger`.
4. The range is of Tokyo days: transactions created on them, card rows counted (business_date) or paid
   (paid_on) on them. A partner outside the range (a capture a second before midnight, a late row) still
   pairs, found by the same rules anywhere, so a day boundary never makes a difference.
Each difference puts one needs-attention case on the list, once per provider object (a transaction, or a
ledger row) however many runs see it. A charge of ours that reached Stripe while its booking was never
confirmed (a crash between the charge and our commit) is the case "charged_without_booking", which is only
closed by confirming the booking or giving the money back (`confirm_charged`, `refund_charged`).
"""
import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from flask import current_app
from sqlalchemy import and_, func, or_, select

from ...extensions import db
from ...i18n import gettext as _
from ...models import (
    AttentionCase,
    Booking,
    BookingState,
    LedgerEntry,
    LedgerSettlement,
    Payment,
    PaymentState,
    Payout,
    ProviderTransaction,
    ReconciliationItem,
    ReconciliationRun,
    User,
    record,
)
from ...models.payment import LEDGER_SIGNS
from ...payments import BalanceTransactionView, GatewayError, IntentView, get_gateway
from ...timeutil import TOKYO, business_date, local, now_utc
from .. import checkout, ledger
from ..attention import open_case, resolve
from ..availability import day_bounds
from ..booking import active_clause, overlapping
from ..exports import EARLIEST, LATEST, Period

MAX_DAYS = 366
# Transactions are fetched this far around the range too: a partner just across a day boundary pairs.
FETCH_MARGIN = timedelta(days=2)
# Intents are looked at this far before the range: an authorisation may be captured up to 7 days after it.
INTENT_LOOKBACK = timedelta(days=8)
REPORT_MAX_BYTES = 20 * 1024 * 1024  # the CLI's limit; the page's is MAX_CONTENT_LENGTH
SEEN_RANK = {"event": 0, "api": 1, "report": 2}
STATUSES = ("mismatch", "only_in_stripe", "only_in_ledger", "matched")
CASE_REASONS = {"mismatch": "reconciliation_mismatch", "only_in_stripe": "reconciliation_only_in_stripe",
                "only_in_ledger": "reconciliation_only_in_ledger"}
CHARGED_WITHOUT_BOOKING = "charged_without_booking"
CASE_KINDS = (*CASE_REASONS.values(), CHARGED_WITHOUT_BOOKING)
# A case's detail starts with the provider object it is about: "txn_123: ..." (see _case_key).
KEY_END = ": "
# Reporting categories of the payout's parts (Payout: gross − fees − refunds + other = net).
CHARGE_CATEGORIES = frozenset({"charge", "payment"})
REFUND_CATEGORIES = frozenset({"refund"})
SKIPPED_CATEGORIES = frozenset({"payout", "payout_reversal"})  # the payout itself, never a movement of ours
# Which ledger kinds go which way (the sign of their balance transaction), fees apart: from the ledger's signs.
KINDS_IN = tuple(k for k, sign in LEDGER_SIGNS.items() if sign > 0 and k not in ledger.FEE_KINDS)
KINDS_OUT = tuple(k for k, sign in LEDGER_SIGNS.items() if sign < 0 and k not in ledger.FEE_KINDS)


class ReconcileError(ValueError):
    """A request reconciliation cannot act on; the message says why, for people."""


class ReportError(ValueError):
    """A payout report that cannot be imported; the message says why (and where), for people. Nothing was saved."""


# -- the range ------------------------------------------------------------------------------------

def parse_range(first: date | str | None, last: date | str | None) -> Period:
    """The inclusive range of Tokyo days to reconcile, or ReconcileError saying what is wrong."""
    try:
        first = first if isinstance(first, date) else date.fromisoformat(first or "")
        last = last if isinstance(last, date) else date.fromisoformat(last or "")
    except ValueError:
        raise ReconcileError(_("Enter the days as YYYY-MM-DD, for example 2027-04-01.")) from None
    if not (EARLIEST <= first <= LATEST and EARLIEST <= last <= LATEST):
        raise ReconcileError(_("Enter the days as YYYY-MM-DD, for example 2027-04-01."))
    if last < first:
        raise ReconcileError(_("The last day must not be before the first day."))
    period = Period(first, last)
    if period.days > MAX_DAYS:
        raise ReconcileError(_("Reconcile at most %(days)d days at a time.", days=MAX_DAYS))
    return period


def _bounds(period: Period) -> tuple[datetime, datetime]:
    return day_bounds(period.first)[0], day_bounds(period.last)[1]


# -- what Stripe says: ProviderTransaction rows ---------------------------------------------------------

def record_transaction(view: BalanceTransactionView, *, seen_via: str, intent_id: str | None = None,
                       payout_id: str | None = None) -> ProviderTransaction:
    """Keep one balance transaction as Stripe reported it (insert, or bring the stored one up to date).

    A fee below 0 is Stripe giving a fee back (a won dispute's): it is kept as Stripe says, and booked as a
    `fee_refund` row (book_fees).
    """
    amount, fee = view.amount, view.fee
    row = db.session.get(ProviderTransaction, view.id)
    if row is None:
        row = ProviderTransaction(id=view.id, seen_via=seen_via)
        db.session.add(row)
    elif SEEN_RANK[seen_via] < SEEN_RANK.get(row.seen_via, 0):
        row.intent_id = row.intent_id or intent_id
        row.payout_id = row.payout_id or payout_id or view.payout_id
        return row  # a lesser source adds what was missing, and changes nothing else
    row.seen_via = seen_via
    row.type, row.reporting_category = view.type[:32], view.reporting_category[:32]
    row.amount, row.fee, row.net = amount, fee, amount - fee
    row.currency = view.currency.lower()[:3]
    row.source_id = view.source_id or row.source_id
    row.intent_id = intent_id or row.intent_id
    row.payout_id = payout_id or view.payout_id or row.payout_id
    row.created_at = view.created or row.created_at or now_utc()  # an event's copy may not say
    return row


def record_event_transactions(transactions, *, intent_id: str | None = None) -> None:
    """The balance transactions a provider event carried (a dispute's), kept as seen_via "event".

    Their fees (a dispute's) are booked when reconciliation reads them, as every fee is (book_fees).
    """
    for view in transactions:
        record_transaction(view, seen_via="event", intent_id=intent_id)
    db.session.flush()


def fetch_from_api(date_from: date, date_to: date) -> int:
    """Keep every balance transaction Stripe's API lists as created on these Tokyo days; returns how many.

    Fees it names are booked at once (book_fees). Raises GatewayError when the provider cannot answer.
    """
    start, end = _bounds(Period(date_from, date_to))
    views = get_gateway().list_balance_transactions(start, end)
    rows = [record_transaction(v, seen_via="api") for v in views]
    db.session.flush()
    book_fees(rows)
    return len(rows)


def _payment_of_transaction(txn: ProviderTransaction) -> Payment | None:
    """Our payment a balance transaction is about, if we know it (by its source, or its intent)."""
    payment = checkout.payment_of(txn.source_id, txn.intent_id)
    if payment is None and txn.intent_id:
        payment = db.session.scalar(select(Payment).where(Payment.intent_id == txn.intent_id))
    if payment is None and txn.source_id:  # the ledger knows which payment a charge or refund was of
        payment = db.session.scalar(select(Payment).join(LedgerEntry, LedgerEntry.payment_id == Payment.id).where(
            or_(LedgerEntry.charge_id == txn.source_id, LedgerEntry.provider_refund_id == txn.source_id)).limit(1))
    return payment


def book_fees(transactions) -> int:
    """A `fee` ledger row for each of these transactions with a fee not booked yet; returns how many were written.

    The fee is an expense of the day Stripe charged it (at = the transaction's time). A transaction of no
    payment of ours (a fee of Stripe's own, an unknown charge) cannot be booked to a booking: reconcile then
    shows its fee as only in Stripe.
    """
    written = 0
    for txn in transactions:
        if txn.fee == 0 or _fee_entry(txn.id) is not None:
            continue
        payment = _payment_of_transaction(txn)
        if payment is None:
            continue
        # A fee is an expense; a negative one (given back) is its return, to the same expense account.
        ledger.post(payment, "fee" if txn.fee > 0 else "fee_refund", abs(txn.fee), txn.id,
                    balance_transaction_id=txn.id, at=txn.created_at)
        written += 1
    return written


def _fee_entry(txn_id: str) -> LedgerEntry | None:
    return db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind.in_(ledger.FEE_KINDS),
                                                       LedgerEntry.reference == txn_id))


# -- pairing ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    """One part of a balance transaction a ledger row can pair with: its amount ("gross") or its fee."""

    txn: ProviderTransaction
    part: str  # gross | fee

    @property
    def ident(self) -> tuple[str, str]:
        return self.txn.id, self.part

    @property
    def amount(self) -> int:
        """Stripe's side as the ledger signs it: the amount, or the fee as money out."""
        return self.txn.amount if self.part == "gross" else -self.txn.fee

    @property
    def key(self) -> tuple:
        if self.part == "fee":
            return "fee", self.txn.id
        return self.txn.source_id, _sign(self.txn.amount)


def _sign(amount: int) -> int:
    return (amount > 0) - (amount < 0)


def _slots(txn: ProviderTransaction) -> list[Slot]:
    """The parts of a transaction the ledger should hold: its amount unless 0, its fee if any."""
    if txn.reporting_category in SKIPPED_CATEGORIES:
        return []
    return ([Slot(txn, "gross")] if txn.amount else []) + ([Slot(txn, "fee")] if txn.fee else [])


def _source_of(entry: LedgerEntry) -> str | None:
    """What a ledger row's money came from at Stripe: its charge, its refund, or (disputes) its reference."""
    if entry.kind == "capture":
        return entry.charge_id or entry.reference
    if entry.kind in ("refund", "refund_reversal"):
        return entry.provider_refund_id or entry.reference
    return entry.reference


def _entry_key(entry: LedgerEntry) -> tuple:
    if entry.kind in ledger.FEE_KINDS:
        return "fee", entry.balance_transaction_id or entry.reference
    return _source_of(entry), _sign(entry.amount)


def _part(entry: LedgerEntry) -> str:
    return "fee" if entry.kind in ledger.FEE_KINDS else "gross"


class Pairing:
    """The pairs of one run: transactions' parts and ledger rows, each used once (rules in the module docstring)."""

    def __init__(self, transactions: list[ProviderTransaction], entries: list[LedgerEntry]):
        self.slots = {s.ident: s for t in transactions for s in _slots(t)}
        self.by_key: dict[tuple, list[Slot]] = defaultdict(list)
        for slot in self.slots.values():
            self.by_key[slot.key].append(slot)
        self.used_slots: set[tuple[str, str]] = set()
        self.used_entries: set[int] = set()
        self.pairs: list[tuple[Slot, LedgerEntry]] = []
        self.lone_entries: list[LedgerEntry] = []
        for entry in entries:
            slot = self._slot_for(entry)
            if slot is None:
                self.lone_entries.append(entry)
            else:
                self._pair(slot, entry)
        self.lone_slots: list[Slot] = []
        for slot in self.slots.values():
            if slot.ident in self.used_slots:
                continue
            entry = self._entry_elsewhere(slot)
            if entry is None:
                self.lone_slots.append(slot)
            else:
                self._pair(slot, entry)

    def _pair(self, slot: Slot, entry: LedgerEntry) -> None:
        self.used_slots.add(slot.ident)
        self.used_entries.add(entry.id)
        self.pairs.append((slot, entry))

    def _free(self, slot: Slot | None) -> Slot | None:
        return slot if slot is not None and slot.ident not in self.used_slots else None

    def _slot_for(self, entry: LedgerEntry) -> Slot | None:
        """The rules in order: its own balance transaction, then its source and direction; in range, then anywhere."""
        part = _part(entry)
        if entry.balance_transaction_id:
            slot = self._free(self.slots.get((entry.balance_transaction_id, part)))
            if slot is None:
                txn = db.session.get(ProviderTransaction, entry.balance_transaction_id)
                slot = self._free(next((s for s in _slots(txn) if s.part == part), None)) if txn else None
            if slot is not None:
                return slot
        key = _entry_key(entry)
        slot = next((s for s in self.by_key.get(key, ()) if s.ident not in self.used_slots), None)
        return slot or self._slot_elsewhere(entry, key)

    def _slot_elsewhere(self, entry: LedgerEntry, key: tuple) -> Slot | None:
        if entry.kind in ledger.FEE_KINDS:
            txn = db.session.get(ProviderTransaction, key[1]) if key[1] else None
            candidates = [txn] if txn is not None else []
        else:
            source, sign = key
            if not source or not sign:
                return None
            candidates = db.session.scalars(
                select(ProviderTransaction).where(ProviderTransaction.source_id == source,
                                                  ProviderTransaction.amount > 0 if sign > 0
                                                  else ProviderTransaction.amount < 0)
                .order_by(ProviderTransaction.created_at, ProviderTransaction.id)).all()
        part = _part(entry)
        return next((s for t in candidates for s in _slots(t) if s.part == part and s.key == key
                     and s.ident not in self.used_slots), None)

    def _entry_elsewhere(self, slot: Slot) -> LedgerEntry | None:
        """A card ledger row outside the range for a transaction in it, by the same rules."""
        txn = slot.txn
        if slot.part == "fee":
            where = and_(LedgerEntry.kind.in_(ledger.FEE_KINDS),
                         or_(LedgerEntry.balance_transaction_id == txn.id, LedgerEntry.reference == txn.id))
        else:
            kinds = KINDS_IN if txn.amount > 0 else KINDS_OUT
            where = and_(LedgerEntry.kind.in_(kinds), or_(
                LedgerEntry.balance_transaction_id == txn.id,
                *([LedgerEntry.charge_id == txn.source_id, LedgerEntry.provider_refund_id == txn.source_id,
                   LedgerEntry.reference == txn.source_id] if txn.source_id else [])))
        found = db.session.scalars(select(LedgerEntry).where(LedgerEntry.method == "card", where)
                                   .order_by(LedgerEntry.id)).all()
        for entry in found:
            if entry.id in self.used_entries:
                continue
            if entry.balance_transaction_id == txn.id or (not entry.balance_transaction_id
                                                          and _entry_key(entry) == slot.key):
                if entry in self.lone_entries:
                    self.lone_entries.remove(entry)
                return entry
        return None


def _entries_in(period: Period) -> list[LedgerEntry]:
    counted = or_(LedgerEntry.business_date.between(period.first, period.last),
                  LedgerEntry.paid_on.between(period.first, period.last))
    return list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.method == "card", counted)
                                   .order_by(LedgerEntry.id)))


def _transactions_in(period: Period) -> list[ProviderTransaction]:
    start, end = _bounds(period)
    return list(db.session.scalars(
        select(ProviderTransaction).where(ProviderTransaction.created_at >= start, ProviderTransaction.created_at < end)
        .order_by(ProviderTransaction.created_at, ProviderTransaction.id)))


def counter_totals(period: Period) -> dict[str, tuple[int, int]]:
    """Cash and terminal rows counted on these days, by method: (rows, yen). Not Stripe's, so not compared."""
    found = db.session.execute(
        select(LedgerEntry.method, func.count(LedgerEntry.id), func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.method.in_(("cash", "terminal")),
               LedgerEntry.business_date.between(period.first, period.last))
        .group_by(LedgerEntry.method))
    return {method: (rows, int(total)) for method, rows, total in found}


# -- a run --------------------------------------------------------------------------------------------

def reconcile(date_from: date, date_to: date, *, actor: User | None = None, trigger: str = "cli",
              fetch: bool | None = None, now: datetime | None = None) -> ReconciliationRun:
    """Compare the ledger's card rows with Stripe's balance transactions over these Tokyo days.

    First asks Stripe's API for the transactions (and intents) of the days, unless `fetch` is False (by
    default only when online payment is on). Writes a ReconciliationRun with one ReconciliationItem per pair
    or left-over, and opens a needs-attention case for each difference not seen before. When the provider
    cannot be reached the run keeps the error and compares nothing (no case is opened for what it could not
    see). Flushes; the caller commits.
    """
    now = now or now_utc()
    period = Period(date_from, date_to)
    run = ReconciliationRun(actor_id=actor.id if actor else None, trigger=trigger, date_from=period.first,
                            date_to=period.last, started_at=now)
    db.session.add(run)
    fetch = current_app.config["PAYMENTS_ENABLED"] if fetch is None else fetch
    intents: list[IntentView] = []
    if fetch:
        try:
            fetch_from_api(period.first - FETCH_MARGIN, period.last + FETCH_MARGIN)
            start, end = _bounds(period)
            intents = get_gateway().list_intents(start - INTENT_LOOKBACK, end)
        except GatewayError as exc:
            run.error = f"{exc.code}: {exc.message}"[:500]
            db.session.flush()
            record("reconciliation_run", run.id, "failed", actor_id=run.actor_id, error=run.error)
            return run
    transactions = _transactions_in(period)
    book_fees(transactions)  # what the API, an event or a report said since, fees of disputes included
    pairing = Pairing(transactions, _entries_in(period))
    charged = _charged_without_booking(intents, pairing)
    found = ([(slot, entry) for slot, entry in pairing.pairs] + [(slot, None) for slot in pairing.lone_slots]
             + [(None, entry) for entry in pairing.lone_entries])
    counts = dict.fromkeys(STATUSES, 0)
    for slot, entry in found:
        item = _item(slot, entry)
        run.items.append(item)
        counts[item.status] += 1
    run.matched, run.only_in_stripe, run.only_in_ledger, run.mismatched = (
        counts["matched"], counts["only_in_stripe"], counts["only_in_ledger"], counts["mismatch"])
    db.session.flush()
    _open_cases(run, found, charged, ask=fetch)
    record("reconciliation_run", run.id, "ran", actor_id=run.actor_id, trigger=trigger,
           date_from=period.first.isoformat(), date_to=period.last.isoformat(), matched=run.matched,
           only_in_stripe=run.only_in_stripe, only_in_ledger=run.only_in_ledger, mismatched=run.mismatched)
    db.session.flush()
    return run


def _item(slot: Slot | None, entry: LedgerEntry | None) -> ReconciliationItem:
    if slot is not None and entry is not None:
        status = "matched" if slot.amount == entry.amount else "mismatch"
    else:
        status = "only_in_stripe" if entry is None else "only_in_ledger"
    txn = slot.txn if slot else None
    return ReconciliationItem(
        status=status, balance_transaction_id=txn.id if txn else entry.balance_transaction_id,
        ledger_entry_id=entry.id if entry else None, stripe_amount=slot.amount if slot else None,
        ledger_amount=entry.amount if entry else None, payout_id=txn.payout_id if txn else None,
        detail={"part": slot.part if slot else _part(entry),
                "category": txn.reporting_category if txn else "", "source_id": txn.source_id if txn else None,
                "kind": entry.kind if entry else None, "reference": entry.reference if entry else None},
    )


def summary(run: ReconciliationRun) -> dict[str, int]:
    return {"matched": run.matched, "only_in_stripe": run.only_in_stripe, "only_in_ledger": run.only_in_ledger,
            "mismatch": run.mismatched}


def all_matched(run: ReconciliationRun) -> bool:
    """Nothing to look at: no error, no difference, and every payout's sums agree."""
    return (not run.error and not (run.only_in_stripe or run.only_in_ledger or run.mismatched)
            and all(p.agrees for p in payout_checks(run)))


# -- charged without a booking ---------------------------------------------------------------------------

def _payment_of_intent(intent: IntentView) -> Payment | None:
    """Our payment an intent was made for: by its id, or (never recorded) by our key in its metadata."""
    payment = db.session.scalar(select(Payment).where(Payment.intent_id == intent.id))
    key = intent.metadata.get("payment_key")
    if payment is None and key:
        payment = db.session.scalar(select(Payment).where(Payment.idempotency_key == key))
        if payment is not None and payment.intent_id not in (None, intent.id):
            return None  # our payment has another intent: not ours to settle by this one
    return payment


def is_charged_without_booking(payment: Payment) -> bool:
    """Money held at Stripe for this payment that our records do not have as taken for a confirmed booking.

    A hold still held is not: the expiry job settles it (and a live one may be paying right now). A
    confirmed booking still only authorised is the capture job's.
    """
    booking = payment.booking
    if payment.state == PaymentState.CAPTURED or booking.state == BookingState.HELD:
        return False
    return not (payment.state == PaymentState.AUTHORIZED and booking.state == BookingState.CONFIRMED)


@dataclass(frozen=True)
class Charged:
    """A charge of ours at Stripe whose booking was never confirmed."""

    payment: Payment
    charge_id: str | None  # None while only authorised: no balance transaction yet


def _charged_without_booking(intents: list[IntentView], pairing: Pairing) -> dict[str, Charged]:
    """Intent id → the charge, for every charge of ours at Stripe whose booking was never confirmed.

    Found two ways: an intent Stripe has as authorised or paid; and a charge transaction the ledger does not
    have whose payment we know (the report names its intent).
    """
    found: dict[str, Charged] = {}
    for intent in intents:
        if intent.status in checkout.PAID:
            payment = _payment_of_intent(intent)
            if payment is not None and is_charged_without_booking(payment):
                found[intent.id] = Charged(payment, intent.charge_id)
    for slot in pairing.lone_slots:
        txn = slot.txn
        if slot.part != "gross" or txn.amount <= 0 or txn.reporting_category not in CHARGE_CATEGORIES:
            continue
        by_charge = next((i for i in intents if i.charge_id and i.charge_id == txn.source_id), None)
        payment = _payment_of_intent(by_charge) if by_charge else _payment_of_transaction(txn)
        intent_id = (by_charge.id if by_charge else None) or txn.intent_id or (payment.intent_id if payment else None)
        if payment is not None and intent_id and is_charged_without_booking(payment):
            found.setdefault(intent_id, Charged(payment, txn.source_id))
    return found


# -- cases ----------------------------------------------------------------------------------------------

def _case_key(case: AttentionCase) -> str:
    return (case.detail or "").split(KEY_END, 1)[0]


def _has_case(key: str) -> bool:
    """Whether any reconciliation case (open or resolved) was ever opened about this provider object."""
    return db.session.scalar(select(AttentionCase.id).where(
        AttentionCase.reason.in_(CASE_KINDS), AttentionCase.detail.startswith(key + KEY_END, autoescape=True))
        .limit(1)) is not None


def _open(reason: str, key: str, text: str, payment: Payment | None) -> AttentionCase | None:
    """One case per provider object: None when there was one already."""
    if _has_case(key):
        return None
    detail = f"{key}{KEY_END}{text}"
    if payment is not None:
        return open_case(payment, reason, detail)
    case = AttentionCase(reason=reason, detail=detail)  # of no booking of ours: on the list of the unscoped
    db.session.add(case)
    db.session.flush()
    record("attention_case", case.id, "opened", reason=reason)
    return case


def _open_cases(run: ReconciliationRun, found: list, charged: dict[str, Charged], *, ask: bool) -> None:
    """A case for each charge without a booking, then for each difference (once per provider object).

    `ask`: Stripe may be asked which charge a refund we never heard of belongs to (a dashboard refund), so
    that its case goes on that booking's list.
    """
    for intent_id, charge in charged.items():
        payment = charge.payment
        case = _open(CHARGED_WITHOUT_BOOKING, intent_id,
                     f"charged at Stripe; booking #{payment.booking_id} is {payment.booking.state}, "
                     f"payment {payment.state}", payment)
        if case is not None:
            record("payment", payment.id, "charged without booking found", intent_id=intent_id, run_id=run.id)
    charges = {c.charge_id for c in charged.values() if c.charge_id}
    payments = {c.payment.id for c in charged.values()}
    for item, (slot, entry) in zip(run.items, found, strict=True):
        if item.status == "matched":
            continue
        if entry is None and slot.txn.source_id in charges:
            continue  # the charged-without-booking case says it
        payment = entry.payment if entry is not None else _payment_of_transaction(slot.txn)
        if entry is None and payment is None and ask:
            payment = _payment_of_refund(slot.txn)
        if entry is None and payment is not None and payment.id in payments:
            continue
        key = f"ledger-{entry.id}" if slot is None else (slot.txn.id if slot.part == "gross" else f"{slot.txn.id}/fee")
        what = " ".join(filter(None, (entry.kind if entry else slot.txn.reporting_category,
                                      slot.txn.source_id if slot else entry.reference)))
        text = (f"Stripe {'-' if slot is None else slot.amount} yen, "
                f"ledger {'-' if entry is None else entry.amount} yen ({what})")
        case = _open(CASE_REASONS[item.status], key, text, payment)
        if case is not None:
            item.detail = {**item.detail, "case_id": case.id}


def _payment_of_refund(txn: ProviderTransaction) -> Payment | None:
    """The payment of a refund transaction we have no record of, by asking Stripe for the refund's charge."""
    if not (txn.source_id or "").startswith("re_") or _has_case(txn.id):
        return None
    try:
        return checkout.payment_of(get_gateway().retrieve_refund(txn.source_id).charge_id)
    except GatewayError:
        return None


_OPEN_CASES = (AttentionCase.reason.in_(CASE_KINDS), AttentionCase.resolved_at.is_(None))


def open_reconciliation_cases() -> list[AttentionCase]:
    """The open cases reconciliation opened, oldest first (finance acts on them on the reconciliation page)."""
    return list(db.session.scalars(select(AttentionCase).where(*_OPEN_CASES)
                                   .order_by(AttentionCase.created_at, AttentionCase.id)))


def open_reconciliation_case_count() -> int:
    return db.session.scalar(select(func.count()).select_from(AttentionCase).where(*_OPEN_CASES))


@dataclass(frozen=True)
class CaseFacts:
    key: str  # the provider object: txn_..., txn_.../fee, ledger-<id>, or the intent of a charge without a booking
    item: ReconciliationItem | None  # the latest run's item about it, with both amounts


def case_facts(cases: list[AttentionCase]) -> dict[int, CaseFacts]:
    """What each reconciliation case is about, for the page: its provider object and the latest amounts."""
    keys = {c.id: _case_key(c) for c in cases}
    entry_ids = {int(k[7:]) for k in keys.values() if k.startswith("ledger-") and k[7:].isdigit()}
    txn_ids = {k.removesuffix("/fee") for k in keys.values() if not k.startswith("ledger-")}
    found = db.session.scalars(select(ReconciliationItem).where(or_(
        ReconciliationItem.ledger_entry_id.in_(entry_ids), ReconciliationItem.balance_transaction_id.in_(txn_ids)))
        .order_by(ReconciliationItem.id)).all() if cases else []
    latest: dict[str, ReconciliationItem] = {}
    for item in found:  # in order: the latest run's items last
        if item.ledger_entry_id in entry_ids:
            latest[f"ledger-{item.ledger_entry_id}"] = item
        if item.stripe_amount is not None:
            fee = (item.detail or {}).get("part") == "fee"
            latest[f"{item.balance_transaction_id}/fee" if fee else item.balance_transaction_id] = item
    return {case_id: CaseFacts(key, latest.get(key)) for case_id, key in keys.items()}


def _charged_case(case: AttentionCase) -> tuple[Payment, IntentView]:
    """The payment and the intent, fresh from Stripe, of an open charged-without-booking case."""
    if case.reason != CHARGED_WITHOUT_BOOKING or case.payment is None:
        raise ReconcileError(_("Only a charge without a confirmed booking is confirmed or refunded here."))
    if case.resolved_at is not None:
        raise ReconcileError(_("This case was already resolved."))
    intent = get_gateway().retrieve_intent(_case_key(case))
    payment = checkout.lock_payment(case.payment)
    if payment.intent_id not in (None, intent.id):
        raise ReconcileError(_("This payment has another card payment now: look at it at Stripe."))
    if payment.intent_id is None:  # the charge we never recorded: it is this payment's
        payment.intent_id = intent.id
        checkout.map_provider_id(intent.id, "intent", payment)
    return payment, intent


def can_confirm(case: AttentionCase, now: datetime | None = None) -> bool:
    """Whether confirming may keep the booking: not over, not to be paid by a deadline, its slot still free."""
    booking = case.booking
    now = now or now_utc()
    if case.reason != CHARGED_WITHOUT_BOOKING or booking is None or booking.start_at <= now:
        return False
    if booking.state == BookingState.CONFIRMED:
        return True
    if booking.state not in (BookingState.HELD, BookingState.EXPIRED) or booking.pay_mode == "deadline":
        return False
    others = and_(overlapping(booking.room_id, booking.start_at, booking.end_at), Booking.id != booking.id)
    return db.session.scalar(select(Booking.id).where(others, active_clause(now)).limit(1)) is None


def confirm_charged(case: AttentionCase, actor: User, *, now: datetime | None = None) -> str:
    """Keep the money and confirm the booking, through checkout.settle, the one confirm function.

    Returns settle's outcome: "confirmed", or "refunded" if the slot was taken meanwhile (settle then gives
    the money back itself). Raises ReconcileError when it may not be confirmed, GatewayError when Stripe
    cannot be asked. May commit (settle commits before it captures).
    """
    now = now or now_utc()
    if not can_confirm(case, now):
        raise ReconcileError(_("The booking cannot be confirmed any more (its slot is taken, or its day is past): "
                               "refund the money instead."))
    payment, intent = _charged_case(case)
    if intent.status not in checkout.PAID:
        raise ReconcileError(_("Stripe no longer holds this money: look at the payment at Stripe."))
    case_id, payment_id = case.id, payment.id
    outcome = checkout.settle(payment, now=now, intent=intent)
    record("payment", payment_id, f"charged without booking: {outcome}", actor_id=actor.id, intent_id=intent.id)
    _close(db.session.get(AttentionCase, case_id), actor,
           f"Confirmed through reconciliation ({outcome})" if outcome == "confirmed"
           else f"Confirm asked; the slot was taken, so the money was returned ({outcome})")
    return outcome


def refund_charged(case: AttentionCase, actor: User, *, now: datetime | None = None) -> str:
    """Give the money back: release an authorisation, or record the capture and refund it in full.

    Returns "released" or "refunded". Raises GatewayError when Stripe cannot be asked (nothing is closed).
    May commit (a refund is committed before Stripe is asked, as every refund).
    """
    from ..refunds import refund  # refunds builds on checkout, as this module does; imported when used

    now = now or now_utc()
    if case.booking is not None and case.booking.state == BookingState.CONFIRMED:
        raise ReconcileError(_("The booking is confirmed: cancel it from the booking to give the money back."))
    payment, intent = _charged_case(case)
    case_id, payment_id = case.id, payment.id
    if intent.status == "requires_capture":
        get_gateway().cancel(intent.id, payment_key=payment.idempotency_key)
        if payment.can_become(PaymentState.CANCELLED):
            payment.transition(PaymentState.CANCELLED, reason="authorisation without a booking released",
                               actor_id=actor.id)
        outcome, note = "released", "Authorisation released through reconciliation: nothing was charged"
    elif intent.status == "succeeded":
        checkout.record_capture(payment, intent, now=now)
        amount = payment.refundable
        if amount:
            refund(payment, amount, reason="staff", actor_id=actor.id, now=now)
        outcome, note = "refunded", f"Refunded {amount} yen through reconciliation"
    else:
        raise ReconcileError(_("Stripe no longer holds this money: look at the payment at Stripe."))
    record("payment", payment_id, f"charged without booking: {outcome}", actor_id=actor.id, intent_id=intent.id)
    _close(db.session.get(AttentionCase, case_id), actor, note)
    return outcome


def resolve_case(case: AttentionCase, actor: User, note: str) -> bool:
    """Close a reconciliation difference with a note; a charge without a booking is closed only by its actions."""
    if case.reason == CHARGED_WITHOUT_BOOKING:
        raise ReconcileError(_("A charge without a confirmed booking is closed by confirming it or refunding it."))
    return resolve(case, actor, note)


def _close(case: AttentionCase, actor: User, note: str) -> None:
    if case.resolved_at is None:
        resolve(case, actor, note)


# -- the payout report -----------------------------------------------------------------------------

REQUIRED_COLUMNS = ("balance_transaction_id", "created_utc", "currency", "gross", "fee", "net",
                    "reporting_category", "source_id", "automatic_payout_id")
ARRIVAL_COLUMNS = ("automatic_payout_effective_at_utc", "automatic_payout_effective_at")


@dataclass(frozen=True)
class ReportRow:
    line: int
    view: BalanceTransactionView
    intent_id: str | None
    payout_id: str | None
    arrival: date | None  # 入金日, the payout's day in Tokyo


@dataclass
class ImportResult:
    rows: int = 0
    skipped: int = 0  # payout rows (the payout itself)
    fees_booked: int = 0
    settled: int = 0  # ledger rows given their 入金日
    payouts: list[str] = field(default_factory=list)
    first: date | None = None
    last: date | None = None


def _read_text(file, max_bytes: int) -> str:
    data = file if isinstance(file, bytes) else file.read(max_bytes + 1)
    if len(data) > max_bytes:
        size = f"{max_bytes / 1024 / 1024:g}"
        raise ReportError(_("The file is larger than %(size)s MB.", size=size))
    if not data.strip():
        raise ReportError(_("The file is empty."))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ReportError(_("The file is not UTF-8 text (line %(line)d). Download the CSV from the Stripe "
                            "dashboard again and send it as it is.", line=line)) from None


def _yen(text: str, line: int, column: str) -> int:
    """An amount in major units ("2800", "2800.00", "-800.00") as whole yen; yen has no smaller unit."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise ReportError(_("Line %(line)d: %(column)s is not an amount: %(value)s",
                            line=line, column=column, value=text[:40]))
    if value != value.to_integral_value():
        raise ReportError(_("Line %(line)d: %(column)s is not a whole number of yen: %(value)s",
                            line=line, column=column, value=text[:40]))
    return int(value)


def _moment(text: str, line: int, column: str, *, utc: bool = True) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(_("Line %(line)d: %(column)s is not a date and time: %(value)s",
                            line=line, column=column, value=text[:40])) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC if utc else TOKYO)
    return moment.astimezone(UTC)


def _text(row: dict, column: str, line: int, *, required: bool = False, limit: int = 64) -> str | None:
    value = (row.get(column) or "").strip()
    if required and not value:
        raise ReportError(_("Line %(line)d: %(column)s is empty.", line=line, column=column))
    if len(value) > limit:
        raise ReportError(_("Line %(line)d: %(column)s is too long.", line=line, column=column))
    return value or None


def parse_report(text: str) -> list[ReportRow]:
    """Every row of the report, checked; ReportError naming the first problem (and its line)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if not any(c in header for c in ARRIVAL_COLUMNS):
            missing.append(ARRIVAL_COLUMNS[0])
        if missing:
            raise ReportError(_("The file is not Stripe's itemized payout reconciliation report: it has no "
                                "column %(columns)s.", columns=", ".join(missing)))
        rows, seen = [], set()
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            line = reader.line_num
            if len(values) != len(header):
                raise ReportError(_("Line %(line)d has %(found)d values; the header has %(expected)d.",
                                    line=line, found=len(values), expected=len(header)))
            row = _report_row(dict(zip(header, values, strict=True)), line)
            if row.view.id in seen:
                raise ReportError(_("Line %(line)d: balance transaction %(id)s is listed twice.",
                                    line=line, id=row.view.id))
            seen.add(row.view.id)
            rows.append(row)
    except csv.Error as exc:
        raise ReportError(_("The file is not a CSV file (line %(line)d).", line=reader.line_num)) from exc
    except StopIteration:
        raise ReportError(_("The file is empty.")) from None
    if not rows:
        raise ReportError(_("The file has no transactions."))
    return rows


def _report_row(row: dict, line: int) -> ReportRow:
    txn_id = _text(row, "balance_transaction_id", line, required=True)
    currency = (_text(row, "currency", line, required=True, limit=3) or "").lower()
    if currency != "jpy":
        raise ReportError(_("Line %(line)d: the currency is %(currency)s; only yen (jpy) is taken.",
                            line=line, currency=currency))
    gross, fee, net = (_yen(row["gross"], line, "gross"), _yen(row["fee"], line, "fee"),
                       _yen(row["net"], line, "net"))
    if net != gross - fee:
        raise ReportError(_("Line %(line)d: net %(net)d is not gross %(gross)d less fee %(fee)d.",
                            line=line, net=net, gross=gross, fee=fee))
    payout_id = _text(row, "automatic_payout_id", line)
    arrival = None
    if payout_id:
        if (row.get("automatic_payout_effective_at_utc") or "").strip():
            arrival = local(_moment(row["automatic_payout_effective_at_utc"], line,
                                    "automatic_payout_effective_at_utc")).date()
        elif (row.get("automatic_payout_effective_at") or "").strip():
            # In the report's own time zone: download it for Asia/Tokyo (the README says so).
            arrival = local(_moment(row["automatic_payout_effective_at"], line, "automatic_payout_effective_at",
                                    utc=False)).date()
        else:
            raise ReportError(_("Line %(line)d: the payout %(payout)s has no date.", line=line, payout=payout_id))
    available = (row.get("available_on_utc") or "").strip()
    category = _text(row, "reporting_category", line, required=True, limit=32)
    view = BalanceTransactionView(
        id=txn_id, type=category, reporting_category=category, amount=gross, fee=fee, net=net, currency=currency,
        source_id=_text(row, "source_id", line) or _text(row, "charge_id", line),
        created=_moment(row["created_utc"], line, "created_utc"),
        available_on=_moment(available, line, "available_on_utc") if available else None, payout_id=payout_id)
    return ReportRow(line=line, view=view, intent_id=_text(row, "payment_intent_id", line), payout_id=payout_id,
                     arrival=arrival)


def import_payout_report(file, *, max_bytes: int = REPORT_MAX_BYTES) -> ImportResult:
    """Import Stripe's itemized payout reconciliation report (CSV): all of it, or nothing.

    Keeps each row as a ProviderTransaction (seen_via "report", with its payout), makes or refreshes one
    Payout per automatic_payout_id (its 入金日: the payout's day in Tokyo), books the fees not booked yet,
    and gives each ledger row that pairs (and agrees) with a row its 入金日 (LedgerSettlement). The same file
    twice changes nothing. Raises ReportError (nothing written). Flushes; the caller commits.
    """
    rows = parse_report(_read_text(file, max_bytes))
    result = ImportResult()
    arrivals: dict[str, date] = {}
    for row in rows:
        if row.payout_id:
            arrivals.setdefault(row.payout_id, row.arrival)
    for payout_id, arrival in arrivals.items():
        payout = db.session.get(Payout, payout_id)
        if payout is None:
            db.session.add(Payout(id=payout_id, arrival_date=arrival, source="report"))
        elif payout.arrival_date != arrival:
            payout.arrival_date = arrival
    db.session.flush()
    kept = []
    for row in rows:
        if row.view.reporting_category in SKIPPED_CATEGORIES:
            result.skipped += 1
            continue
        kept.append(record_transaction(row.view, seen_via="report", intent_id=row.intent_id, payout_id=row.payout_id))
    db.session.flush()
    for payout_id in arrivals:
        refresh_payout(db.session.get(Payout, payout_id))
    result.fees_booked = book_fees(kept)
    result.settled = settle_payouts(kept)
    db.session.flush()
    days = [business_date(t.created_at) for t in kept]
    result.rows, result.payouts = len(kept), sorted(arrivals)
    result.first, result.last = (min(days), max(days)) if days else (None, None)
    return result


def refresh_payout(payout: Payout) -> None:
    """A payout's parts from the transactions it carries: gross − fees − refunds + other = net."""
    txns = db.session.scalars(select(ProviderTransaction).where(ProviderTransaction.payout_id == payout.id)).all()
    gross = sum(t.amount for t in txns if t.reporting_category in CHARGE_CATEGORIES and t.amount > 0)
    refunds = -sum(t.amount for t in txns if t.reporting_category in REFUND_CATEGORIES and t.amount < 0)
    total = sum(t.amount for t in txns)
    payout.gross, payout.refunds, payout.fees = gross, refunds, sum(t.fee for t in txns)
    payout.other = total - gross + refunds
    payout.net = sum(t.net for t in txns)


def settle_payouts(transactions) -> int:
    """入金日 for each ledger row that pairs, with the same amount, with a transaction of a payout; returns how many.

    A LedgerSettlement is written once per ledger row and never changed (append-only).
    """
    txns = [t for t in transactions if t.payout_id]
    if not txns:
        return 0
    pairing = Pairing(txns, [])
    written = 0
    for slot, entry in pairing.pairs:
        if slot.amount != entry.amount or db.session.scalar(
                select(LedgerSettlement.id).where(LedgerSettlement.ledger_entry_id == entry.id)) is not None:
            continue
        payout = db.session.get(Payout, slot.txn.payout_id)
        if payout is None or payout.arrival_date is None:
            continue
        db.session.add(LedgerSettlement(ledger_entry_id=entry.id, balance_transaction_id=slot.txn.id,
                                        payout_id=payout.id, arrival_date=payout.arrival_date))
        written += 1
    db.session.flush()
    return written


def import_and_reconcile(file, *, actor: User | None, trigger: str, max_bytes: int = REPORT_MAX_BYTES,
                         now: datetime | None = None) -> tuple[ImportResult, ReconciliationRun]:
    """Import a payout report (committed: it stands even if the run that follows cannot reach Stripe), then
    reconcile the days its transactions were created on. Raises ReportError before anything is written."""
    result = import_payout_report(file, max_bytes=max_bytes)
    db.session.commit()
    run = reconcile(result.first, result.last, actor=actor, trigger=trigger, now=now)
    record("reconciliation_run", run.id, "payout report imported", actor_id=actor.id if actor else None,
           rows=result.rows, payouts=result.payouts, fees_booked=result.fees_booked, settled=result.settled)
    db.session.flush()
    return result, run


# -- payouts, for the page and the CLI ---------------------------------------------------------------

@dataclass(frozen=True)
class PayoutCheck:
    payout: Payout
    transactions_net: int  # what the transactions we hold for it add up to
    ledger_net: int  # what the ledger rows given its 入金日 add up to

    @property
    def agrees(self) -> bool:
        return self.transactions_net == self.payout.net == self.ledger_net


def payout_checks(run: ReconciliationRun) -> list[PayoutCheck]:
    """The payouts of a run's transactions, each with its sum check, by arrival date."""
    ids = {i.payout_id for i in run.items if i.payout_id}
    if not ids:
        return []
    payouts = db.session.scalars(select(Payout).where(Payout.id.in_(ids))
                                 .order_by(Payout.arrival_date, Payout.id)).all()
    txn_net = dict(db.session.execute(
        select(ProviderTransaction.payout_id, func.sum(ProviderTransaction.net))
        .where(ProviderTransaction.payout_id.in_(ids)).group_by(ProviderTransaction.payout_id)).all())
    ledger_net = dict(db.session.execute(
        select(LedgerSettlement.payout_id, func.sum(LedgerEntry.amount))
        .join(LedgerEntry, LedgerSettlement.ledger_entry_id == LedgerEntry.id)
        .where(LedgerSettlement.payout_id.in_(ids)).group_by(LedgerSettlement.payout_id)).all())
    return [PayoutCheck(p, int(txn_net.get(p.id) or 0), int(ledger_net.get(p.id) or 0)) for p in payouts]


# -- the daily job ---------------------------------------------------------------------------------

def reconcile_yesterday(*, now: datetime | None = None) -> dict[str, int]:
    """The job: reconcile the previous Tokyo day, once. Run again after a run that could not reach Stripe."""
    now = now or now_utc()
    day = business_date(now) - timedelta(days=1)
    done = db.session.scalar(select(ReconciliationRun.id).where(
        ReconciliationRun.trigger == "job", ReconciliationRun.date_from == day, ReconciliationRun.date_to == day,
        ReconciliationRun.error == "").limit(1))
    if done is not None:
        return {"already_done": 1}
    run = reconcile(day, day, trigger="job", now=now)
    return {"error": 1} if run.error else summary(run)
