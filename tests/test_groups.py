"""Registered groups (登録団体): eligibility, the identity checks that hold an application for review (issue 10,
test 3), the one-group-per-representative rule in the service and in the database, staff review, renewal,
the reminder and expiry job, the resident's and the staff's pages."""
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from flask_babel import force_locale
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from reservations.extensions import db
from reservations.jobs import JOBS
from reservations.models import AuditEntry, Group, GroupMember, GroupStatus, Residency, Role
from reservations.services import groups
from reservations.services.groups import GroupError, MemberInput, identity_key
from reservations.timeutil import TOKYO, business_date, now_utc
from tests.groups_helpers import application, people, person, registered_group
from tests.helpers import audit_actions, outbox


def tokyo(*args) -> datetime:
    return datetime(*args, tzinfo=TOKYO).astimezone(UTC)


def frozen(moment: datetime):
    return time_machine.travel(moment, tick=False)


def group_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Group))


@pytest.fixture
def staff(make_user):
    return make_user("staff@example.com", role=Role.STAFF, name="窓口 職員")


@pytest.fixture
def rep(make_user):
    """A resident who applies: the account has its reading and phone, so the first listing is theirs."""
    return make_user("rep@example.com", name="山田 花子", name_kana="ヤマダ ハナコ", phone="03-1111-2222")


def refused(representative, members, code: str) -> str:
    with force_locale("en"), pytest.raises(GroupError) as caught:
        groups.apply_for_group(representative, application(members))
    db.session.rollback()
    assert caught.value.code == code
    with force_locale("en"):
        return caught.value.message


# --- eligibility ----------------------------------------------------------------------------------

def test_a_group_with_fewer_members_than_the_minimum_is_refused_and_nothing_is_made(app, rep):
    assert app.config["GROUP_MIN_MEMBERS"] == 5
    message = refused(rep, people(1, 2, 3), "too_few_members")  # the representative and 3 listed: 4
    assert message == "A group needs at least 5 members; 4 are listed."
    assert group_count() == 0
    group = groups.apply_for_group(rep, application(people(1, 2, 3, 4)))  # 5 with the representative
    assert (group.member_count, group.status) == (5, GroupStatus.PENDING)


def test_a_group_under_the_resident_share_is_refused_and_workers_and_students_count_as_residents(app, rep):
    assert app.config["GROUP_MIN_RESIDENT_PCT"] == 50
    outside = people(1, 2, 3, residency=Residency.OUTSIDE)
    # 2 of 5 live here: 40 %.
    message = refused(rep, [*outside, person(4)], "too_few_residents")
    assert message == "At least 50% of the members must live, work or study in the ward; 2 of 5 do."
    assert group_count() == 0
    # 3 of 6 (the representative, a worker, a student): exactly 50 %, enough.
    members = [*outside, person(4, Residency.WORKER), person(5, Residency.STUDENT)]
    group = groups.apply_for_group(rep, application(members))
    assert (group.member_count, group.resident_count) == (6, 3)
    assert groups.is_resident_group(group)


def test_a_member_listed_twice_is_refused_and_the_representative_is_listed_once(app, rep):
    same = MemberInput(name="伊藤　太郎", kana="いとう たろう", phone="０９０-1234-0001", residency="resident")
    assert "listed twice" in refused(rep, [*people(1, 2, 3), same], "listed_twice")
    # The representative typed as the first row (with the account's address) is not counted twice.
    me = MemberInput(name="山田 花子", kana="やまだ はなこ", phone="03-1111-2222", residency="resident",
                     email="rep@example.com")
    group = groups.apply_for_group(rep, application([me, *people(1, 2, 3, 4)]))
    assert group.member_count == 5
    assert [m.user_id for m in group.members].count(rep.id) == 1


def test_a_members_address_links_a_verified_account_only(app, rep, make_user):
    verified = make_user("member@example.com")
    make_user("unverified@example.com", verified=False)
    members = [MemberInput(**{**person(1).__dict__, "email": "Member@Example.com"}),
               MemberInput(**{**person(2).__dict__, "email": "unverified@example.com"}),
               MemberInput(**{**person(3).__dict__, "email": "nobody@example.com"}), person(4)]
    group = groups.apply_for_group(rep, application(members))
    db.session.commit()
    linked = {m.name: m.user_id for m in group.members}
    assert linked[person(1).name] == verified.id
    assert linked[person(2).name] is None and linked[person(3).name] is None
    assert linked[rep.name] == rep.id


