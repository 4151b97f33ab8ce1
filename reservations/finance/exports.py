"""The ledger's export: GET /finance/export (the form, and a check of what the filter holds), GET
/finance/export/download (the file, streamed) and `flask finance export`.

The filter's rules, the columns and the CP932 replacements are services/finance/exports.py; the page and
the command both parse the filter there. A filter it refuses gets the form back with the reasons (422).
"""
import contextlib
import sys
from pathlib import Path

import click
from flask import Response, render_template, request, stream_with_context
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SelectField, StringField
from wtforms.widgets import DateInput, NumberInput

from ..db_mode import writes
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import Building
from ..public.labels import building_name
from ..services.exports import EARLIEST, LATEST
from ..services.finance import exports as ledger_export
from ..services.finance.labels import METHOD_LABELS
from ..timeutil import business_date, now_utc
from . import bp, finance_required
from .cli import finance_cli

FILE_ENDINGS = {"csv": ".csv", "cp932": "-cp932.zip", "xlsx": ".xlsx"}


class ExportForm(FlaskForm):
    """The filter, as the page shows it. The rules are the service's (parse_filter): this form only renders,
    and carries the service's messages to its fields."""

    class Meta:
        csrf = False  # a GET form: the page only reads; the download writes nothing but its audit entry

    first = StringField(_l("First day"), name="from", widget=DateInput())
    last = StringField(_l("Last day"), name="to", widget=DateInput())
    fiscal_year = StringField(_l("Fiscal year"), widget=NumberInput(min=EARLIEST.year, max=LATEST.year))
    building = SelectField(_l("Building"), validate_choice=False)
    method = SelectField(_l("Payment method"), validate_choice=False)
    account = SelectField(_l("Account"), validate_choice=False)

    FIELDS = {"from": "first", "to": "last", "fiscal_year": "fiscal_year", "building": "building",
              "method": "method", "account": "account"}

    def fill_choices(self) -> None:
        buildings = db.session.scalars(select(Building).order_by(Building.id))
        self.building.choices = [("", _("All buildings"))] + [(str(b.id), building_name(b)) for b in buildings]
        self.method.choices = [("", _("All methods"))] + [
            (method, str(label)) for method, label in METHOD_LABELS.items()]
        self.account.choices = [("", _("All accounts"))] + [
            (code, f"{code} {name}".strip()) for code, name in ledger_export.account_choices()]

    def show_errors(self, errors: dict[str, str]) -> None:
        for key, message in errors.items():
            if key in self.FIELDS:
                getattr(self, self.FIELDS[key]).errors = [message]
            else:
                self.form_errors.append(message)


def _form() -> ExportForm:
    if request.args:
        form = ExportForm(request.args)
    else:  # the month so far, in Tokyo
        today = business_date(now_utc())
        form = ExportForm(formdata=None, first=today.replace(day=1).isoformat(), last=today.isoformat())
    form.fill_choices()
    return form


def _filter():
    args = request.args
    return ledger_export.parse_filter(args.get("from"), args.get("to"), fiscal_year=args.get("fiscal_year"),
                                      building=args.get("building"), method=args.get("method"),
                                      account=args.get("account"))


def _summary(form: ExportForm, chosen: ledger_export.LedgerFilter) -> list[tuple[str, str]]:
    """The filter's other conditions in words, as the form names them: the page (and its printout) says
    what was checked."""
    given = [("fiscal_year", chosen.fiscal_year), ("building", chosen.building_id), ("method", chosen.method),
             ("account", chosen.account)]
    parts = []
    for name, value in given:
        if value is not None:
            field = getattr(form, name)
            parts.append((field.label.text, dict(field.choices).get(str(value), str(value))
                          if field.type == "SelectField" else str(value)))
    return parts


def _page(form: ExportForm, *, status: int = 200, **context):
    return render_template("finance/export.html", form=form, max_days=ledger_export.MAX_DAYS,
                           rule_label=ledger_export.RULES, **context), status


