"""Receipts (領収書): numbered consecutively within the fiscal year, printable and mailed."""
from collections.abc import Callable
from datetime import datetime
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale
from icalendar import Calendar, Event
from sqlalchemy import func, select, text

from ..aftercommit import after_commit
from ..extensions import db
from ..i18n import gettext as _
from ..links import external_url
from ..mail import send_mail
from ..models import Booking, Receipt
from ..timeutil import business_date, fiscal_year, now_utc

# pg_advisory_xact_lock(namespace, fiscal year). Its own namespace: 4201 and 4202 are services/booking.py's
# room and user locks, 4211 services/ledger.py's. A receipt sharing the user locks' namespace waited on (and
# could deadlock with) whoever held the lock of user 2026 while FY2026's receipts were issued.
RECEIPT_LOCK_NAMESPACE = 4203


RECEIPT_METHODS = {"stripe": "card", "cash": "cash", "terminal": "terminal"}


def issue_receipt(booking: Booking, *, now: datetime | None = None, amount: int | None = None) -> Receipt:
    """The booking's receipt, issued once; the next serial of the fiscal year.

    One numbering for every way of paying: card online, cash or the counter's terminal
    (Receipt.method, from the booking's payment). `amount` is what was received, when it
    is not the booking's price (a move that carried a paid fee over takes only the difference).
    """
    existing = db.session.scalar(select(Receipt).where(Receipt.booking_id == booking.id))
    if existing:
        return existing
    now = now or now_utc()
    fy = fiscal_year(business_date(now))
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:ns, :fy)"), {"ns": RECEIPT_LOCK_NAMESPACE, "fy": fy})
    serial = (db.session.scalar(select(func.max(Receipt.serial)).where(Receipt.fiscal_year == fy)) or 0) + 1
    receipt = Receipt(booking_id=booking.id, fiscal_year=fy, serial=serial, issued_at=now,
                      payer_name=booking.user.name, amount=booking.price if amount is None else amount,
                      method=RECEIPT_METHODS.get(booking.payment.provider if booking.payment else "stripe", "card"),
                      issuer=current_app.config["ISSUER_NAME"])
    db.session.add(receipt)
    db.session.flush()
    after_commit(receipt_mail(receipt))
    return receipt


def issuer_name(receipt: Receipt, language: str) -> str:
    """The issuer of a receipt as a reader of `language` sees it.

    The receipt keeps the Japanese name it was issued under: that is the record.
    English pages show ISSUER_NAME_EN when the receipt's name is the configured
    ISSUER_NAME, so the English form never needs a column of its own. A receipt
    issued under an earlier name, which the setting no longer translates, keeps
    its Japanese name rather than borrow today's.
    """
    config = current_app.config
    if language == "en" and config.get("ISSUER_NAME_EN") and receipt.issuer == config["ISSUER_NAME"]:
        return config["ISSUER_NAME_EN"]
    return receipt.issuer


def booking_ics(booking: Booking) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//reservations//facility booking//JA")
    cal.add("version", "2.0")
    event = Event()
    event.add("uid", f"booking-{booking.id}@reservations")
    event.add("summary", f"{booking.room.building.name} {booking.room.name}")
    event.add("dtstart", booking.start_at)
    event.add("dtend", booking.end_at)
    event.add("dtstamp", now_utc())
    event.add("location", booking.room.building.address or booking.room.building.name)
    cal.add_component(event)
    return cal.to_ical()


def receipt_mail(receipt: Receipt) -> Callable[[], object]:
    """The receipt mail with the booking's .ics, rendered now and sent when called."""
    booking = receipt.booking
    with force_locale(booking.user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = _("Receipt %(number)s: your booking is confirmed", number=receipt.number)
        body = render_template("bookings/receipt_mail.txt", receipt=receipt, booking=booking,
                               receipt_url=external_url("bookings.receipt", booking_id=booking.id))
    attachments = [(f"booking-{booking.id}.ics", booking_ics(booking), "text/calendar")]
    return partial(send_mail, booking.user.email, subject, body, attachments=attachments)