def test_an_unconfirmed_resident_cannot_apply(app, make_user):
    newcomer = make_user("new@example.com", verified=False)
    refused(newcomer, people(1, 2, 3, 4), "email_unverified")
    assert group_count() == 0


# --- issue 10, test 3: identity ---------------------------------------------------------------------

def test_a_group_sharing_3_of_5_members_with_an_active_group_is_held_for_review_and_so_is_the_n_plus_1th_membership(
        app, client, login_as, rep, make_user, staff):
    """Issue 10, test 3: "A group sharing 3 of 5 members with an active group is held for review, and so is a
    person's N+1th membership." Held: made pending with the findings staff see, and approved only with a reason."""
    assert (app.config["GROUP_DUPLICATE_MEMBERS"], app.config["GROUP_MAX_MEMBERSHIPS"]) == (3, 3)
    active = registered_group(make_user("a@example.com", name="代表 一郎"), people(1, 2, 3, 4), name="先の会")
    assert active.member_count == 5

    # 3 of its 5 listed members again, typed differently (full-width digits, hiragana): held for review.
    typed = [MemberInput(name=m.name.replace(" ", "　"), kana=m.kana.translate(str.maketrans(
        "アイウエオカキクケコサシスセソタロ", "あいうえおかきくけこさしすせそたろ")), phone=m.phone.translate(
        str.maketrans("0123456789", "０１２３４５６７８９")), residency=m.residency) for m in people(1, 2, 3)]
    held = groups.apply_for_group(rep, application([*typed, person(11)], name="後の会"))
    db.session.commit()
    assert held.status == GroupStatus.PENDING and held.member_count == 5
    [duplicate] = [f for f in held.findings if f["kind"] == "duplicate_members"]
    assert (duplicate["group_id"], duplicate["group_name"], duplicate["shared"]) == (active.id, "先の会", 3)
    assert sorted(m["other"]["name"] for m in duplicate["members"]) == sorted(m.name for m in people(1, 2, 3))
    assert {m["this"]["phone"] for m in duplicate["members"]} == {m.phone for m in typed}

    # Two shared members are not enough to hold a group.
    other = groups.apply_for_group(make_user("b@example.com", name="代表 二郎"),
                                   application(people(1, 2, 12, 13), name="二人だけ重なる会"))
    assert not [f for f in other.findings if f["kind"] == "duplicate_members"]
    # Person 1 is now in 3 live groups (先の会, 後の会, 二人だけ重なる会): N = 3 is allowed, the 4th is held.
    assert not [f for f in other.findings if f["kind"] == "membership_cap"]
    fourth = groups.apply_for_group(make_user("c@example.com", name="代表 三郎"),
                                    application(people(1, 5, 6, 7), name="四つめの会"))
    db.session.commit()
    [cap] = [f for f in fourth.findings if f["kind"] == "membership_cap"]
    assert (cap["member"]["name"], cap["memberships"], cap["max"]) == (person(1).name, 4, 3)
    assert sorted(g["name"] for g in cap["groups"]) == ["二人だけ重なる会", "先の会", "後の会"]
    assert fourth.status == GroupStatus.PENDING

    # Staff see the match: which group and which members, both listings side by side.
    login_as(staff)
    client.post("/lang/en")
    page = client.get(f"/staff/groups/{held.id}").get_data(as_text=True)
    assert "3 listed members are also members of the active group 先の会" in page
    assert f'href="/staff/groups/{active.id}"' in page
    for member, shown in zip(people(1, 2, 3), typed, strict=True):
        assert member.name in page and shown.name in page and member.phone in page and shown.phone in page
    cap_page = client.get(f"/staff/groups/{fourth.id}").get_data(as_text=True)
    assert f"{person(1).name} would be a member of 4 groups (at most 3)" in cap_page
    listing = client.get("/staff/groups/?status=pending").get_data(as_text=True)
    assert "1 finding to check" in listing

    # Approved only with a reason for overriding the findings, which the history keeps.
    response = client.post(f"/staff/groups/{held.id}/approve", data={"approve-override_reason": ""})
    assert response.status_code == 422 and "Approve it only with a reason" in response.get_data(as_text=True)
    assert db.session.get(Group, held.id).status == GroupStatus.PENDING
    response = client.post(f"/staff/groups/{held.id}/approve",
                           data={"approve-override_reason": "同じ合唱団の別の練習日の会と確認済み"})
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Group, held.id).status == GroupStatus.ACTIVE
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.subject == "group", AuditEntry.subject_id == held.id,
                                                       AuditEntry.action == "approved"))
    assert entry.actor_id == staff.id and entry.data["reason"] == "同じ合唱団の別の練習日の会と確認済み"
    assert entry.data["overridden"][0]["group_id"] == active.id
    assert "同じ合唱団の別の練習日の会と確認済み" in client.get(f"/staff/groups/{held.id}").get_data(as_text=True)


