"""Reconciliation with Stripe (/finance/reconcile), and `flask finance reconcile` / `flask finance import-payouts`.

The rules are services/finance/reconcile.py; these views read the forms, call it, commit and render.
"""
import sys
from datetime import timedelta
from pathlib import Path

import click
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, FileSize
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload
from wtforms import DateField
from wtforms.validators import DataRequired, ValidationError

from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import AttentionCase, Booking, LedgerEntry, ReconciliationItem, ReconciliationRun, Room
from ..payments import GatewayError
from ..public.routes import row_or_404
from ..services.attention import case_label
from ..services.finance import reconcile as service
from ..services.finance.labels import KIND_LABELS
from ..staff.routes import resolve_form
from ..timeutil import business_date, now_utc
from . import bp, finance_required
from .cli import finance_cli

RUNS_SHOWN = 20
ITEMS_SHOWN = 500  # of each status on the page; the counts are always whole
STATUS_LABELS = {
    "mismatch": _l("Amount differs"),
    "only_in_stripe": _l("Only in Stripe"),
    "only_in_ledger": _l("Only in the ledger"),
    "matched": _l("Matched"),
}
TRIGGER_LABELS = {"page": _l("This page"), "cli": _l("Command line"), "job": _l("Daily job"),
                  "import": _l("Payout report import")}
BOOKING_STATES = {"held": _l("held, not yet paid"), "expired": _l("ended unpaid (the hold ran out)"),
                  "cancelled": _l("cancelled"), "confirmed": _l("confirmed")}
class RunForm(FlaskForm):
    first = DateField(_l("First day"), validators=[DataRequired(_l("Enter the first day, for example 2027-04-01."))])
    last = DateField(_l("Last day"), validators=[DataRequired(_l("Enter the last day, for example 2027-04-30."))])

    def validate_last(self, field) -> None:
        if self.first.data and field.data:
            try:
                service.parse_range(self.first.data, field.data)
            except service.ReconcileError as exc:
                raise ValidationError(str(exc)) from None


class ImportForm(FlaskForm):
    report = FileField(_l("Itemized payout reconciliation report (CSV)"), validators=[
        FileRequired(_l("Choose the CSV file you downloaded from the Stripe dashboard.")),
        FileSize(service.REPORT_MAX_BYTES, message=_l("The file is too large."))])


class CaseActionForm(FlaskForm):
    """Confirming or refunding a charge without a booking: nothing to fill in but the CSRF token."""


def _forms(run_form=None, import_form=None, resolve_forms=None) -> dict:
    yesterday = business_date(now_utc()) - timedelta(days=1)
    return {
        "run_form": run_form or RunForm(prefix="run", formdata=None, first=yesterday, last=yesterday),
        "import_form": import_form or ImportForm(prefix="report", formdata=None),
        "resolve_forms": resolve_forms or {},
    }


def _page(status: int = 200, **forms):
    """The page: actions, the open cases, the chosen run (or the latest) with its items and payouts, the runs."""
    runs = db.session.scalars(select(ReconciliationRun).options(joinedload(ReconciliationRun.actor))
                              .order_by(ReconciliationRun.id.desc()).limit(RUNS_SHOWN)).all()
    chosen = request.args.get("run", type=int)
    run = next((r for r in runs if r.id == chosen), None)
    if run is None and chosen and 0 < chosen < 2**31:
        run = db.session.get(ReconciliationRun, chosen)
    run = run or (runs[0] if runs else None)
    cases = _cases()
    context = _forms(**forms)
    for case in cases:
        if case.reason != service.CHARGED_WITHOUT_BOOKING:
            context["resolve_forms"].setdefault(case.id, resolve_form(case.id, formdata=None))
    now = now_utc()
    return render_template(
        "finance/reconcile.html", runs=runs, run=run, items=_items(run), cases=cases,
        can_confirm={c.id: service.can_confirm(c, now) for c in cases}, case_facts=service.case_facts(cases),
        booking_states=BOOKING_STATES,
        payouts=service.payout_checks(run) if run else [],
        counter=service.counter_totals(service.Period(run.date_from, run.date_to)) if run else {},
        statuses=service.STATUSES, status_labels=STATUS_LABELS, trigger_labels=TRIGGER_LABELS,
        kind_labels=KIND_LABELS, case_label=case_label, charged=service.CHARGED_WITHOUT_BOOKING,
        items_shown=ITEMS_SHOWN, **context), status