@bp.get("/export")
@finance_required
def export():
    """The form; with a filter, what it holds: its rows, their net sum and each CP932 replacement."""
    form = _form()
    if not request.args:
        return _page(form)
    try:
        chosen = _filter()
    except ledger_export.FilterError as exc:
        form.show_errors(exc.errors)
        return _page(form, status=422)
    return _page(form, chosen=chosen, summary=_summary(form, chosen), preview=ledger_export.preview(chosen))


@bp.get("/export/download")
@writes  # records the export in the audit trail: a write on SQLite (db_mode)
@finance_required
def export_download():
    """The file, streamed as it is read from the database; the audit entry is written before its last bytes."""
    errors = {}
    try:
        chosen = _filter()
    except ledger_export.FilterError as exc:
        errors.update(exc.errors)
    try:
        fmt = ledger_export.parse_format(request.args.get("format"))
    except ledger_export.FilterError as exc:
        errors.update(exc.errors)
    if errors:
        form = _form()
        form.show_errors(errors)
        return _page(form, status=422)
    run = ledger_export.LedgerExport(chosen, fmt, actor_id=current_user.id, via="web")
    name = chosen.filename(FILE_ENDINGS[fmt])
    return Response(stream_with_context(_closing(run)), mimetype=ledger_export.MIMETYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def _closing(run: ledger_export.LedgerExport):
    try:
        yield from run.chunks()
    finally:
        run.close()


# -- flask finance export ---------------------------------------------------------------------------------

def _day_text(value) -> str | None:
    return value.date().isoformat() if value is not None else None


@finance_cli.command("export")
@click.option("--from", "first", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="First business day (日計表 day, Tokyo), YYYY-MM-DD, included.")
@click.option("--to", "last", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Last business day, YYYY-MM-DD, included.")
@click.option("--format", "fmt", required=True, type=click.Choice(ledger_export.FORMATS),
              help="csv: UTF-8 with a BOM; cp932: CP932 (with a report of every replaced character); xlsx.")
@click.option("--fiscal-year", type=int, help="Only rows of this fiscal year (e.g. 2026: April 2026 to March 2027).")
@click.option("--building", type=int, help="Only rows of this building (its number).")
@click.option("--method", type=click.Choice(sorted(METHOD_LABELS)), help="Only rows of this method.")
@click.option("--account", help="Only rows of this account code, e.g. 13-01-02-01.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="The file to write (default: stdout).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="cp932: where to list the replaced characters (default: OUTPUT.replacements.csv, or "
                   "ledger-FROM-TO-cp932.replacements.csv in the current directory when writing to stdout).")
def export_command(first, last, fmt, fiscal_year, building, method, account, output, report) -> None:
    """Export the ledger rows counted on the business days FROM to TO, as the finance page does; audited."""
    try:
        chosen = ledger_export.parse_filter(
            _day_text(first), _day_text(last), fiscal_year=None if fiscal_year is None else str(fiscal_year),
            building=None if building is None else str(building), method=method, account=account)
    except ledger_export.FilterError as exc:
        raise click.UsageError(" ".join(f"--{key.replace('_', '-')}: {message}"
                                        for key, message in exc.errors.items())) from None
    if fmt == "cp932" and report is None:
        report = Path(f"{output}.replacements.csv") if output else Path(chosen.filename("-cp932.replacements.csv"))
    run = ledger_export.LedgerExport(chosen, fmt, via="cli")
    try:
        write_export(run, output, report)
    finally:
        run.close()
    where = output or "stdout"
    click.echo(f"exported {run.rows:,} ledger rows to {where}", err=True)
    if run.replacements is not None:
        click.echo(f"{run.replacements.count:,} characters replaced for CP932, listed in {report}", err=True)


def write_export(run: ledger_export.LedgerExport, output: Path | None, report: Path | None) -> None:
    """The export to `output` (stdout when None) and its CP932 report to `report`: what the CLI and the
    benchmark run."""
    with contextlib.ExitStack() as files:
        report_file = files.enter_context(open(report, "wb")) if report and run.replacements is not None else None
        out = files.enter_context(open(output, "wb")) if output is not None else sys.stdout.buffer
        run.write(out, report_file)
        out.flush()