def test_approval_checks_again_and_stops_at_a_finding_made_since_the_application(app, rep, make_user, staff):
    """Two pending groups with the same members pass the check (it compares with active groups); once one is
    approved, the other's approval finds the overlap, stores it and waits for staff."""
    first = groups.apply_for_group(make_user("a@example.com"), application(people(1, 2, 3, 4), name="一つめ"))
    second = groups.apply_for_group(rep, application(people(1, 2, 3, 5), name="二つめ"))
    assert first.findings == [] and second.findings == []
    assert groups.approve(first, staff) is True
    assert groups.approve(second, staff) is False
    db.session.commit()
    assert second.status == GroupStatus.PENDING
    assert [f["group_id"] for f in second.findings if f["kind"] == "duplicate_members"] == [first.id]
    assert ("new findings", "") in audit_actions("group", second.id)
    with pytest.raises(GroupError) as caught:
        groups.approve(second, staff)
    assert caught.value.code == "override_required"


# --- one group per representative -------------------------------------------------------------------

def test_a_person_represents_at_most_one_live_group(app, rep, staff):
    first = groups.apply_for_group(rep, application(people(1, 2, 3, 4)))
    db.session.commit()
    message = refused(rep, people(5, 6, 7, 8), "already_representative")
    assert "A person may represent only one group" in message
    assert group_count() == 1
    # Once the first is rejected, the representative may apply again.
    groups.reject(first, staff, reason="活動実態が確認できません")
    db.session.commit()
    assert groups.apply_for_group(rep, application(people(5, 6, 7, 8))).status == GroupStatus.PENDING


def test_the_database_refuses_a_second_live_group_of_one_representative(app, rep):
    registered_group(rep, people(1, 2, 3, 4), status=GroupStatus.PENDING)
    with pytest.raises(IntegrityError):
        registered_group(rep, people(5, 6, 7, 8), status=GroupStatus.ACTIVE)
    db.session.rollback()
    # A rejected or expired one does not count.
    registered_group(rep, people(5, 6, 7, 8), status=GroupStatus.EXPIRED)
    assert group_count() == 2


def test_a_concurrent_application_that_passed_the_check_loses_at_the_index_with_the_same_message(
        app, rep, monkeypatch):
    registered_group(rep, people(1, 2, 3, 4), status=GroupStatus.PENDING)
    # As if the other application committed between our check and our insert.
    monkeypatch.setattr(groups, "live_group_of", lambda user_id, excluding=None: None)
    with force_locale("en"), pytest.raises(GroupError) as caught:
        groups.apply_for_group(rep, application(people(5, 6, 7, 8)))
    assert caught.value.code == "already_representative"
    with force_locale("en"):
        assert "A person may represent only one group" in caught.value.message
    # The savepoint kept the session usable: nothing half-made, the first group intact.
    assert group_count() == 1
    assert db.session.scalar(select(func.count()).select_from(GroupMember)) == 5


