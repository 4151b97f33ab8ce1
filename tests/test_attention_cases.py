"""The one "needs attention" list, by building: every kind of case, resolved with a note, kept in the history.

A provider event we cannot apply opens a case too: about a payment we know, on its building's list;
about nothing we know, with no building, and only administrators see it.
"""
import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AttentionCase, AuditEntry, Building, ProviderObject, Role, WebhookEvent
from reservations.services import attention
from tests.helpers import attention_case, book, post_event


def note_field(case_id: int) -> str:
    return f"case{case_id}-note"


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


@pytest.fixture
def admin(make_user):
    return make_user("admin@example.com", role=Role.ADMIN, name="管理 者")


# -- provider events that cannot be applied --------------------------------------------------------

@pytest.mark.payments
def test_an_event_for_no_payment_of_ours_opens_a_case_only_admin_see(
        client, english, localstripe, login_as, staff, admin):
    foreign = {"id": "pi_not_ours", "object": "payment_intent", "status": "succeeded", "amount": 500,
               "currency": "jpy", "metadata": {}}

    response = post_event(client, localstripe, "payment_intent.succeeded", foreign, event_id="evt_foreign1")

    assert response.status_code == 200 and response.json["outcome"] == "unknown payment"
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.reason, case.booking_id, case.building_id, case.webhook_event_id) == (
        "webhook_unapplied", None, None, "evt_foreign1")
    assert "pi_not_ours" in case.detail
    login_as(staff)
    page = client.get("/staff/attention").get_data(as_text=True)
    assert "pi_not_ours" not in page and "Nothing needs attention." in page
    assert client.post(f"/staff/attention/{case.id}/resolve", data={note_field(case.id): "x"}).status_code == 404
    login_as(admin)
    page = client.get("/staff/attention").get_data(as_text=True)
    assert "pi_not_ours" in page and "evt_foreign1" in page
    assert "A payment provider event could not be applied" in page
    assert "Not tied to a building (administrators only)" in page
    # Delivered again: a duplicate, and no second case.
    again = post_event(client, localstripe, "payment_intent.succeeded", foreign, event_id="evt_foreign1")
    assert again.json["outcome"] == "duplicate"
    assert len(db.session.scalars(select(AttentionCase)).all()) == 1


@pytest.mark.payments
def test_an_error_while_applying_an_event_opens_a_case_on_the_payments_building(
        client, english, localstripe, login_as, staff, room, resident, now, monkeypatch):
    booking = book(resident, room, now=now)
    db.session.add(ProviderObject(provider_id="pi_known_1", kind="intent", payment_id=booking.payment.id))
    db.session.commit()

    def broken(payment, **kw):
        raise RuntimeError("the provider said something we cannot follow")

    monkeypatch.setattr("reservations.services.webhooks.settle", broken)
    event = {"id": "pi_known_1", "object": "payment_intent", "status": "succeeded", "amount": 2800,
             "currency": "jpy", "metadata": {}}

    response = post_event(client, localstripe, "payment_intent.succeeded", event, event_id="evt_broken1")

    assert response.status_code == 200 and response.json["outcome"] == "not applied"
    db.session.expire_all()
    [case] = db.session.scalars(select(AttentionCase)).all()
    assert (case.reason, case.booking_id, case.building_id, case.payment_id, case.webhook_event_id) == (
        "webhook_unapplied", booking.id, room.building_id, booking.payment.id, "evt_broken1")
    assert "RuntimeError" in case.detail
    assert db.session.get(WebhookEvent, "evt_broken1") is not None  # seen: a redelivery is not applied half again
    assert booking.state == "held"
    login_as(staff)  # the staff of the payment's building see it
    assert "evt_broken1" in client.get("/staff/attention").get_data(as_text=True)


# -- resolving with a note, and the history ----------------------------------------------------------

def test_resolving_without_a_note_is_refused(client, english, login_as, staff, room, resident):
    case = attention_case(resident, room)
    login_as(staff)
    for data in ({}, {note_field(case.id): "   "}):
        response = client.post(f"/staff/attention/{case.id}/resolve", data=data)
        assert response.status_code == 422
        assert "Say what was done about the case before marking it resolved." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(AttentionCase, case.id).resolved_at is None
    assert db.session.scalars(select(AuditEntry.action).where(AuditEntry.subject == "attention_case")).all() == []


