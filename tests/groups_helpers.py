"""Registered groups for the tests: listed members, a group made straight in the database, and the worlds the
authorisation matrix, the back-office pages and the resident tour show (made once, idempotent)."""
from datetime import date, timedelta

from sqlalchemy import select

from reservations.extensions import db
from reservations.models import Group, GroupMember, GroupStatus, Residency, User
from reservations.services import groups
from reservations.services.groups import GroupApplication, MemberInput
from reservations.timeutil import business_date, now_utc

KANA = ["アオキ", "イトウ", "ウエダ", "エノモト", "オカダ", "カトウ", "キムラ", "クボタ", "ケンモチ", "コバヤシ",
        "サトウ", "シミズ", "スズキ", "セキ", "ソノダ"]
SURNAMES = ["青木", "伊藤", "上田", "榎本", "岡田", "加藤", "木村", "久保田", "剣持", "小林",
            "佐藤", "清水", "鈴木", "関", "園田"]


def person(n: int, residency: str = Residency.RESIDENT, email: str = "") -> MemberInput:
    """The n-th person of the ward's test population: the same n is the same person in every group."""
    return MemberInput(name=f"{SURNAMES[n]} 太郎", kana=f"{KANA[n]} タロウ", phone=f"090-1234-{n:04d}",
                       residency=residency, email=email)


def people(*numbers: int, residency: str = Residency.RESIDENT) -> list[MemberInput]:
    return [person(n, residency) for n in numbers]


def application(members: list[MemberInput], *, name: str = "中央合唱団", category: str = "general") -> GroupApplication:
    return GroupApplication(name=name, name_kana="チュウオウガッショウダン", contact_name="山田 花子",
                            contact_email="contact@example.com", contact_phone="03-1234-5678", category=category,
                            purpose="地域の合唱活動", activity_kind="合唱", members=members)


def registered_group(representative: User, members: list[MemberInput], *, name: str = "登録済みの会",
                     status: str = GroupStatus.ACTIVE, valid_until: date | None = None) -> Group:
    """A group made straight in the database (no checks), with the representative as its first member; committed."""
    today = business_date(now_utc())
    rows = [GroupMember(name=representative.name, name_kana=representative.name_kana or "",
                        phone=representative.phone or "", residency=representative.residency,
                        identity=groups.identity_key(representative.name, representative.name_kana,
                                                     representative.phone or ""), user_id=representative.id)]
    rows += [GroupMember(name=m.name, name_kana=m.kana, phone=m.phone, residency=m.residency,
                         identity=groups.identity_key(m.name, m.kana, m.phone)) for m in members]
    group = Group(name=name, name_kana="トウロクズミノカイ", representative_id=representative.id,
                  contact_name=representative.name, contact_email=representative.email, contact_phone="03-0000-0000",
                  purpose="活動", activity_kind="合唱", member_count=len(rows),
                  resident_count=sum(1 for r in rows if r.residency in groups.RESIDENT_CLASSES), status=status,
                  valid_until=valid_until or (today + timedelta(days=200) if status == GroupStatus.ACTIVE else None),
                  members=rows)
    db.session.add(group)
    db.session.commit()
    return group


def _user(email: str, name: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name, residency=Residency.RESIDENT, email_verified_at=now_utc())
        user.set_password("correct horse")
        db.session.add(user)
        db.session.flush()
    return user


def group_of(user_id: int) -> int:
    """The id of a pending group `user_id` represents, made if there is none (for the authorisation matrix)."""
    group = db.session.scalar(select(Group).where(Group.representative_id == user_id).limit(1))
    if group is None:
        group = registered_group(db.session.get(User, user_id), people(1, 2, 3, 4), status=GroupStatus.PENDING)
    return group.id


def held_group() -> int:
    """A pending group held for review: it shares 3 of its listed members with an active group, and one of them
    is in as many live groups as allowed already. Made once; returns its id."""
    held = db.session.scalar(select(Group.id).where(Group.name == "重複のある会"))
    if held is None:
        first = registered_group(_user("rep.a@example.com", "代表 一郎"), people(1, 2, 3, 4), name="先に登録の会")
        second = registered_group(_user("rep.b@example.com", "代表 二郎"), people(1, 5, 6, 7), name="二つめの会")
        third = registered_group(_user("rep.c@example.com", "代表 三郎"), people(1, 8, 9, 10), name="三つめの会")
        assert first.id and second.id and third.id
        group = groups.apply_for_group(_user("rep.d@example.com", "代表 四郎"),
                                       application(people(1, 2, 3, 11), name="重複のある会"))
        db.session.commit()
        held = group.id
    db.session.rollback()  # nothing left open in the test thread (a browser test's server needs the SQLite lock)
    return held


def tour_group(user_id: int, lang: str) -> int:
    """The tour resident's group, active and inside its renewal window (the renew button shows). Made once."""
    group = db.session.scalar(select(Group).where(Group.representative_id == user_id).limit(1))
    if group is None:
        english = lang == "en"
        user = db.session.get(User, user_id)
        names = (["Taro Aoki", "Jiro Ito", "Saburo Ueda", "Shiro Okada"] if english
                 else ["青木 太郎", "伊藤 次郎", "上田 三郎", "岡田 四郎"])
        members = [MemberInput(name=n, kana=KANA[i], phone=f"090-5555-{i:04d}", residency=Residency.RESIDENT)
                   for i, n in enumerate(names)]
        group = registered_group(user, members, name="Chuo Choir" if english else "中央合唱団",
                                 valid_until=business_date(now_utc()) + timedelta(days=20))
        group.activity_kind, group.purpose = ("Chorus", "Singing together") if english else ("合唱", "地域の合唱活動")
        group.name_kana = "チュウオウガッショウダン"
        db.session.commit()
    group_id = group.id
    db.session.rollback()
    return group_id