def test_the_apply_page_answers_the_lost_race_with_the_message_not_a_500(app, client, login_as, rep, monkeypatch):
    registered_group(rep, people(1, 2, 3, 4), status=GroupStatus.PENDING)
    monkeypatch.setattr(groups, "live_group_of", lambda user_id, excluding=None: None)
    login_as(rep)
    client.post("/lang/en")
    response = client.post("/groups/apply", data=form_data(people(5, 6, 7, 8)))
    assert response.status_code == 422
    assert "A person may represent only one group" in response.get_data(as_text=True)
    assert group_count() == 1


# --- normalisation ------------------------------------------------------------------------------------

def test_identity_folds_width_kana_spaces_case_and_phone_punctuation():
    one = identity_key("山田　花子", "やまだ はなこ", "０９０－１２３４－５６７８")
    assert one == identity_key("山田花子", "ﾔﾏﾀﾞ ﾊﾅｺ", "090 1234 5678")
    assert one == identity_key(" 山田 花子 ", "ヤマダハナコ", "(090)1234-5678")
    assert identity_key("ＳＭＩＴＨ Ｊｏｈｎ", "スミス", "03-1") == identity_key("smith john", "すみす", "031")
    # Another person is another key: a different phone, or a different reading.
    assert one != identity_key("山田花子", "やまだはなこ", "090-1234-5679")
    assert one != identity_key("山田花子", "やまだかなこ", "090-1234-5678")


# --- review ------------------------------------------------------------------------------------------

def test_approval_makes_the_group_active_for_a_year_from_today_in_tokyo(app, rep, staff):
    group = groups.apply_for_group(rep, application(people(1, 2, 3, 4)))
    # 00:30 on 1 April in Tokyo is still 31 March in UTC: the year runs from the Tokyo day.
    with frozen(tokyo(2027, 4, 1, 0, 30)):
        assert groups.approve(group, staff) is True
    db.session.commit()
    assert (group.status, group.valid_until) == (GroupStatus.ACTIVE, date(2028, 4, 1))
    assert group.reviewed_by_id == staff.id
    assert groups.is_current(group, date(2028, 4, 1)) and not groups.is_current(group, date(2028, 4, 2))
    assert audit_actions("group", group.id) == [("applied", ""), ("approved", "")]
    [mail] = outbox(app)
    assert mail["To"] == "rep@example.com" and "2028" in mail.get_content()
    assert f"http://127.0.0.1:5000/groups/{group.id}" in mail.get_content()


def test_rejection_and_suspension_need_a_reason_that_the_representative_sees(
        app, client, login_as, rep, staff, make_user):
    group = groups.apply_for_group(rep, application(people(1, 2, 3, 4)))
    db.session.commit()
    with pytest.raises(GroupError) as caught:
        groups.reject(group, staff, reason="  ")
    assert caught.value.code == "reason_required"
    login_as(staff)
    assert client.post(f"/staff/groups/{group.id}/reject", data={"reject-reason": ""}).status_code == 422
    assert client.post(f"/staff/groups/{group.id}/reject",
                       data={"reject-reason": "会員名簿の確認ができません"}).status_code == 303
    db.session.expire_all()
    assert (group.status, group.reason) == (GroupStatus.REJECTED, "会員名簿の確認ができません")
    assert outbox(app)[-1]["To"] == "rep@example.com" and "会員名簿の確認ができません" in outbox(app)[-1].get_content()
    login_as(rep)
    assert "会員名簿の確認ができません" in client.get("/groups/").get_data(as_text=True)
    # Rejected is final: nothing more to approve.
    login_as(staff)
    assert client.post(f"/staff/groups/{group.id}/approve").status_code == 409

    active = registered_group(make_user("other.rep@example.com"), people(5, 6, 7, 8))
    assert client.post(f"/staff/groups/{active.id}/suspend", data={"suspend-reason": ""}).status_code == 422
    assert client.post(f"/staff/groups/{active.id}/suspend", data={"suspend-reason": "無断転貸"}).status_code == 303
    db.session.expire_all()
    assert (active.status, active.reason) == (GroupStatus.SUSPENDED, "無断転貸")
    assert not groups.is_current(active, business_date(now_utc()))
    assert client.post(f"/staff/groups/{active.id}/reinstate", data={"reinstate-note": "改善を確認"}).status_code == 303
    db.session.expire_all()
    assert (active.status, active.reason) == (GroupStatus.ACTIVE, "")
    assert [a for a, _ in audit_actions("group", active.id)] == ["suspended", "reinstated"]


