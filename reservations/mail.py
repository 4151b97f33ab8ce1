"""Outgoing mail behind one function, `send_mail`.

MAIL_BACKEND picks where a message goes: "outbox" writes a .eml file into
MAIL_OUTBOX_DIR (development and tests), "console" logs it, "smtp" hands it to
MAIL_SMTP_HOST:MAIL_SMTP_PORT. Call it after the commit of the change the mail
reports, never before: a rolled-back booking must not have been announced.
"""
import smtplib
import uuid
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from flask import current_app

from .timeutil import now_utc

Attachment = tuple[str, bytes, str]  # (filename, content, mimetype), e.g. ("receipt.ics", b"...", "text/calendar")


# Walk-ins booked at the counter have an address under the reserved .invalid domain (RFC 2606):
# they have no e-mail, and their notices are handed over or read out at the counter instead.
UNDELIVERABLE_SUFFIX = ".invalid"


def send_mail(to: str | Iterable[str], subject: str, body: str, *,
              attachments: Iterable[Attachment] = ()) -> EmailMessage | None:
    """Build a plain-text message from MAIL_FROM, send it with the configured backend and return it.

    Addresses under .invalid (walk-ins) are dropped; with none left nothing is sent and None returned.
    """
    recipients = [to] if isinstance(to, str) else list(to)
    recipients = [r for r in recipients if not r.lower().endswith(UNDELIVERABLE_SUFFIX)]
    if not recipients:
        current_app.logger.info("mail %r not sent: no deliverable address (a walk-in)", subject)
        return None
    message = build_message(recipients, subject, body, attachments=attachments)
    backend = current_app.config.get("MAIL_BACKEND", "outbox")
    try:
        deliver = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"Unknown MAIL_BACKEND {backend!r}; choose one of {', '.join(BACKENDS)}") from None
    deliver(message)
    return message


def build_message(to: str | Iterable[str], subject: str, body: str, *,
                  attachments: Iterable[Attachment] = ()) -> EmailMessage:
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = to if isinstance(to, str) else ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=current_app.config["MAIL_FROM"].rpartition("@")[2] or None)
    message.set_content(body)
    for filename, content, mimetype in attachments:
        maintype, _, subtype = mimetype.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return message


def _to_outbox(message: EmailMessage) -> None:
    outbox = Path(current_app.config["MAIL_OUTBOX_DIR"])
    outbox.mkdir(parents=True, exist_ok=True)
    # Sortable by time, unique even when two mails leave in the same microsecond.
    name = f"{now_utc():%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.eml"
    (outbox / name).write_bytes(bytes(message))


def _to_console(message: EmailMessage) -> None:
    # Readable rather than MIME-encoded: this backend is for people watching a terminal.
    lines = [f"{key}: {message[key]}" for key in ("From", "To", "Subject", "Date")]
    lines += ["", message.get_body(("plain",)).get_content().rstrip()]
    for part in message.iter_attachments():
        size = len(part.get_payload(decode=True))
        lines.append(f"[attachment {part.get_filename()} {part.get_content_type()} {size} bytes]")
    print("\n".join(lines) + "\n", flush=True)


def _to_smtp(message: EmailMessage) -> None:
    config = current_app.config
    with smtplib.SMTP(config["MAIL_SMTP_HOST"], config["MAIL_SMTP_PORT"],
                      timeout=config.get("MAIL_SMTP_TIMEOUT", 30)) as smtp:
        if config.get("MAIL_SMTP_STARTTLS"):
            smtp.starttls()
        if config.get("MAIL_SMTP_USERNAME"):
            smtp.login(config["MAIL_SMTP_USERNAME"], config.get("MAIL_SMTP_PASSWORD", ""))
        smtp.send_message(message)


BACKENDS: dict[str, Callable[[EmailMessage], None]] = {
    "outbox": _to_outbox,
    "console": _to_console,
    "smtp": _to_smtp,
}
