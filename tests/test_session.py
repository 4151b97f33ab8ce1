"""The cookie session is written only when something in it changes.

Every written cookie carries the whole session, so a response that needlessly
re-sends it can overwrite a change made by a request that finished first
(seen as a language switch that did not stick in the browser tests).
"""


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