def test_reinstating_after_the_validity_ran_out_leaves_the_group_expired(app, rep, staff):
    group = registered_group(rep, people(1, 2, 3, 4), valid_until=date(2027, 3, 31))
    with frozen(tokyo(2027, 3, 1, 12)):
        groups.suspend(group, staff, reason="調査中")
    with frozen(tokyo(2027, 4, 1, 9)):
        assert groups.reinstate(group, staff) == GroupStatus.EXPIRED
    db.session.commit()
    assert group.status == GroupStatus.EXPIRED


# --- renewal -----------------------------------------------------------------------------------------

def test_renewal_opens_in_the_reminder_window_and_extends_from_the_old_end(app, rep, staff):
    group = registered_group(rep, people(1, 2, 3, 4), valid_until=date(2027, 6, 30))
    assert app.config["GROUP_REMINDER_DAYS"] == 30
    with frozen(tokyo(2027, 5, 30, 23, 59)), force_locale("en"):  # 31 days before: not yet
        assert not groups.may_request_renewal(group, business_date(now_utc()))
        with pytest.raises(GroupError) as caught:
            groups.request_renewal(group, rep)
        assert caught.value.message == "Renewal opens 30 days before the registration runs out, on May 31, 2027."
    with frozen(tokyo(2027, 5, 31, 0, 0)):
        assert groups.may_request_renewal(group, business_date(now_utc()))
        groups.request_renewal(group, rep)
        with pytest.raises(GroupError):
            groups.request_renewal(group, rep)  # once
    assert group.status == GroupStatus.ACTIVE and group.renewal_requested_at is not None
    with frozen(tokyo(2027, 6, 10, 10)):
        groups.approve_renewal(group, staff)
    db.session.commit()
    # From the later of today and the old end: a year after 30 June 2027.
    assert (group.valid_until, group.renewal_requested_at) == (date(2028, 6, 30), None)
    assert [a for a, _ in audit_actions("group", group.id)] == ["renewal requested", "renewal approved"]


def test_only_the_representative_may_ask_to_renew(app, rep, make_user):
    group = registered_group(rep, people(1, 2, 3, 4), valid_until=business_date(now_utc()) + timedelta(days=5))
    with pytest.raises(GroupError) as caught:
        groups.request_renewal(group, make_user("someone@example.com"))
    assert caught.value.code == "not_representative"


def test_an_expired_groups_renewal_goes_back_to_review_and_runs_a_year_from_approval(app, rep, staff):
    group = registered_group(rep, people(1, 2, 3, 4), status=GroupStatus.EXPIRED, valid_until=date(2027, 3, 31))
    with frozen(tokyo(2027, 5, 1, 10)):
        groups.request_renewal(group, rep)
        assert group.status == GroupStatus.PENDING
        groups.approve(group, staff)
    db.session.commit()
    assert (group.status, group.valid_until) == (GroupStatus.ACTIVE, date(2028, 5, 1))


def test_an_expired_groups_renewal_is_refused_while_its_representative_runs_another_live_group(app, rep):
    expired = registered_group(rep, people(1, 2, 3, 4), status=GroupStatus.EXPIRED, valid_until=date(2027, 3, 31))
    registered_group(rep, people(5, 6, 7, 8), status=GroupStatus.PENDING)
    with pytest.raises(GroupError) as caught:
        groups.request_renewal(expired, rep)
    assert caught.value.code == "already_representative"


# --- the job: reminder once, expiry -------------------------------------------------------------------

