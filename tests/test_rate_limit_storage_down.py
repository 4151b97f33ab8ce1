"""Redis, where the rate limits count in production, is unreachable: the limited actions still answer (no 500)
and the limits still hold, counted in the process's memory until Redis answers again."""
import pytest

from reservations.extensions import limiter
from tests.helpers import closed_port


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{closed_port()}/0",
            "RATELIMIT_STORAGE_OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
            "RATELIMIT_LOGIN": "2 per hour", "RATELIMIT_LOGIN_IP": "5 per hour"}


def test_with_redis_down_sign_in_answers_and_is_still_limited_in_memory(app, client, resident):
    answers = [client.post("/account/login", data={"email": resident.email, "password": "wrong horse"}).status_code
               for _ in range(3)]

    assert 500 not in answers
    assert answers == [422, 422, 429]  # the bad password said twice, then the per-account limit
    assert limiter._storage_dead  # Flask-Limiter noticed, and counts in memory until Redis is back


def test_a_new_app_after_one_whose_redis_was_down_counts_in_its_own_redis_again(app, client, app_config):
    """The limiter is one extension object for every app of the process: a Redis found down by one app must
    not send the next app's counts to memory (the suite builds many apps in one process)."""
    import uuid

    import redis

    from reservations import create_app

    # This test's app: Redis does not answer, the fallback takes over.
    assert client.post("/account/login", data={"email": "x@example.com", "password": "x"}).status_code == 422
    assert limiter._storage_dead

    prefix = f"test-limits-{uuid.uuid4().hex[:12]}"
    alive = create_app({**app_config, "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379",
                        "RATELIMIT_STORAGE_OPTIONS": {"key_prefix": prefix}})
    counts = redis.Redis.from_url("redis://127.0.0.1:6379")
    try:
        alive.test_client().post("/account/login", data={"email": "x@example.com", "password": "wrong horse"})
        assert not limiter._storage_dead and list(counts.scan_iter(match=f"{prefix}:*"))
    finally:
        stale = list(counts.scan_iter(match=f"{prefix}:*"))
        if stale:
            counts.delete(*stale)
        counts.close()
        limiter.storage.storage.close()
