"""send_mail: one message format, three backends (outbox files, console, SMTP)."""
import email
import email.policy
from datetime import UTC, datetime

import icalendar
import pytest

from reservations import create_app, mail
from reservations.mail import send_mail


@pytest.fixture
def mail_app(tmp_path):
    """Mail never touches the database, so these tests need neither backend."""
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "test",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "MAIL_BACKEND": "outbox",
        "MAIL_OUTBOX_DIR": str(tmp_path / "outbox" / "not-yet-created"),
        "MAIL_FROM": "予約システム <reservations@city.example.jp>",
    })
    with app.app_context():
        yield app


def outbox(app) -> list[email.message.EmailMessage]:
    from pathlib import Path

    folder = Path(app.config["MAIL_OUTBOX_DIR"])
    files = sorted(folder.glob("*.eml")) if folder.exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def receipt_ics() -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//reservations//test//")
    calendar.add("version", "2.0")
    event = icalendar.Event()
    event.add("uid", "booking-42@city.example.jp")
    event.add("summary", "音楽室（午前）")
    event.add("dtstart", datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    event.add("dtend", datetime(2026, 12, 1, 3, 0, tzinfo=UTC))
    event.add("dtstamp", datetime(2026, 11, 26, 0, 0, tzinfo=UTC))
    calendar.add_component(event)
    return calendar.to_ical()


def test_outbox_writes_an_eml_file_that_parses_back_with_its_ics_attachment(mail_app):
    ics = receipt_ics()

    send_mail("hanako@example.com", "ご予約の領収書", "山田 花子 様\n\nご予約ありがとうございます。\n",
              attachments=[("receipt-42.ics", ics, "text/calendar")])

    [message] = outbox(mail_app)
    assert message["From"] == "予約システム <reservations@city.example.jp>"
    assert message["To"] == "hanako@example.com"
    assert message["Subject"] == "ご予約の領収書"
    assert message["Message-ID"] and message["Date"]
    assert message.get_body(("plain",)).get_content() == "山田 花子 様\n\nご予約ありがとうございます。\n"
    [attachment] = message.iter_attachments()
    assert attachment.get_filename() == "receipt-42.ics"
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_payload(decode=True) == ics
    [event] = icalendar.Calendar.from_ical(attachment.get_payload(decode=True)).walk("VEVENT")
    assert str(event["summary"]) == "音楽室（午前）"


def test_outbox_keeps_every_message(mail_app):
    send_mail("a@example.com", "one", "first")
    send_mail(["b@example.com", "c@example.com"], "two", "second")

    messages = outbox(mail_app)
    assert sorted(m["Subject"] for m in messages) == ["one", "two"]
    assert {m["To"] for m in messages} == {"a@example.com", "b@example.com, c@example.com"}


def test_a_message_without_attachments_is_plain_text(mail_app):
    message = send_mail("a@example.com", "hello", "body")

    assert message.get_content_type() == "text/plain"
    assert list(message.iter_attachments()) == []


def test_console_prints_a_readable_message_and_writes_no_file(mail_app, capsys):
    mail_app.config["MAIL_BACKEND"] = "console"

    send_mail("hanako@example.com", "パスワードの再設定", "このリンクを開いてください。\nhttps://example.jp/x",
              attachments=[("receipt.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")])

    printed = capsys.readouterr().out
    assert "To: hanako@example.com" in printed
    assert "Subject: パスワードの再設定" in printed
    assert "このリンクを開いてください。\nhttps://example.jp/x" in printed
    assert "[attachment receipt.ics text/calendar 32 bytes]" in printed
    assert outbox(mail_app) == []


class FakeSMTP:
    instances: list["FakeSMTP"] = []

    def __init__(self, host, port, timeout=None):
        self.host, self.port, self.timeout = host, port, timeout
        self.sent, self.calls = [], []
        FakeSMTP.instances.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.calls.append("quit")

    def starttls(self):
        self.calls.append("starttls")

    def login(self, user, password):
        self.calls.append(("login", user, password))

    def send_message(self, message):
        self.sent.append(message)


@pytest.fixture
def fake_smtp(monkeypatch):
    FakeSMTP.instances = []
    monkeypatch.setattr(mail.smtplib, "SMTP", FakeSMTP)
    return FakeSMTP


def test_smtp_hands_the_message_to_the_configured_server(mail_app, fake_smtp):
    mail_app.config.update(MAIL_BACKEND="smtp", MAIL_SMTP_HOST="mail.city.example.jp", MAIL_SMTP_PORT=2525)

    sent = send_mail("hanako@example.com", "subject", "body",
                     attachments=[("receipt.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")])

    [server] = fake_smtp.instances
    assert (server.host, server.port) == ("mail.city.example.jp", 2525)
    assert server.sent == [sent]
    assert server.calls == ["quit"]
    assert outbox(mail_app) == []


def test_smtp_uses_starttls_and_login_when_configured(mail_app, fake_smtp):
    mail_app.config.update(MAIL_BACKEND="smtp", MAIL_SMTP_STARTTLS=True, MAIL_SMTP_USERNAME="relay",
                           MAIL_SMTP_PASSWORD="s3cret")

    send_mail("hanako@example.com", "subject", "body")

    [server] = fake_smtp.instances
    assert server.calls == ["starttls", ("login", "relay", "s3cret"), "quit"]


def test_an_unknown_backend_is_refused_rather_than_dropping_mail(mail_app):
    mail_app.config["MAIL_BACKEND"] = "pigeon"

    with pytest.raises(ValueError, match="pigeon"):
        send_mail("hanako@example.com", "subject", "body")