def _cases() -> list[AttentionCase]:
    cases = service.open_reconciliation_cases()
    if cases:  # the bookings, rooms and buildings of every case in one query each
        db.session.scalars(select(AttentionCase).where(AttentionCase.id.in_([c.id for c in cases])).options(
            joinedload(AttentionCase.booking).joinedload(Booking.user),
            joinedload(AttentionCase.booking).joinedload(Booking.room).joinedload(Room.building),
            joinedload(AttentionCase.payment))).unique().all()
    return cases


def _items(run: ReconciliationRun | None) -> dict[str, list[dict]]:
    """The run's items by status (at most ITEMS_SHOWN each), with what traces them: booking, payer, building."""
    by_status: dict[str, list[dict]] = {s: [] for s in service.STATUSES}
    if run is None:
        return by_status
    items = db.session.scalars(select(ReconciliationItem).where(ReconciliationItem.run_id == run.id)
                               .options(selectinload(ReconciliationItem.entry))
                               .order_by(ReconciliationItem.id)).all()
    entries = [i.entry for i in items if i.entry is not None]
    rooms = {r.id: r for r in db.session.scalars(select(Room).options(joinedload(Room.building)).where(
        Room.id.in_({e.room_id for e in entries})))} if entries else {}
    for item in items:
        shown = by_status[item.status]
        if len(shown) < ITEMS_SHOWN:
            shown.append(_item_row(item, item.entry, rooms))
    return by_status


def _item_row(item: ReconciliationItem, entry: LedgerEntry | None, rooms: dict[int, Room]) -> dict:
    room = rooms.get(entry.room_id) if entry else None
    difference = None
    if item.stripe_amount is not None and item.ledger_amount is not None:
        difference = item.stripe_amount - item.ledger_amount
    detail = item.detail or {}
    return {
        "txn": item.balance_transaction_id, "part": detail.get("part"),
        "what": str(KIND_LABELS.get(entry.kind, entry.kind)) if entry else detail.get("category") or "",
        "source": detail.get("source_id") or (entry.reference if entry else ""),
        "booking_id": entry.booking_id if entry else None, "payer": entry.payer_name if entry else "",
        "building": room.building.name if room else "", "room": room.name if room else "",
        "paid_on": entry.paid_on if entry else None, "stripe": item.stripe_amount, "ledger": item.ledger_amount,
        "difference": difference, "payout": item.payout_id, "case_id": detail.get("case_id"),
    }


@bp.get("/reconcile")
@finance_required
def reconcile_page():
    return _page()


@bp.post("/reconcile")
@finance_required
def reconcile_run():
    form = RunForm(prefix="run")
    if not form.validate_on_submit():
        return _page(422, run_form=form)
    run = service.reconcile(form.first.data, form.last.data, actor=current_user, trigger="page")
    db.session.commit()
    _flash_run(run)
    return redirect(url_for(".reconcile_page", run=run.id))


@bp.post("/reconcile/import")
@finance_required
def reconcile_import():
    form = ImportForm(prefix="report")
    if not form.validate_on_submit():
        return _page(422, import_form=form)
    try:
        result, run = service.import_and_reconcile(form.report.data, actor=current_user, trigger="import")
    except service.ReportError as exc:
        db.session.rollback()
        form.report.errors = [*form.report.errors, str(exc)]
        return _page(422, import_form=form)
    db.session.commit()
    flash(_("Imported %(rows)d transactions of %(payouts)d payouts; %(fees)d fees booked, %(settled)d ledger rows "
            "given their arrival date.", rows=result.rows, payouts=len(result.payouts), fees=result.fees_booked,
            settled=result.settled), "success")
    _flash_run(run)
    return redirect(url_for(".reconcile_page", run=run.id))


def _flash_run(run: ReconciliationRun) -> None:
    if run.error:
        flash(_("Stripe could not be reached, so nothing was compared: %(error)s. Try again later.",
                error=run.error), "error")
    elif service.all_matched(run):
        flash(_("Everything matched: %(count)d items.", count=run.matched), "success")
    else:
        flash(_("Reconciled: %(matched)d matched, %(differ)d to look at.", matched=run.matched,
                differ=run.only_in_stripe + run.only_in_ledger + run.mismatched), "info")


def _case_or_back(case_id: int) -> AttentionCase | None:
    """The reconciliation case, or None (said in a flash) for a case that is not one of reconciliation's."""
    case = row_or_404(AttentionCase, case_id)
    if case.reason not in service.CASE_KINDS:
        flash(_("This case is not one of reconciliation's: resolve it from the needs-attention list."), "error")
        return None
    return case