def test_the_reminder_is_mailed_once_30_days_ahead_and_the_group_expires_after_its_last_day(app, rep):
    assert any(j.id == "send_group_reminders_and_expire" and j.seconds == 3600 for j in JOBS)
    group = registered_group(rep, people(1, 2, 3, 4), valid_until=date(2027, 6, 30))
    with frozen(tokyo(2027, 5, 30, 23, 59, 59)):  # 31 days before
        assert groups.send_group_reminders_and_expire()["reminded"] == 0
    assert outbox(app) == []
    with frozen(tokyo(2027, 5, 31, 0, 0)):  # 30 days before, from Tokyo midnight
        assert groups.send_group_reminders_and_expire()["reminded"] == 1
        assert groups.send_group_reminders_and_expire()["reminded"] == 0  # a second run mails nothing
    with frozen(tokyo(2027, 6, 20, 9)):
        assert groups.send_group_reminders_and_expire() == {"reminded": 0, "expired": 0, "to_review": 0}
    [reminder] = outbox(app)
    assert reminder["To"] == "rep@example.com"
    assert f"http://127.0.0.1:5000/groups/{group.id}" in reminder.get_content()
    db.session.expire_all()
    assert group.reminded_for == date(2027, 6, 30)
    with frozen(tokyo(2027, 6, 30, 23, 59, 59)):  # its last day: still registered
        assert groups.send_group_reminders_and_expire()["expired"] == 0
    with frozen(tokyo(2027, 7, 1, 0, 0)):
        assert groups.send_group_reminders_and_expire()["expired"] == 1
        assert groups.send_group_reminders_and_expire()["expired"] == 0
    db.session.expire_all()
    assert group.status == GroupStatus.EXPIRED
    assert [a for a, _ in audit_actions("group", group.id)] == ["renewal reminder sent", "expired"]
    assert len(outbox(app)) == 2 and outbox(app)[-1]["To"] == "rep@example.com"


def test_a_renewed_validity_gets_its_own_reminder(app, rep, staff):
    group = registered_group(rep, people(1, 2, 3, 4), valid_until=date(2027, 6, 30))
    with frozen(tokyo(2027, 6, 1, 9)):
        groups.send_group_reminders_and_expire()
        groups.request_renewal(group, rep)
        groups.approve_renewal(group, staff)
        db.session.commit()
    with frozen(tokyo(2028, 6, 1, 9)):
        assert groups.send_group_reminders_and_expire()["reminded"] == 1
    db.session.expire_all()
    assert group.reminded_for == date(2028, 6, 30)
    assert len(outbox(app)) == 3  # reminder, renewed, reminder


def test_a_group_whose_renewal_waits_for_staff_goes_back_to_review_at_expiry(app, rep):
    group = registered_group(rep, people(1, 2, 3, 4), valid_until=date(2027, 6, 30))
    with frozen(tokyo(2027, 6, 15, 9)):
        groups.request_renewal(group, rep)
        db.session.commit()
    with frozen(tokyo(2027, 7, 1, 9)):
        assert groups.send_group_reminders_and_expire()["to_review"] == 1
    db.session.expire_all()
    assert group.status == GroupStatus.PENDING and not groups.is_current(group, date(2027, 7, 1))


# --- pages and forms -------------------------------------------------------------------------------

def form_data(members, **overrides) -> dict:
    data = {"name": "中央合唱団", "name_kana": "ちゅうおうがっしょうだん", "category": "general",
            "activity_kind": "合唱", "purpose": "地域の合唱活動", "contact_name": "山田 花子",
            "contact_email": "rep@example.com", "contact_phone": "03-1111-2222"}
    rows = [MemberInput(name="山田 花子", kana="やまだ はなこ", phone="03-1111-2222", residency="resident",
                        email="rep@example.com"), *members]
    for n, m in enumerate(rows):
        data.update({f"members-{n}-name": m.name, f"members-{n}-kana": m.kana, f"members-{n}-phone": m.phone,
                     f"members-{n}-residency": m.residency, f"members-{n}-email": m.email})
    for n in range(len(rows), 10):  # the blank rows the page sends too
        data.update({f"members-{n}-name": "", f"members-{n}-kana": "", f"members-{n}-phone": "",
                     f"members-{n}-residency": "", f"members-{n}-email": ""})
    data.update(overrides)
    return data


