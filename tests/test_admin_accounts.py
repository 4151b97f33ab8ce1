"""Admin create back-office accounts and set each one's role and buildings; every change is audited."""
import re

import pytest
from sqlalchemy import select

from reservations.extensions import db
from reservations.models import AuditEntry, Building, Role, User
from reservations.services.cancellation import cancel_for_ward_reason
from reservations.services.errors import BookingError
from tests.helpers import book, outbox


@pytest.fixture
def admin(make_user, login_as):
    return login_as(make_user("admin@example.com", role=Role.ADMIN))


@pytest.fixture
def two_buildings(room):
    other = Building(name="別の会館", name_kana="ベツノカイカン", name_en="Other Hall")
    db.session.add(other)
    db.session.commit()
    return room.building, other


def audit(user_id: int) -> list[AuditEntry]:
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.subject == "user",
                                                            AuditEntry.subject_id == user_id)))


def test_an_admin_creates_a_staff_account_for_some_buildings_and_its_owner_gets_a_link(
        app, client, english, admin, two_buildings):
    here, _ = two_buildings
    response = client.post("/admin/accounts/new", data={
        "name": "窓口 新人", "email": "Shinjin@Example.com", "role": "staff", "buildings": [str(here.id)]})
    assert response.status_code == 302
    user = db.session.scalar(select(User).filter_by(email="shinjin@example.com"))
    assert (user.role, [b.id for b in user.buildings]) == (Role.STAFF, [here.id])
    [entry] = audit(user.id)
    assert (entry.action, entry.actor_id) == ("account_created", admin.id)
    assert entry.data == {"before": None, "after": {"role": "staff", "buildings": [here.id]}}
    # Nobody knows its password: the owner sets one by the mailed link, built on the public address.
    [mail] = [m for m in outbox(app) if m["To"] == "shinjin@example.com"]
    link = re.search(r"\S+/account/reset/\S+", mail.get_body(("plain",)).get_content()).group(0)
    assert link.startswith(app.config["PUBLIC_BASE_URL"])
    assert client.get(link.removeprefix(app.config["PUBLIC_BASE_URL"])).status_code == 200


def test_staff_need_a_building_and_an_address_is_taken_once(client, english, admin, two_buildings):
    response = client.post("/admin/accounts/new", data={"name": "x", "email": "x@example.com", "role": "staff"})
    assert response.status_code == 422
    assert "Choose at least one building" in response.get_data(as_text=True)
    response = client.post("/admin/accounts/new", data={"name": "x", "email": "admin@example.com", "role": "finance"})
    assert response.status_code == 422
    assert "exists already" in response.get_data(as_text=True)
    assert db.session.scalar(select(User).filter_by(email="x@example.com")) is None


def test_a_changed_scope_is_audited_and_ends_the_accounts_sessions(client, english, admin, make_user,
                                                                  two_buildings):
    here, other = two_buildings
    staff = make_user("staff@example.com", role=Role.STAFF, buildings=[here])
    version = staff.session_version
    response = client.post(f"/admin/accounts/{staff.id}", data={"role": "staff", "buildings": [str(other.id)]})
    assert response.status_code == 302
    db.session.expire_all()
    staff = db.session.get(User, staff.id)
    assert [b.id for b in staff.buildings] == [other.id]
    assert staff.session_version == version + 1  # signed out everywhere: the narrower scope holds at once
    [entry] = audit(staff.id)
    assert entry.action == "access_changed"
    assert entry.data == {"before": {"role": "staff", "buildings": [here.id]},
                          "after": {"role": "staff", "buildings": [other.id]}}


def test_an_admin_cannot_take_away_their_own_role(client, english, admin):
    response = client.post(f"/admin/accounts/{admin.id}", data={"role": "finance"})
    assert response.status_code == 422
    assert "cannot take away your own administrator role" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, admin.id).role == Role.ADMIN and audit(admin.id) == []


def test_staff_of_another_building_cannot_cancel_its_bookings(make_user, resident, room, two_buildings, now):
    _, other = two_buildings
    elsewhere = make_user("elsewhere@example.com", role=Role.STAFF, buildings=[other])
    booking = book(resident, room, now=now)
    with pytest.raises(BookingError) as refused:
        cancel_for_ward_reason(booking, elsewhere, "closure", now=now)
    assert refused.value.code == "staff_only"
