"""/healthz: the database and the payment provider with their latency, cheap (the provider asked at most once
per HEALTH_PROVIDER_TTL), unauthenticated, and without a secret or a driver's message in the answer."""
import json

import pytest

from reservations import create_app
from reservations.extensions import db
from tests.helpers import closed_port, provider_down


@pytest.mark.payments
def test_healthy_the_database_and_the_provider_answer_with_their_latency(app, client, localstripe):
    response = client.get("/healthz")

    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert body["database"]["ok"] and body["database"]["latency_ms"] >= 0
    assert body["provider"]["ok"] and body["provider"]["latency_ms"] >= 0
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.payments
def test_the_provider_down_is_degraded_not_down_and_asked_again_only_after_the_ttl(app, client, localstripe):
    app.config["HEALTH_PROVIDER_TTL"] = 0
    with provider_down(app):
        down = client.get("/healthz")
    app.config["HEALTH_PROVIDER_TTL"] = 3600
    cached = client.get("/healthz")  # the provider is back, but the last check is still fresh

    assert down.status_code == 200 and down.get_json()["status"] == "degraded"
    assert down.get_json()["provider"] == {**down.get_json()["provider"], "ok": False, "error": "ProviderDown"}
    assert cached.get_json()["provider"]["ok"] is False and cached.get_json()["provider"]["age_s"] >= 0
    app.config["HEALTH_PROVIDER_TTL"] = 0
    assert client.get("/healthz").get_json()["status"] == "ok"


def test_the_database_down_is_a_503_that_names_no_address_nor_secret(app_config, tmp_path):
    port = closed_port()
    broken = create_app({**app_config, "SQLALCHEMY_DATABASE_URI":
                         f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{port}/reservations?connect_timeout=2"})
    with broken.app_context():
        response = broken.test_client().get("/healthz")
        db.engine.dispose()

    text = response.get_data(as_text=True)
    assert response.status_code == 503 and json.loads(text)["status"] == "down"
    assert json.loads(text)["database"]["ok"] is False
    assert str(port) not in text and "hunter2" not in text and "127.0.0.1" not in text
    assert app_config["SECRET_KEY"] not in text


def test_it_needs_no_sign_in_and_is_not_rate_limited(app, client):
    answers = [client.get("/healthz").status_code for _ in range(40)]
    assert set(answers) == {200}
