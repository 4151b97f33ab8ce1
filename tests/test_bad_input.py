"""Whatever a user or a provider sends, the answer is a clear page or message, never a 500."""
import pytest

from reservations.extensions import db
from reservations.models import Booking

HUGE = "9" * 30
ODD = ["", "x", "-1", "0", HUGE, "2026-02-30", "2026-13-01", "9999-12-31", "0001-01-01", "１２", "<script>", "%00",
       "' OR 1=1 --", f"{HUGE}-01", f"{HUGE}-01-01", "0000-01", str(2**31), str(2**63)]

GETS = [
    "/?date={v}", "/?capacity={v}", "/?kind={v}", "/?building={v}", "/?equipment={v}", "/?date={v}&free=1",
    "/rooms/1?month={v}", "/rooms/1?date={v}", "/rooms/1/days/{v}", "/rooms/{v}",
    "/rooms/1/book?date={v}&divisions=MORNING", "/rooms/1/book?date=2027-02-10&divisions={v}",
    "/rooms/2/book?date=2027-02-10&start={v}&minutes=60", "/rooms/2/book?date=2027-02-10&start=10:00&minutes={v}",
    "/bookings/{v}", "/bookings/{v}/pay", "/bookings/{v}/receipt", "/account/reset/{v}", "/staff/attention?x={v}",
]
POSTS = [
    ("/rooms/1/book", {"date": "{v}", "divisions": "MORNING", "expected_price": "2800"}),
    ("/rooms/1/book", {"date": "2027-02-10", "divisions": "{v}", "expected_price": "{v}"}),
    ("/rooms/2/book", {"date": "2027-02-10", "start": "{v}", "minutes": "{v}", "expected_price": "1"}),
    ("/bookings/1/cancel", {"x": "{v}"}),
    ("/bookings/1/pay", {"token": "{v}"}),
    ("/bookings/1/pay/complete", {"x": "{v}"}),
    ("/account/login", {"email": "{v}", "password": "{v}", "next": "{v}"}),
    ("/account/signup", {"name": "{v}", "email": "{v}", "password": "{v}", "confirm": "{v}", "residency": "{v}"}),
    ("/account/reset", {"email": "{v}"}),
    ("/account/profile", {"name": "{v}", "residency": "{v}", "locale": "{v}", "phone": "{v}"}),
    ("/lang/{v}", {"next": "{v}"}),
    ("/staff/attention/1/resolve", {"x": "{v}"}),
]


@pytest.fixture
def world(make_room, make_hourly_room, resident, login_as):
    make_room()
    make_hourly_room()
    login_as(resident)


def test_no_get_with_odd_values_is_a_server_error(client, world):
    for template in GETS:
        for value in ODD:
            url = template.format(v=value)
            status = client.get(url).status_code
            assert status < 500, (url, status)


def test_no_post_with_odd_values_is_a_server_error_nor_books_anything(client, world):
    for path, form in POSTS:
        for value in ODD:
            url = path.format(v=value)
            data = {k: v.format(v=value) for k, v in form.items()}
            status = client.post(url, data=data).status_code
            assert status < 500, (url, data, status)
            json_status = client.post(url, json=data).status_code
            assert json_status < 500, (url, data, json_status)
    assert db.session.query(Booking).count() == 0


def test_odd_webhook_bodies_are_refused_cleanly(client):
    for body in (b"", b"{", b"[]", b"null", HUGE.encode(), "日本語".encode()):
        for header in (None, "", "t=1,v1=abc", "garbage"):
            headers = {"Stripe-Signature": header} if header is not None else {}
            assert client.post("/webhooks/stripe", data=body, headers=headers).status_code == 400
