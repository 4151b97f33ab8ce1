"""E-mail verification: an account may look around at once, and hold a slot once its address is confirmed."""
import html
import re
from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import Booking, User
from reservations.services import accounts
from reservations.services.errors import BookingError
from tests.helpers import audit_actions, booking_day, outbox

PUBLIC = "http://127.0.0.1:5000"  # config.PUBLIC_BASE_URL: every mailed link is on it


def signup_data(email="taro@example.com") -> dict:
    return {"name": "佐藤 太郎", "email": email, "password": "a long passphrase", "confirm": "a long passphrase",
            "residency": "resident", "phone": ""}


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def body(message) -> str:
    return message.get_body(("plain",)).get_content()


def verify_path(message) -> str:
    match = re.search(r"^(\S+)(/account/verify/\S+)$", body(message), re.M)
    assert match, body(message)
    assert match.group(1) == PUBLIC
    return match.group(2)


def user(email="taro@example.com") -> User:
    db.session.expire_all()
    return db.session.scalars(select(User).where(User.email == email)).one()



def test_the_mailed_link_confirms_the_address_once(english, app, client):
    client.post("/account/signup", data=signup_data())
    [message] = outbox(app)
    assert message["Subject"] == "Confirm your email address"  # in the user's language: English, as signed up
    link = verify_path(message)
    assert user().email_verified_at is None
    db.session.commit()  # the request begins its own transaction, as in production (a GET that writes: db_mode)

    first = client.get(link, follow_redirects=True)

    assert first.request.path == "/account/login"  # the link proves the mailbox, not the password
    assert "Your email address is confirmed. You can now book." in text(first)
    verified_at = user().email_verified_at
    assert verified_at is not None

    again = client.get(link)

    assert again.status_code == 302
    assert user().email_verified_at == verified_at
    assert [action for action, _ in audit_actions("user", user().id)] == ["signed_up", "email_verified"]


def test_the_link_works_until_its_max_age_and_not_a_second_longer(english, app, client):
    issued = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    max_age = app.config["EMAIL_VERIFY_MAX_AGE"]
    assert max_age == 2 * 24 * 3600
    with time_machine.travel(issued, tick=False):
        client.post("/account/signup", data=signup_data("on-time@example.com"))
        client.post("/account/signup", data=signup_data("late@example.com"))
    links = {m["To"]: verify_path(m) for m in outbox(app)}
    on_time, late = links["on-time@example.com"], links["late@example.com"]

    with time_machine.travel(issued + timedelta(seconds=max_age), tick=False):
        assert client.get(on_time).status_code == 302
    with time_machine.travel(issued + timedelta(seconds=max_age + 1), tick=False):
        client.post("/lang/en")  # the session of two days ago has run out, and its language with it
        response = client.get(late)

    assert response.status_code == 400
    assert "This confirmation link has expired. Log in and ask for a new one." in text(response)
    assert user("on-time@example.com").email_verified_at == issued + timedelta(seconds=max_age)
    assert user("late@example.com").email_verified_at is None


def test_a_tampered_link_or_a_token_for_another_purpose_does_not_confirm(english, app, client, make_user):
    unverified = make_user("hanako@example.com", verified=False)
    good = accounts.email_verification_token(unverified)
    reset_token = accounts.request_password_reset("hanako@example.com").token

    for token in (good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"), reset_token, "nonsense"):
        response = client.get(f"/account/verify/{token}")
        assert response.status_code == 400
        assert "This confirmation link is not valid. Log in and ask for a new one." in text(response)
    assert user("hanako@example.com").email_verified_at is None


def test_a_signup_from_a_forged_host_mails_a_link_to_the_public_site(app, client):
    client.post("/account/signup", data=signup_data(), base_url="http://attacker.invalid",
                headers={"Host": "attacker.invalid"})

    [message] = outbox(app)
    assert "attacker.invalid" not in body(message)
    assert verify_path(message).startswith("/account/verify/")


def test_an_unverified_user_is_told_to_confirm_and_can_ask_for_the_link_again(english, app, client, make_user,
                                                                               room):
    make_user("hanako@example.com", verified=False)
    logged_in = client.post("/account/login", data={"email": "hanako@example.com", "password": "correct horse"},
                            follow_redirects=True)
    assert "Please confirm your email address before you book" in text(logged_in)
    notice = "Confirm your email address before you book: open the link we mailed to hanako@example.com."
    assert notice in text(client.get("/account/profile"))
    review = client.get(f"/rooms/{room.id}/book",
                        query_string={"date": booking_day().isoformat(), "divisions": "MORNING"})
    assert review.status_code == 200 and notice in text(review)

    asked = client.post("/account/verify", follow_redirects=True)

    assert "We have sent a new confirmation link to hanako@example.com." in text(asked)
    [message] = outbox(app)
    assert message["To"] == "hanako@example.com"
    client.get(verify_path(message))
    assert user("hanako@example.com").email_verified_at is not None
    assert notice not in text(client.get("/account/profile"))
    assert "Your email address is already confirmed." in text(client.get("/account/verify"))


def test_asking_again_when_already_confirmed_sends_nothing(english, app, client, login_as, resident):
    login_as(resident)

    response = client.post("/account/verify", follow_redirects=True)

    assert "Your email address is already confirmed." in text(response)
    assert outbox(app) == []


def test_asking_for_the_link_needs_a_login(client):
    assert client.post("/account/verify").headers["Location"].startswith("/account/login")


def test_signing_up_again_with_an_unconfirmed_address_mails_its_owner_a_fresh_link(app, client, make_user):
    make_user("hanako@example.com", verified=False)

    client.post("/account/signup", data=signup_data("hanako@example.com"))

    [message] = outbox(app)
    assert f"{PUBLIC}/account/login" in body(message)
    client.get(verify_path(message))
    assert user("hanako@example.com").email_verified_at is not None


def test_an_unverified_user_cannot_hold_until_the_address_is_confirmed(english, app, client, make_user, room):
    hanako = make_user("hanako@example.com", verified=False)
    client.post("/account/login", data={"email": "hanako@example.com", "password": "correct horse"})
    slot = {"date": booking_day().isoformat(), "divisions": "MORNING", "expected_price": "2800"}

    refused = client.post(f"/rooms/{room.id}/book", data=slot, follow_redirects=True)

    assert db.session.scalars(select(Booking)).all() == []
    assert BookingError("email_unverified").message in text(refused)  # the booking service's refusal
    client.get(f"/account/verify/{accounts.email_verification_token(hanako)}")
    held = client.post(f"/rooms/{room.id}/book", data=slot)
    assert held.status_code == 302
    assert len(db.session.scalars(select(Booking)).all()) == 1