def test_the_apply_form_shows_ten_rows_and_makes_a_pending_group_ignoring_blank_rows(
        app, client, login_as, rep, english):
    login_as(rep)
    page = client.get("/groups/apply").get_data(as_text=True)
    assert len(re.findall(r'name="members-\d+-name"', page)) == 10
    assert 'value="rep@example.com"' in page  # the contact and the first row are the representative
    response = client.post("/groups/apply", data=form_data(people(1, 2, 3, 4)))
    assert response.status_code == 303
    group = db.session.scalar(select(Group))
    assert response.headers["Location"].endswith(f"/groups/{group.id}")
    assert (group.member_count, group.status, group.representative_id) == (5, GroupStatus.PENDING, rep.id)
    assert group.members[0].user_id == rep.id
    detail = client.get(f"/groups/{group.id}").get_data(as_text=True)
    assert "Under review" in detail and person(4).name in detail
    mine = client.get("/groups/").get_data(as_text=True)
    assert "中央合唱団" in mine and "Under review" in mine
    # Applying again is not offered: the representative already has a live group.
    assert "Apply to register a group</a>" not in mine
    again = client.get("/groups/apply").get_data(as_text=True)
    assert "A person may represent only one group." in again and 'name="members-0-name"' not in again


def test_an_application_with_errors_keeps_what_was_typed(app, client, login_as, rep, english):
    login_as(rep)
    response = client.post("/groups/apply", data=form_data(
        people(1, 2), **{"members-3-kana": "Aoki", "members-4-name": "", "members-4-kana": "",
                         "members-4-phone": "090-0000-9999", "purpose": ""}))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Say what the group is for." in page
    assert "Enter the reading in kana, like" in page  # a reading in Latin letters
    assert "Enter the member's name." in page  # a row with only a phone
    assert """<a href="#members-4-name">Member 5, Name: Enter the member's name.</a>""" in page  # in the summary
    assert "{}" not in page
    assert 'value="090-0000-9999"' in page and 'value="Aoki"' in page and f'value="{person(1).name}"' in page
    assert len(re.findall(r'name="members-\d+-name"', page)) >= 10
    assert group_count() == 0
    # Valid rows but too few of them: the rule's message, and the rows stay.
    response = client.post("/groups/apply", data=form_data(people(1, 2)))
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "A group needs at least 5 members; 3 are listed." in page
    assert f'value="{person(2).phone}"' in page
    # More rows, without checking anything.
    response = client.post("/groups/apply", data=form_data(people(1, 2), more_rows="y"))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert len(re.findall(r'name="members-\d+-name"', page)) == 20
    assert "error-summary" not in page and f'value="{person(2).phone}"' in page


def test_the_renew_button_shows_in_the_window_and_sends_the_request(app, client, login_as, rep, english):
    group = registered_group(rep, people(1, 2, 3, 4), valid_until=date(2027, 6, 30))
    with frozen(tokyo(2027, 5, 1, 9)):  # a session made in the frozen time: one made before would be too old
        login_as(rep)
        client.post("/lang/en")
        page = client.get("/groups/").get_data(as_text=True)
        assert f'action="/groups/{group.id}/renew"' not in page
        assert "You can ask to renew it from May 31, 2027." in client.get(f"/groups/{group.id}").get_data(as_text=True)
    with frozen(tokyo(2027, 6, 1, 9)):
        login_as(rep)
        client.post("/lang/en")
        assert f'action="/groups/{group.id}/renew"' in client.get("/groups/").get_data(as_text=True)
        assert client.post(f"/groups/{group.id}/renew").status_code == 303
        page = client.get(f"/groups/{group.id}").get_data(as_text=True)
        assert "Your renewal request is sent." in page and "waiting for staff" in page
    db.session.expire_all()
    assert group.renewal_requested_at is not None


def test_staff_approve_a_renewal_on_the_groups_page(app, client, login_as, rep, staff, english):
    group = registered_group(rep, people(1, 2, 3, 4), valid_until=date(2027, 6, 30))
    with frozen(tokyo(2027, 6, 1, 9)):
        groups.request_renewal(group, rep)
        db.session.commit()
        login_as(staff)
        client.post("/lang/en")
        assert "Renewal requested" in client.get("/staff/groups/").get_data(as_text=True)
        assert f'action="/staff/groups/{group.id}/renew"' in client.get(f"/staff/groups/{group.id}").text
        assert client.post(f"/staff/groups/{group.id}/renew").status_code == 303
        assert client.post(f"/staff/groups/{group.id}/renew").status_code == 409  # done already
    db.session.expire_all()
    assert group.valid_until == date(2028, 6, 30)


