"""Rate limits: each action is limited per client address and per account, on memory and on Redis.

Every test runs on both storages (and, through `app`, both databases). Redis must
answer at 127.0.0.1:6379 (.ci/run starts it): without it these tests fail, they
never skip. Each test counts under its own Redis key prefix and deletes only that.

The limits are set low here, per hour rather than per minute: a counter's window
starts at its first hit, so a slow run cannot cross into a fresh window mid-test.
"""
import html
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis

from reservations.extensions import db, limiter
from tests.helpers import booking_day

REDIS_URL = "redis://127.0.0.1:6379"
PER_ACCOUNT = 2
PER_IP = 3
ACTIONS = ("LOGIN", "SIGNUP", "RESET", "VERIFY_RESEND", "RESERVE", "PAY")
TOO_MANY = "Too many attempts in a short time. Please wait a while and try again."


@pytest.fixture(params=["memory", "redis"])
def storage(request):
    """(RATELIMIT_STORAGE_URI, RATELIMIT_STORAGE_OPTIONS, the Redis client or None) for one test."""
    if request.param == "memory":
        yield "memory://", {}, None
        return
    prefix = f"test-limits-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis does not answer at {REDIS_URL}: {exc}", pytrace=False)
    yield REDIS_URL, {"key_prefix": prefix}, client
    stale = list(client.scan_iter(match=f"{prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()
    limiter.storage.storage.close()  # this test's connection pool, not left for the garbage collector


@pytest.fixture
def app_config(app_config, storage):
    uri, options, _ = storage
    limits = {}
    for action in ACTIONS:
        limits[f"RATELIMIT_{action}"] = f"{PER_ACCOUNT} per hour"
        limits[f"RATELIMIT_{action}_IP"] = f"{PER_IP} per hour"
    return {**app_config, **limits, "RATELIMIT_STORAGE_URI": uri, "RATELIMIT_STORAGE_OPTIONS": options}


@dataclass
class Action:
    """How one action is sent as `who` (an e-mail address) from `ip`."""

    send: Callable[["Sender", str, str], object]
    json: bool = False


class Sender:
    def __init__(self, client, make_user, login_as, room):
        self.client, self.make_user, self.login_as, self.room = client, make_user, login_as, room
        self.users: dict = {}
        self.pay_calls = 0

    def environ(self, ip: str) -> dict:
        return {"environ_base": {"REMOTE_ADDR": ip}}

    def signed_in(self, who: str, *, verified: bool = True):
        if who not in self.users:
            self.users[who] = self.make_user(who, verified=verified)
        self.login_as(self.users[who])

    def login(self, who, ip):
        return self.client.post("/account/login", data={"email": who, "password": "wrong horse"}, **self.environ(ip))

    def signup(self, who, ip):
        return self.client.post("/account/signup", data={
            "name": "佐藤 太郎", "email": who, "password": "a long passphrase", "confirm": "a long passphrase",
            "residency": "resident", "phone": ""}, **self.environ(ip))

    def reset(self, who, ip):
        return self.client.post("/account/reset", data={"email": who}, **self.environ(ip))

    def verify_resend(self, who, ip):
        self.signed_in(who, verified=False)
        return self.client.post("/account/verify", **self.environ(ip))

    def reserve(self, who, ip):
        self.signed_in(who)
        # Whether the slot can be held does not matter: the attempt counts.
        return self.client.post(f"/rooms/{self.room.id}/book", data={"date": booking_day().isoformat()},
                                **self.environ(ip))

    def pay(self, who, ip):
        self.signed_in(who)
        # The two calls of the payment page share one budget: alternate them.
        self.pay_calls += 1
        path = "/bookings/999999/pay" if self.pay_calls % 2 else "/bookings/999999/pay/complete"
        return self.client.post(path, json={"token": "tok_x"}, **self.environ(ip))


SENDS = {"LOGIN": Action(Sender.login), "SIGNUP": Action(Sender.signup), "RESET": Action(Sender.reset),
         "VERIFY_RESEND": Action(Sender.verify_resend), "RESERVE": Action(Sender.reserve),
         "PAY": Action(Sender.pay, json=True)}


@pytest.fixture
def sender(english, client, make_user, login_as, room):
    return Sender(client, make_user, login_as, room)


def assert_counted_in(storage) -> None:
    uri, options, client = storage
    assert limiter.storage.check()
    if client is not None:  # really counted in Redis, under this test's prefix
        assert type(limiter.storage).__name__ == "RedisStorage"
        assert list(client.scan_iter(match=f"{options['key_prefix']}:*"))
    else:
        assert type(limiter.storage).__name__ == "MemoryStorage"


def assert_limited(response, action: Action) -> None:
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    if action.json:  # the payment page's fetch shows this in its alert, and must not retry
        assert response.get_json() == {"status": "error", "message": TOO_MANY, "retry": False}
    else:
        assert TOO_MANY in html.unescape(response.get_data(as_text=True))


@pytest.mark.parametrize("name", ACTIONS)
def test_the_per_account_limit_holds_across_addresses(sender, storage, name):
    action = SENDS[name]
    for n in range(PER_ACCOUNT):
        assert action.send(sender, "target@example.com", f"10.0.1.{n}").status_code != 429

    over = action.send(sender, "target@example.com", "10.0.1.200")

    assert_limited(over, action)
    assert_counted_in(storage)
    # Another account, from that same fresh address, is not affected.
    assert action.send(sender, "other@example.com", "10.0.1.200").status_code != 429


@pytest.mark.parametrize("name", ACTIONS)
def test_the_per_ip_limit_holds_across_accounts(sender, storage, name):
    action = SENDS[name]
    for n in range(PER_IP):
        assert action.send(sender, f"user{n}@example.com", "10.0.2.1").status_code != 429

    over = action.send(sender, "fresh@example.com", "10.0.2.1")

    assert_limited(over, action)
    assert_counted_in(storage)
    # The same fresh account, from another address, is not affected.
    assert action.send(sender, "fresh@example.com", "10.0.2.2").status_code != 429


def test_the_account_of_a_login_is_the_address_as_the_account_look_up_folds_it(sender):
    for n, spelling in enumerate(["Target@Example.com", " target@EXAMPLE.COM"]):
        assert sender.login(spelling, f"10.0.3.{n}").status_code != 429

    assert sender.login("target@example.com", "10.0.3.9").status_code == 429


def test_reading_pages_is_not_limited(sender, client):
    for _ in range(PER_IP + 2):
        assert client.get("/account/login", environ_base={"REMOTE_ADDR": "10.0.4.1"}).status_code == 200
        assert client.get("/account/signup", environ_base={"REMOTE_ADDR": "10.0.4.1"}).status_code == 200


def test_limits_switched_off_for_one_app_are_on_again_for_the_next(app_config, database_urls, backend):
    from reservations import create_app

    switched_off = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": database_urls[backend],
                               "RATELIMIT_ENABLED": False})
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": database_urls[backend]})
    client = app.test_client()

    try:
        statuses = [client.post("/account/reset", data={"email": "a@example.com"}).status_code
                    for _ in range(PER_ACCOUNT + 1)]
    finally:
        for each in (switched_off, app):
            with each.app_context():
                db.engine.dispose()

    assert statuses == [302] * PER_ACCOUNT + [429]