def test_a_case_resolved_with_a_note_moves_to_the_history_with_it(client, english, login_as, staff, room, resident):
    case = attention_case(resident, room, "intent pi_777: 2800 yen")
    login_as(staff)

    response = client.post(f"/staff/attention/{case.id}/resolve",
                           data={note_field(case.id): "Called the resident; refund confirmed."}, follow_redirects=True)

    page = response.get_data(as_text=True)
    assert "The case is marked as resolved." in page and "pi_777" not in page
    db.session.expire_all()
    case = db.session.get(AttentionCase, case.id)
    assert (case.resolution_note, case.resolved_by_id) == ("Called the resident; refund confirmed.", staff.id)
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "attention_case",
                                                       AuditEntry.action == "resolved"))
    assert entry.actor_id == staff.id and entry.data["note"] == "Called the resident; refund confirmed."
    history = client.get("/staff/attention/history").get_data(as_text=True)
    assert "Called the resident; refund confirmed." in history and "pi_777" in history and "窓口 職員" in history
    # Resolving it again changes nothing.
    client.post(f"/staff/attention/{case.id}/resolve", data={note_field(case.id): "again"})
    db.session.expire_all()
    assert db.session.get(AttentionCase, case.id).resolution_note == "Called the resident; refund confirmed."


def test_the_history_is_newest_first_scoped_and_paged(client, english, login_as, staff, admin, room, resident):
    other = Building(name="別の会館")
    db.session.add(other)
    db.session.commit()
    cases = [attention_case(resident, room, "case number 00")]
    cases += [AttentionCase(building_id=room.building_id, reason="closure_kept", detail=f"case number {n:02d}")
              for n in (1, 2)]
    db.session.add_all(cases)
    theirs = AttentionCase(building_id=other.id, reason="refund_failed", detail="other building's case")
    db.session.add(theirs)
    db.session.commit()
    for case in [*cases, theirs]:
        attention.resolve(case, admin, f"done {case.detail}")
        db.session.commit()
    login_as(staff)
    page = client.get("/staff/attention/history").get_data(as_text=True)
    assert "other building" not in page
    positions = [page.index(f"case number {n:02d}") for n in range(3)]
    assert positions == sorted(positions, reverse=True)  # the last resolved first
    first, more = attention.resolved_cases(staff, page=1, per_page=2)
    second, last = attention.resolved_cases(staff, page=2, per_page=2)
    assert [c.id for c in first + second] == [cases[2].id, cases[1].id, cases[0].id] and more and not last
    login_as(admin)
    assert "other building" in client.get("/staff/attention/history").get_data(as_text=True)


# -- one list, by building -------------------------------------------------------------------------

@pytest.mark.parametrize(("reason", "label"), [
    ("webhook_unapplied", "A payment provider event could not be applied"),
    ("counter_unpaid_past_deadline", "Booked at the counter and not paid by the payment deadline"),
    ("closure_kept", "A new closure falls on this booking"),
])
def test_the_new_kinds_of_case_have_clear_labels(client, english, login_as, staff, room, resident, reason, label):
    case = attention_case(resident, room)
    case.reason = reason
    db.session.commit()
    login_as(staff)
    page = client.get("/staff/attention").get_data(as_text=True)
    assert label in page and f">{reason}<" not in page


def test_the_list_groups_by_building_and_filters_to_one(client, english, login_as, make_user, room, resident):
    other = Building(name="別の会館", name_en="Other Hall")
    db.session.add(other)
    db.session.commit()
    attention_case(resident, room, "ours: pi_A")
    db.session.add(AttentionCase(building_id=other.id, reason="refund_failed", detail="theirs: pi_B"))
    db.session.commit()
    both = make_user(role=Role.STAFF, buildings=[room.building, other])
    login_as(both)
    page = client.get("/staff/attention").get_data(as_text=True)
    assert "ours: pi_A" in page and "theirs: pi_B" in page
    ours_at, theirs_at = page.index(f'<h2 id="cases-{room.building_id}">'), page.index(f'<h2 id="cases-{other.id}">')
    assert ours_at < page.index("ours: pi_A") < theirs_at < page.index("theirs: pi_B")
    only_theirs = client.get(f"/staff/attention?building={other.id}").get_data(as_text=True)
    assert "theirs: pi_B" in only_theirs and "ours: pi_A" not in only_theirs
    # Staff of one building asking for another's cases get their own list, nothing else.
    login_as(make_user(role=Role.STAFF))
    page = client.get(f"/staff/attention?building={other.id}").get_data(as_text=True)
    assert "theirs: pi_B" not in page and "ours: pi_A" in page
