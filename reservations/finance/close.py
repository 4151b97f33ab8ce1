"""The daily close (日計表) and the monthly summary (月計表): /finance/close, /finance/monthly, `flask finance close`.

The rules are in services/finance/close.py; these views read the query or the form and render. The day
and the month are query arguments (?date=YYYY-MM-DD, ?month=YYYY-MM), defaulting to today in Tokyo;
an unreadable one gets the page's form back with the reason (422), never a guess.
"""
from datetime import date, timedelta

import click
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField
from wtforms.validators import DataRequired, InputRequired, Optional, ValidationError

from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..public.forms import INVALID_DATE, MonthField
from ..services.exports import EARLIEST, LATEST
from ..services.finance import close as closing
from ..services.finance.labels import KIND_LABELS, METHOD_LABELS
from ..timeutil import business_date, now_utc, shift_months
from . import bp, finance_required
from .cli import finance_cli

PERIOD_LABELS = {closing.OLD: _l("Old fiscal year (closing period)"), closing.NEW: _l("New fiscal year")}


def today() -> date:
    return business_date(now_utc())


def _in_range(form, field) -> None:
    if field.data is not None and not EARLIEST <= field.data <= LATEST:
        raise ValidationError(INVALID_DATE)


class DayForm(FlaskForm):
    """Which day's sheet to show (a GET form: nothing changes)."""

    class Meta:
        csrf = False

    date = DateField(_l("Day"), validators=[Optional(), _in_range], invalid_value_message=INVALID_DATE)


class MonthForm(FlaskForm):
    class Meta:
        csrf = False

    month = MonthField(_l("Month"))

    def validate_month(self, field) -> None:
        if field.data is not None and not EARLIEST <= field.data <= LATEST:
            raise ValidationError(_l("Enter a month as YYYY-MM, for example 2026-12."))


class CloseForm(FlaskForm):
    """Closing a day: the day, and a tick that says the figures were checked (a close is never undone)."""

    date = DateField(_l("Day"), validators=[InputRequired(_l("Choose the day to close.")), _in_range],
                     invalid_value_message=INVALID_DATE)
    confirm = BooleanField(_l("I have checked this day's figures. Close the day: this cannot be undone."),
                           validators=[DataRequired(_l("Tick the box to confirm that the day may be closed."))])


def _close_page(day: date, close_form: CloseForm, *, error: str | None = None, status: int = 200):
    sheet = closing.day_sheet(day)
    now = today()
    blocker = closing.earliest_open_day_with_rows(day) if sheet.closed is None else None
    return render_template(
        "finance/close.html", day=day, sheet=sheet, form=DayForm(formdata=None, date=day), close_form=close_form,
        error=error, future=day > now, blocker=blocker, today=now,
        prev_day=max(day - timedelta(days=1), EARLIEST), next_day=min(day + timedelta(days=1), LATEST),
        method_label=METHOD_LABELS, period_label=PERIOD_LABELS, kind_label=KIND_LABELS,
        exemption_kinds=closing.exemption_kinds(r.code for s in sheet.sheets for r in s.reductions)), status


@bp.get("/close")
@finance_required
def close_sheet():
    """A day's 日計表 (default today, Tokyo), whether it is closed, and the form that closes it."""
    form = DayForm(request.args)
    if not form.validate():
        return render_template("finance/close.html", form=form, sheet=None, today=today()), 422
    day = form.date.data or today()
    return _close_page(day, CloseForm(prefix="close", formdata=None, date=day))


@bp.post("/close")
@finance_required
def close_post():
    form = CloseForm(prefix="close")
    if not form.validate_on_submit():
        day = form.date.data if form.date.data and not form.date.errors else today()
        return _close_page(day, form, status=422)
    day = form.date.data
    try:
        closing.close_day(day, current_user)
    except closing.CloseError as exc:
        db.session.rollback()
        return _close_page(day, CloseForm(prefix="close", formdata=None, date=day), error=str(exc), status=409)
    db.session.commit()
    flash(_("%(day)s is closed. Movements recorded from now on count on the next open day, marked late.",
            day=closing.day_text(day)), "success")
    return redirect(url_for(".close_sheet", date=day.isoformat()), 303)


@bp.get("/monthly")
@finance_required
def monthly():
    """The month's 月計表 by fiscal year and account, day by day (default this month, Tokyo)."""
    form = MonthForm(request.args)
    if not form.validate():
        return render_template("finance/monthly.html", form=form, summary=None), 422
    first = form.month.data or today().replace(day=1)
    summary = closing.month_summary(first.year, first.month)
    form = MonthForm(formdata=None, month=first)
    return render_template("finance/monthly.html", form=form, summary=summary, today=today(),
                           prev_month=max(shift_months(first, -1), EARLIEST),
                           next_month=min(shift_months(first, 1), LATEST.replace(day=1)),
                           period_label=PERIOD_LABELS)


@finance_cli.command("close")
@click.option("--date", "day", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="The business day to close (Tokyo), YYYY-MM-DD.")
def close_command(day) -> None:
    """Close a business day (日計表): its figures are stored and the day takes no more ledger rows."""
    try:
        close = closing.close_day(day.date(), None)
    except closing.CloseError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    db.session.commit()
    click.echo(f"closed {close.business_date.isoformat()}: {close.rows} rows, net {close.net:,} yen")