def _case_action(case_id: int, action) -> object:
    case = _case_or_back(case_id)
    if case is None or not CaseActionForm().validate_on_submit():
        return redirect(url_for(".reconcile_page"))
    try:
        outcome = action(case, current_user)
    except service.ReconcileError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    except GatewayError:
        db.session.rollback()
        flash(_("Stripe could not be reached; nothing was changed. Try again."), "error")
    else:
        db.session.commit()
        flash({"confirmed": _("The booking is confirmed and the payment kept."),
               "refunded": _("The money is being returned to the card."),
               "released": _("The card authorisation was released: nothing was charged.")}.get(outcome, outcome),
              "success")
    return redirect(url_for(".reconcile_page"))


@bp.post("/reconcile/cases/<int:case_id>/confirm")
@finance_required
def reconcile_confirm(case_id: int):
    return _case_action(case_id, service.confirm_charged)


@bp.post("/reconcile/cases/<int:case_id>/refund")
@finance_required
def reconcile_refund(case_id: int):
    return _case_action(case_id, service.refund_charged)


@bp.post("/reconcile/cases/<int:case_id>/resolve")
@finance_required
def reconcile_resolve(case_id: int):
    case = _case_or_back(case_id)
    if case is None:
        return redirect(url_for(".reconcile_page"))
    form = resolve_form(case_id)
    if case.reason != service.CHARGED_WITHOUT_BOOKING and not form.validate_on_submit():
        return _page(422, resolve_forms={case_id: form})
    try:
        resolved = service.resolve_case(case, current_user, form.note.data)
    except service.ReconcileError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for(".reconcile_page"))
    if resolved:
        db.session.commit()
        flash(_("The case is marked as resolved."), "success")
    else:
        db.session.rollback()
        flash(_("This case was already resolved."), "info")
    return redirect(url_for(".reconcile_page"))


# -- commands ------------------------------------------------------------------------------------------

def _echo_run(run: ReconciliationRun) -> None:
    click.echo(f"run {run.id}: {run.date_from} .. {run.date_to}")
    for status, count in service.summary(run).items():
        click.echo(f"  {status}: {count}")
    for check in service.payout_checks(run):
        p = check.payout
        click.echo(f"  payout {p.id} arrival {p.arrival_date or '-'}: gross {p.gross} fees {p.fees} "
                   f"refunds {p.refunds} other {p.other} net {p.net}; transactions {check.transactions_net}, "
                   f"ledger {check.ledger_net}: {'ok' if check.agrees else 'DIFFERS'}")
    for method, (rows, total) in sorted(service.counter_totals(service.Period(run.date_from, run.date_to)).items()):
        click.echo(f"  not compared ({method}): {rows} rows, {total} yen")


@finance_cli.command("reconcile")
@click.option("--from", "first", required=True, metavar="YYYY-MM-DD", help="First Tokyo day (inclusive).")
@click.option("--to", "last", required=True, metavar="YYYY-MM-DD", help="Last Tokyo day (inclusive).")
def reconcile_command(first: str, last: str) -> None:
    """Reconcile the ledger's card rows with Stripe over these days.

    Prints the count of each status and each payout's sums. Exit code 0: everything matched; 1: something
    did not match (or a payout's sums differ); 3: Stripe could not be reached (nothing compared); 2: bad
    arguments.
    """
    try:
        period = service.parse_range(first, last)
    except service.ReconcileError as exc:
        raise click.BadParameter(str(exc)) from None
    run = service.reconcile(period.first, period.last, trigger="cli")
    db.session.commit()
    _echo_run(run)
    if run.error:
        click.echo(f"error: {run.error}", err=True)
        sys.exit(3)
    if not service.all_matched(run):
        sys.exit(1)


@finance_cli.command("import-payouts")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_payouts_command(file: Path) -> None:
    """Import Stripe's itemized payout reconciliation report FILE (CSV), then reconcile its days.

    All or nothing: a bad file imports nothing and exits 1. The same file twice changes nothing.
    """
    try:
        with file.open("rb") as stream:
            result, run = service.import_and_reconcile(stream, actor=None, trigger="import")
    except service.ReportError as exc:
        db.session.rollback()
        raise click.ClickException(f"cannot import {file}: {exc}\nNothing was imported.") from None
    db.session.commit()
    click.echo(f"imported {result.rows} transactions, {len(result.payouts)} payouts "
               f"({', '.join(result.payouts)}); {result.fees_booked} fees booked, "
               f"{result.settled} ledger rows given their arrival date")
    _echo_run(run)
