"""The cookie session: written only when something in it changes, and revoked with the password.

Every written cookie carries the whole session, so a response that needlessly
re-sends it can overwrite a change made by a request that finished first
(seen as a language switch that did not stick in the browser tests).
"""
import re

from reservations.extensions import db
from reservations.models import User
from tests.helpers import audit_actions, outbox


def test_reading_pages_does_not_rewrite_the_session_cookie(client, room, resident, login_as):
    first = client.get("/")
    assert "session=" in first.headers.get("Set-Cookie", "")  # the CSRF token is stored once
    for path in ("/", f"/rooms/{room.id}", "/no-such-page"):
        assert "Set-Cookie" not in client.get(path).headers, path
    login_as(resident)
    client.get("/bookings")
    assert "Set-Cookie" not in client.get("/bookings").headers


def test_the_language_choice_survives_a_request_sent_with_the_older_cookie(client):
    client.get("/")
    with client.session_transaction() as sess:
        before = dict(sess)
    client.post("/lang/en", data={"next": "/"})
    # A request that left the browser before the switch, with the old cookie:
    with client.session_transaction() as sess:
        after = dict(sess)
        sess.clear()
        sess.update(before)
    stale = client.get("/no-such-page")
    assert "Set-Cookie" not in stale.headers  # so it cannot undo the switch
    with client.session_transaction() as sess:
        sess.clear()
        sess.update(after)
    assert '<html lang="en">' in client.get("/").get_data(as_text=True)


# --- revoking sessions -------------------------------------------------------------------------
# Each cookie names the session version it was issued under; logging out, changing or resetting the
# password bumps the user's version, so a cookie copied before (another device, a thief) stops working.


def copy_of_cookie(app, client):
    """A second browser holding the same session cookie as `client`."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def opens_bookings(client) -> bool:
    response = client.get("/bookings")
    assert response.status_code in (200, 302)
    return response.status_code == 200



def test_a_cookie_copied_before_logout_no_longer_opens_the_bookings(app, client, auth, resident):
    auth.login()
    copied = copy_of_cookie(app, client)
    assert opens_bookings(copied)

    auth.logout()

    assert not opens_bookings(copied)
    assert not opens_bookings(client)
    assert [action for action, _ in audit_actions("user", resident.id)] == ["logged_out"]
    db.session.expire_all()
    assert db.session.get(User, resident.id).session_version == 2


def test_logging_out_on_one_device_logs_out_the_others_too(app, resident):
    phone, laptop = app.test_client(), app.test_client()
    for device in (phone, laptop):
        device.post("/account/login", data={"email": "resident@example.com", "password": "correct horse"})
    assert opens_bookings(phone) and opens_bookings(laptop)

    phone.post("/account/logout")

    assert not opens_bookings(laptop)


def test_a_cookie_copied_before_a_password_change_no_longer_works_but_the_changing_browser_stays_in(
        app, client, auth, resident):
    auth.login()
    copied = copy_of_cookie(app, client)

    response = client.post("/account/password", data={"current_password": "correct horse",
                                                      "password": "a brand new secret",
                                                      "confirm": "a brand new secret"})

    assert response.status_code == 302
    assert not opens_bookings(copied)
    assert opens_bookings(client)
    assert [action for action, _ in audit_actions("user", resident.id)] == ["password_changed"]


def test_a_cookie_copied_before_a_password_reset_no_longer_works(app, client, auth, resident):
    auth.login()
    copied = copy_of_cookie(app, client)
    stranger = app.test_client()  # the reset is asked for and used from another browser
    stranger.post("/account/reset", data={"email": "resident@example.com"})
    body = outbox(app)[0].get_body(("plain",)).get_content()
    link = re.search(r"http://[^/\s]+(/account/reset/\S+)", body).group(1)

    stranger.post(link, data={"password": "a brand new secret", "confirm": "a brand new secret"})

    assert not opens_bookings(copied)
    assert not opens_bookings(client)
    assert [action for action, _ in audit_actions("user", resident.id)] == ["password_reset"]


def test_a_session_without_its_version_is_refused(client, resident):
    # The form from before session versions (a bare id), and versions that were never or are no longer current.
    for session_id in (str(resident.id), f"{resident.id}:0", f"{resident.id}:2", f"{resident.id}:x",
                       f"{'9' * 30}:1", "1:1:1"):
        with client.session_transaction() as sess:
            sess["_user_id"] = session_id
        assert not opens_bookings(client), session_id
    with client.session_transaction() as sess:
        sess["_user_id"] = f"{resident.id}:1"
    assert opens_bookings(client)
