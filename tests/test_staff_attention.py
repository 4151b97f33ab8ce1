"""The staff "needs attention" list: late payments whose slot was taken land here."""

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AttentionCase, AuditEntry, Role
from tests.helpers import attention_case


@pytest.fixture
def case(room, resident):
    return attention_case(resident, room)


def test_residents_cannot_see_the_list(client, english, login_as, resident, case):
    login_as(resident)
    response = client.get("/staff/attention")
    assert response.status_code == 403
    assert "pi_123" not in response.get_data(as_text=True)
    assert client.post(f"/staff/attention/{case.id}/resolve").status_code == 403
    assert db.session.get(AttentionCase, case.id).resolved_at is None


def test_staff_see_open_cases_and_resolve_them(client, english, login_as, make_user, case):
    staff = login_as(make_user("staff@example.com", role=Role.STAFF))
    page = client.get("/staff/attention").get_data(as_text=True)
    assert "pi_123: 2800 yen" in page and "resident@example.com" in page
    assert "Paid after the slot was taken" in page

    response = client.post(f"/staff/attention/{case.id}/resolve", data={f"case{case.id}-note": "Refund checked."},
                           follow_redirects=True)
    assert "Nothing needs attention." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(AttentionCase, case.id).resolved_at is not None
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "attention_case"))
    assert (entry.action, entry.actor_id) == ("resolved", staff.id)


def test_resolving_an_unknown_case_is_a_404(client, login_as, make_user):
    login_as(make_user(role=Role.ADMIN))
    assert client.post("/staff/attention/999999/resolve").status_code == 404


@pytest.mark.parametrize("case_id", [2**31, 2**63, 10**30])
def test_a_case_id_beyond_the_database_integer_is_a_404_not_a_500(client, login_as, make_user, case_id):
    login_as(make_user(role=Role.STAFF))
    assert client.post(f"/staff/attention/{case_id}/resolve").status_code == 404


@pytest.mark.parametrize(("reason", "label"), [
    ("refund_failed", "Refund failed: the money did not go back to the card"),
    ("refund_cancelled", "Refund cancelled at the payment provider: the money did not go back"),
    ("refund_retries_exhausted", "Refund not sent: the payment service could not be reached after every retry"),
    ("capture_failed", "Confirmed, but the payment could not be taken"),
    ("dispute_opened", "Dispute (chargeback) opened by the resident&#39;s bank"),
    ("dispute_closed", "Dispute (chargeback) closed"),
])
def test_each_kind_of_money_case_has_a_clear_label(client, english, login_as, make_user, case, reason, label):
    case.reason = reason
    db.session.commit()
    login_as(make_user("staff@example.com", role=Role.STAFF))

    page = client.get("/staff/attention").get_data(as_text=True)

    assert label in page and f">{reason}<" not in page