def test_the_staff_list_puts_pending_first_and_filters_by_status(app, client, login_as, rep, staff, make_user):
    registered_group(make_user("x@example.com"), people(5, 6, 7, 8), name="活動中の会")
    groups.apply_for_group(rep, application(people(1, 2, 3, 4), name="審査中の会"))
    db.session.commit()
    login_as(staff)
    page = client.get("/staff/groups/").get_data(as_text=True)
    assert page.index("審査中の会") < page.index("活動中の会")
    only = client.get("/staff/groups/?status=active").get_data(as_text=True)
    assert "活動中の会" in only and "審査中の会" not in only
    assert client.get("/staff/groups/?status=nonsense").status_code == 200


def test_a_group_page_is_its_representatives_and_linked_members_only(app, client, login_as, rep, make_user):
    member = make_user("member@example.com")
    members = [MemberInput(**{**person(1).__dict__, "email": "member@example.com"}), *people(2, 3, 4)]
    group = groups.apply_for_group(rep, application(members))
    db.session.commit()
    login_as(member)
    assert client.get(f"/groups/{group.id}").status_code == 200
    assert "中央合唱団" in client.get("/groups/").get_data(as_text=True)
    assert client.post(f"/groups/{group.id}/renew").status_code == 303  # answered, but not theirs to ask
    assert db.session.get(Group, group.id).renewal_requested_at is None
    login_as(make_user("stranger@example.com"))
    assert client.get(f"/groups/{group.id}").status_code == 404
    assert client.post(f"/groups/{group.id}/renew").status_code == 404
    assert client.get("/groups/99999999999").status_code == 404
    client.post("/account/logout")
    assert client.get("/groups/").status_code == 302


def test_staff_pages_are_for_staff_and_admin_whatever_their_buildings(app, client, login_as, rep, make_user):
    group = groups.apply_for_group(rep, application(people(1, 2, 3, 4)))
    db.session.commit()
    from reservations.models import Building

    elsewhere = Building(name="別の会館")
    db.session.add(elsewhere)
    db.session.commit()
    for user, status in ((make_user("s@example.com", role=Role.STAFF, buildings=[elsewhere]), 200),
                         (make_user("a@example.com", role=Role.ADMIN), 200),
                         (make_user("f@example.com", role=Role.FINANCE), 403), (rep, 403)):
        login_as(user)
        assert client.get("/staff/groups/").status_code == status, user.role
        assert client.get(f"/staff/groups/{group.id}").status_code == status, user.role
        assert client.post(f"/staff/groups/{group.id}/reject", data={"reject-reason": "x"}).status_code in (
            (303, 409) if status == 200 else (403,)), user.role
    db.session.expire_all()
    assert group.status == GroupStatus.REJECTED  # by the first member of staff, not by finance or the resident


class TestWithCsrf:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WTF_CSRF_ENABLED": True}

    def test_the_application_needs_the_forms_token(self, client, login_as, rep):
        login_as(rep)
        assert client.post("/groups/apply", data=form_data(people(1, 2, 3, 4))).status_code == 400
        assert group_count() == 0
        page = client.get("/groups/apply").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', page)
        token = token.group(1) or token.group(2)
        assert client.post("/groups/apply", data={**form_data(people(1, 2, 3, 4)), "csrf_token": token}
                           ).status_code == 303
        assert group_count() == 1

    def test_staff_decisions_need_the_forms_token(self, client, login_as, rep, staff):
        group = groups.apply_for_group(rep, application(people(1, 2, 3, 4)))
        db.session.commit()
        login_as(staff)
        assert client.post(f"/staff/groups/{group.id}/approve").status_code == 400
        page = client.get(f"/staff/groups/{group.id}").get_data(as_text=True)
        token = re.search(r'name="approve-csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        assert client.post(f"/staff/groups/{group.id}/approve", data={"approve-csrf_token": token}).status_code == 303
        db.session.expire_all()
        assert group.status == GroupStatus.ACTIVE
