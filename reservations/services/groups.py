"""Registered groups (登録団体): who may act for a group, its fee class and its lottery tier; below the core,
registration, staff review, renewal, the identity checks and the reminder and expiry job.
"""
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial

from flask import current_app, render_template
from flask_babel import force_locale, format_date
from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError

from ..aftercommit import after_commit
from ..extensions import db
from ..i18n import lazy_gettext as _l
from ..links import external_url
from ..mail import send_mail
from ..models import LIVE_GROUP_STATES, Group, GroupCategory, GroupMember, GroupStatus, Residency, User, record
from ..timeutil import business_date, now_utc, shift_months
from .errors import CodedError

# A group whose share of members who live, work or study in the ward reaches GROUP_MIN_RESIDENT_PCT pays
# the base fee (a resident group); any other pays the room's non-resident rate.
_BASE = (Residency.RESIDENT, Residency.WORKER, Residency.STUDENT)


def identity_key(name: str, kana: str, phone: str) -> str:
    """Name + kana + phone, normalised: NFKC (full-width to half-width, ｶﾅ to カナ), no spaces, kana in
    katakana, lower case, the phone's digits only. Two listings of one person compare equal."""
    def norm(text: str) -> str:
        text = unicodedata.normalize("NFKC", text or "")
        text = "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)  # hiragana → katakana
        return re.sub(r"\s+", "", text).lower()
    return f"{norm(name)}|{norm(kana)}|{re.sub(r'[^0-9]', '', unicodedata.normalize('NFKC', phone or ''))}"


def is_current(group: Group, today: date) -> bool:
    """Active and within its validity: it may book and apply."""
    return group.status == GroupStatus.ACTIVE and group.valid_until is not None and group.valid_until >= today


def acting_groups(user: User, today: date) -> list[Group]:
    """The current groups `user` may book or apply for: as representative, or as a listed member with this account."""
    groups = db.session.scalars(select(Group).where(*_acting_for(user.id, today)).order_by(Group.name, Group.id)).all()
    return list(groups)


def acts_for_any_clause(user_id, today):
    """Whether acting_groups has any group, as SQL (an EXISTS) to ask beside other things; `user_id` and
    `today` are values or bound parameters."""
    return exists(select(Group.id).where(*_acting_for(user_id, today)))


def _acting_for(user_id, today) -> tuple:
    member_of = select(GroupMember.group_id).where(GroupMember.user_id == user_id)
    return (or_(Group.representative_id == user_id, Group.id.in_(member_of)),
            Group.status == GroupStatus.ACTIVE, Group.valid_until >= today)


def may_act_for(user: User, group: Group, today: date) -> bool:
    return any(g.id == group.id for g in acting_groups(user, today))


def is_resident_group(group: Group) -> bool:
    return group.resident_count * 100 >= group.member_count * current_app.config["GROUP_MIN_RESIDENT_PCT"]


def fee_residency(group: Group) -> str:
    """The residency class a booking for the group is priced at: the group's class, not the member's."""
    return Residency.RESIDENT if is_resident_group(group) else Residency.OUTSIDE


def lottery_tier(group: Group | None) -> int:
    """The tier a party draws in: resident groups first, then everyone else (persons and other groups)."""
    if group is not None and is_resident_group(group):
        return current_app.config["LOTTERY_RESIDENT_GROUP_TIER"]
    return current_app.config["LOTTERY_OTHER_TIER"]


# -- registration, review, renewal ---------------------------------------------------------------
#
# A resident applies for a group with its listed members; the group is pending until staff review it.
# The eligibility rules (a minimum member count, a minimum share of residents, one live group per
# representative) refuse the application outright. The identity checks (members shared with an active
# group, a person listed in more than GROUP_MAX_MEMBERSHIPS live groups) do not: the group is created
# pending with its findings, and staff approve it only with an override reason. Every change is audited
# (subject "group"); mails go after the commit (aftercommit.after_commit).

RESIDENT_CLASSES = frozenset(_BASE)  # members who count toward the resident share

STATUS_LABELS = {
    GroupStatus.PENDING: _l("Under review"),
    GroupStatus.ACTIVE: _l("Registered"),
    GroupStatus.REJECTED: _l("Rejected"),
    GroupStatus.SUSPENDED: _l("Suspended"),
    GroupStatus.EXPIRED: _l("Expired"),
}
CATEGORY_LABELS = {
    GroupCategory.GENERAL: _l("General group"),
    GroupCategory.WELFARE: _l("Welfare group"),
    GroupCategory.SCHOOL: _l("School"),
    GroupCategory.WARD: _l("Ward department"),
}

MESSAGES = {
    "too_few_members": _l("A group needs at least %(min)d members; %(count)d are listed."),
    "too_few_residents": _l("At least %(pct)d%% of the members must live, work or study in the ward; "
                            "%(residents)d of %(count)d do."),
    "already_representative": _l("You already represent a group that is registered or under review. "
                                 "A person may represent only one group."),
    "representative_taken": _l("The representative already represents another group that is registered or "
                               "under review. A person may represent only one group."),
    "listed_twice": _l("%(name)s is listed twice. List each member once."),
    "bad_category": _l("Choose the kind of group."),
    "bad_residency": _l("Choose where each member lives, works or studies."),
    "missing_member_details": _l("Enter the name, the reading in kana and the phone number of every member."),
    "email_unverified": _l("Please confirm your e-mail address before applying for a group. We sent you a link."),
    "not_pending": _l("This group is not waiting for review."),
    "not_active": _l("Only a registered (active) group can be suspended."),
    "not_suspended": _l("This group is not suspended."),
    "override_required": _l("The checks found something about this group (see Findings). Approve it only with "
                            "a reason for overriding them."),
    "reason_required": _l("Give a reason: it is shown to the representative."),
    "not_representative": _l("Only the group's representative can do this."),
    "renewal_not_open": _l("Renewal opens %(days)d days before the registration runs out, on %(date)s."),
    "renewal_already_requested": _l("The renewal is already requested and waiting for staff."),
    "not_renewable": _l("This group cannot be renewed: only a registered or expired group can."),
    "no_renewal_requested": _l("No renewal is requested for this group."),
}


class GroupError(CodedError):
    """A refused group action, with a message for people (`code` for tests and logs)."""

    MESSAGES = MESSAGES


@dataclass(frozen=True)
class MemberInput:
    """A listed member as the form gives it; `email` (optional) links the member to their verified account."""

    name: str
    kana: str
    phone: str
    residency: str
    email: str = ""


@dataclass(frozen=True)
class GroupApplication:
    name: str
    name_kana: str
    contact_name: str
    contact_email: str
    contact_phone: str
    category: str
    purpose: str
    activity_kind: str
    members: list[MemberInput] = field(default_factory=list)


def status_label(code: str) -> str:
    return str(STATUS_LABELS.get(code, code))


def category_label(code: str) -> str:
    return str(CATEGORY_LABELS.get(code, code))


def live_group_of(user_id: int, *, excluding: int | None = None) -> Group | None:
    """The pending or active group `user_id` represents, if any."""
    statement = select(Group).where(Group.representative_id == user_id, Group.status.in_(LIVE_GROUP_STATES))
    if excluding is not None:
        statement = statement.where(Group.id != excluding)
    return db.session.scalars(statement.limit(1)).first()


def _verified_account(email: str) -> User | None:
    email = (email or "").strip().lower()
    if not email:
        return None
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None or user.email_verified_at is None or user.walk_in:
        return None
    return user


def _listing(member) -> dict:
    """What staff see of a listed member (a GroupMember or a MemberInput) in a finding."""
    kana = member.name_kana if isinstance(member, GroupMember) else member.kana
    return {"name": member.name, "kana": kana, "phone": member.phone}


def _members_of(representative: User, members: list[MemberInput]) -> list[GroupMember]:
    """The listed members as rows, the representative among them (added from the account if not listed)."""
    rows: list[GroupMember] = []
    seen: dict[str, str] = {}
    for member in members:
        if not (member.name.strip() and member.kana.strip() and member.phone.strip()):
            raise GroupError("missing_member_details")
        if member.residency not in {r.value for r in Residency}:
            raise GroupError("bad_residency")
        identity = identity_key(member.name, member.kana, member.phone)
        if identity in seen:
            raise GroupError("listed_twice", name=member.name.strip())
        seen[identity] = member.name
        account = _verified_account(member.email)
        rows.append(GroupMember(name=member.name.strip(), name_kana=member.kana.strip(), phone=member.phone.strip(),
                                residency=member.residency, identity=identity,
                                user_id=account.id if account else None))
    # The representative is a listed member: the row with their address, else one from their account.
    mine = [row for row in rows if row.user_id == representative.id]
    if not mine:
        identity = identity_key(representative.name, representative.name_kana, representative.phone or "")
        same = [row for row in rows if row.identity == identity]
        if same:
            same[0].user_id = representative.id
        else:
            rows.insert(0, GroupMember(name=representative.name, name_kana=representative.name_kana or "",
                                       phone=representative.phone or "", residency=representative.residency,
                                       identity=identity, user_id=representative.id))
    # One account, one listing: a second row with the same address is not linked again.
    linked: set[int] = set()
    for row in rows:
        if row.user_id is not None:
            if row.user_id in linked:
                row.user_id = None
            linked.add(row.user_id)
    return rows


def identity_findings(members: list[GroupMember], *, excluding: int | None = None,
                      cap_states=LIVE_GROUP_STATES) -> list[dict]:
    """What holds a group for review: an active group sharing GROUP_DUPLICATE_MEMBERS or more of its listed
    members (which group, which members, both listings side by side), and each member who would be in more
    than GROUP_MAX_MEMBERSHIPS groups with this one, counting the groups in `cap_states` (the groups they are
    in already)."""
    config = current_app.config
    identities = {m.identity: m for m in members}
    if not identities:
        return []
    others = db.session.execute(
        select(GroupMember, Group).join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.identity.in_(list(identities)), Group.status.in_(LIVE_GROUP_STATES),
               *([Group.id != excluding] if excluding is not None else []))
        .order_by(Group.id, GroupMember.id)).all()
    findings: list[dict] = []
    shared_with: dict[int, list[tuple[GroupMember, Group]]] = {}
    memberships: dict[str, list[Group]] = {}
    for other_member, group in others:
        if group.status == GroupStatus.ACTIVE:
            shared_with.setdefault(group.id, []).append((other_member, group))
        if group.status in cap_states:
            listed = memberships.setdefault(other_member.identity, [])
            if all(g.id != group.id for g in listed):
                listed.append(group)
    for group_id, pairs in shared_with.items():
        matched = {}
        for other_member, _group in pairs:
            matched.setdefault(other_member.identity, other_member)
        if len(matched) >= config["GROUP_DUPLICATE_MEMBERS"]:
            group = pairs[0][1]
            findings.append({
                "kind": "duplicate_members", "group_id": group_id, "group_name": group.name,
                "shared": len(matched), "threshold": config["GROUP_DUPLICATE_MEMBERS"],
                "members": [{"identity": identity, "this": _listing(identities[identity]),
                             "other": _listing(other)} for identity, other in matched.items()],
            })
    for identity, groups in memberships.items():
        if len(groups) + 1 > config["GROUP_MAX_MEMBERSHIPS"]:
            findings.append({
                "kind": "membership_cap", "identity": identity, "member": _listing(identities[identity]),
                "memberships": len(groups) + 1, "max": config["GROUP_MAX_MEMBERSHIPS"],
                "groups": [{"id": g.id, "name": g.name, "status": g.status} for g in groups],
            })
    return findings


def _finding_key(finding: dict) -> tuple:
    """What a finding is about: the active group shared with, or the member over the cap."""
    return finding["kind"], finding.get("group_id", finding.get("identity"))


def _check_eligibility(member_count: int, resident_count: int) -> None:
    config = current_app.config
    if member_count < config["GROUP_MIN_MEMBERS"]:
        raise GroupError("too_few_members", min=config["GROUP_MIN_MEMBERS"], count=member_count)
    if resident_count * 100 < member_count * config["GROUP_MIN_RESIDENT_PCT"]:
        raise GroupError("too_few_residents", pct=config["GROUP_MIN_RESIDENT_PCT"], residents=resident_count,
                         count=member_count)


def _is_live_representative_conflict(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    return "uq_groups_live_representative" in text or "groups.representative_id" in text


def apply_for_group(representative: User, application: GroupApplication, *, now: datetime | None = None) -> Group:
    """Register a group, pending staff review; the signed-in resident is its representative.

    Raises GroupError (and creates nothing) when the group is not eligible: fewer than GROUP_MIN_MEMBERS
    listed members, a resident share under GROUP_MIN_RESIDENT_PCT, or a representative who already
    represents a live group (checked here, and by the database's unique index for the race). The identity
    checks do not refuse: their findings are stored on the group for staff.
    """
    now = now or now_utc()
    if representative.email_verified_at is None:
        raise GroupError("email_unverified")
    if application.category not in {c.value for c in GroupCategory}:
        raise GroupError("bad_category")
    if live_group_of(representative.id) is not None:
        raise GroupError("already_representative")
    members = _members_of(representative, application.members)
    member_count = len(members)
    resident_count = sum(1 for m in members if m.residency in RESIDENT_CLASSES)
    _check_eligibility(member_count, resident_count)
    findings = identity_findings(members)
    group = Group(name=application.name.strip(), name_kana=application.name_kana.strip(),
                  representative_id=representative.id, contact_name=application.contact_name.strip(),
                  contact_email=application.contact_email.strip(), contact_phone=application.contact_phone.strip(),
                  category=application.category, purpose=application.purpose.strip(),
                  activity_kind=application.activity_kind.strip(), member_count=member_count,
                  resident_count=resident_count, status=GroupStatus.PENDING, findings=findings, members=members,
                  created_at=now)
    try:
        with db.session.begin_nested():  # a concurrent application by the same person loses at the index
            db.session.add(group)
    except IntegrityError as exc:
        if not _is_live_representative_conflict(exc):
            raise
        raise GroupError("already_representative") from None
    record("group", group.id, "applied", actor_id=representative.id, member_count=member_count,
           resident_count=resident_count, category=group.category, findings=findings)
    db.session.flush()
    return group


def _reviewed(group: Group, staff: User, now: datetime) -> None:
    group.reviewed_by_id, group.reviewed_at = staff.id, now


def approve(group: Group, staff: User, *, override_reason: str = "", now: datetime | None = None) -> bool:
    """Make a pending group active for GROUP_VALID_MONTHS from today (Tokyo); True when it is approved.

    A group with findings is approved only with an override reason, recorded with the findings it overrides.
    The identity checks run again first, against the groups active now (one approved since the application
    counts; a pending one is judged at its own approval): a finding new since the application is added to
    the group's and audited, and the group is not approved (False): staff look at it first.
    """
    now = now or now_utc()
    if group.status != GroupStatus.PENDING:
        raise GroupError("not_pending")
    known = list(group.findings or [])
    seen = {_finding_key(f) for f in known}
    new = [f for f in identity_findings(group.members, excluding=group.id, cap_states=(GroupStatus.ACTIVE,))
           if _finding_key(f) not in seen]
    if new:
        group.findings = known + new
        record("group", group.id, "new findings", actor_id=staff.id, findings=new)
        db.session.flush()
        return False
    override_reason = (override_reason or "").strip()
    if known and not override_reason:
        raise GroupError("override_required")
    today = business_date(now)
    before = group.valid_until
    group.status, group.reason = GroupStatus.ACTIVE, ""
    group.valid_until = shift_months(today, current_app.config["GROUP_VALID_MONTHS"])
    group.renewal_requested_at = None
    _reviewed(group, staff, now)
    data = {"valid_until": group.valid_until.isoformat(), "before": before.isoformat() if before else None}
    if known:
        data.update(reason=override_reason, overridden=known)
    record("group", group.id, "approved", actor_id=staff.id, **data)
    db.session.flush()
    after_commit(_status_mail(group, "approved"))
    return True


def reject(group: Group, staff: User, *, reason: str, now: datetime | None = None) -> None:
    _with_reason(group, staff, reason, now, was=GroupStatus.PENDING, refused="not_pending",
                 to=GroupStatus.REJECTED)


def suspend(group: Group, staff: User, *, reason: str, now: datetime | None = None) -> None:
    """An active group may no longer book or apply, until staff reinstate it."""
    _with_reason(group, staff, reason, now, was=GroupStatus.ACTIVE, refused="not_active",
                 to=GroupStatus.SUSPENDED)


def _with_reason(group: Group, staff: User, reason: str, now: datetime | None, *, was: GroupStatus,
                 refused: str, to: GroupStatus) -> None:
    """Reject a pending group or suspend an active one: a reason is required and the representative is told."""
    now = now or now_utc()
    if group.status != was:
        raise GroupError(refused)
    reason = (reason or "").strip()
    if not reason:
        raise GroupError("reason_required")
    group.status, group.reason = to, reason
    if to == GroupStatus.REJECTED:
        group.renewal_requested_at = None
    _reviewed(group, staff, now)
    record("group", group.id, str(to), actor_id=staff.id, reason=reason)
    db.session.flush()
    after_commit(_status_mail(group, str(to)))


def reinstate(group: Group, staff: User, *, note: str = "", now: datetime | None = None) -> str:
    """Lift a suspension: active again, or expired if its validity ran out meanwhile. Returns the new status."""
    now = now or now_utc()
    if group.status != GroupStatus.SUSPENDED:
        raise GroupError("not_suspended")
    if live_group_of(group.representative_id, excluding=group.id) is not None:
        raise GroupError("representative_taken")
    today = business_date(now)
    still_valid = group.valid_until is not None and group.valid_until >= today
    group.status = GroupStatus.ACTIVE if still_valid else GroupStatus.EXPIRED
    group.reason = ""
    _reviewed(group, staff, now)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        if not _is_live_representative_conflict(exc):
            raise
        raise GroupError("representative_taken") from None
    record("group", group.id, "reinstated", actor_id=staff.id, reason=(note or "").strip(), status=group.status)
    db.session.flush()
    after_commit(_status_mail(group, "reinstated"))
    return group.status


def renewal_opens(group: Group) -> date | None:
    """The first day the representative may ask to renew an active group (None without a validity)."""
    if group.valid_until is None:
        return None
    return group.valid_until - timedelta(days=current_app.config["GROUP_REMINDER_DAYS"])


def may_request_renewal(group: Group, today: date) -> bool:
    """Whether the renew button shows: within the reminder window of an active group, or expired."""
    if group.renewal_requested_at is not None:
        return False
    if group.status == GroupStatus.EXPIRED:
        return True
    opens = renewal_opens(group)
    return group.status == GroupStatus.ACTIVE and opens is not None and today >= opens


def request_renewal(group: Group, user: User, *, now: datetime | None = None) -> None:
    """The representative asks to renew: an active group stays active while staff decide; an expired group
    goes back to pending review (the identity checks run again)."""
    now = now or now_utc()
    if group.representative_id != user.id:
        raise GroupError("not_representative")
    if group.renewal_requested_at is not None and group.status in LIVE_GROUP_STATES:
        raise GroupError("renewal_already_requested")
    today = business_date(now)
    if group.status == GroupStatus.ACTIVE:
        opens = renewal_opens(group)
        if today < opens:
            raise GroupError("renewal_not_open", days=current_app.config["GROUP_REMINDER_DAYS"],
                             date=format_date(opens, "long"))
        group.renewal_requested_at = now
        record("group", group.id, "renewal requested", actor_id=user.id, valid_until=group.valid_until.isoformat())
        db.session.flush()
        return
    if group.status != GroupStatus.EXPIRED:
        raise GroupError("not_renewable")
    if live_group_of(user.id, excluding=group.id) is not None:
        raise GroupError("already_representative")
    group.status, group.renewal_requested_at = GroupStatus.PENDING, now
    group.findings = identity_findings(group.members, excluding=group.id)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        if not _is_live_representative_conflict(exc):
            raise
        raise GroupError("already_representative") from None
    record("group", group.id, "renewal requested", actor_id=user.id, status="expired->pending",
           findings=group.findings)
    db.session.flush()


def approve_renewal(group: Group, staff: User, *, now: datetime | None = None) -> None:
    """Extend an active group's validity by GROUP_VALID_MONTHS from the later of today and its old end.
    (An expired group's renewal is pending: it is approved with `approve`.)"""
    now = now or now_utc()
    if group.status != GroupStatus.ACTIVE or group.renewal_requested_at is None:
        raise GroupError("no_renewal_requested")
    before = group.valid_until
    start = max(business_date(now), before)
    group.valid_until = shift_months(start, current_app.config["GROUP_VALID_MONTHS"])
    group.renewal_requested_at = None
    _reviewed(group, staff, now)
    record("group", group.id, "renewal approved", actor_id=staff.id, before=before.isoformat(),
           valid_until=group.valid_until.isoformat())
    db.session.flush()
    after_commit(_status_mail(group, "renewed"))


# -- the job: renewal reminders and expiry ---------------------------------------------------------

def send_group_reminders_and_expire(now: datetime | None = None) -> dict:
    """Mail each active group's representative once, GROUP_REMINDER_DAYS before its valid_until
    (Group.reminded_for = that valid_until, so once per validity); mark active groups past their
    valid_until expired (audited, mailed). A group whose renewal was requested and not yet approved when
    it runs out goes back to pending review instead. Each group is claimed with FOR UPDATE SKIP LOCKED,
    judged again and committed on its own: two runs at once mail it once."""
    now = now or now_utc()
    today = business_date(now)
    window = today + timedelta(days=current_app.config["GROUP_REMINDER_DAYS"])
    counts = {"reminded": 0, "expired": 0, "to_review": 0}
    candidates = db.session.scalars(
        select(Group.id).where(Group.status == GroupStatus.ACTIVE, Group.valid_until <= window)
        .order_by(Group.valid_until, Group.id)).all()
    db.session.rollback()
    for group_id in candidates:
        group = db.session.scalar(select(Group).where(Group.id == group_id).with_for_update(skip_locked=True)
                                  .execution_options(populate_existing=True))
        if group is None or group.status != GroupStatus.ACTIVE or group.valid_until is None:
            db.session.rollback()
            continue
        if group.valid_until < today:
            if group.renewal_requested_at is not None:
                group.status = GroupStatus.PENDING
                record("group", group.id, "expired", valid_until=group.valid_until.isoformat(), renewal="under review")
                counts["to_review"] += 1
                after_commit(_status_mail(group, "expired_under_review"))
            else:
                group.status = GroupStatus.EXPIRED
                record("group", group.id, "expired", valid_until=group.valid_until.isoformat())
                counts["expired"] += 1
                after_commit(_status_mail(group, "expired"))
        elif group.valid_until <= window and group.reminded_for != group.valid_until \
                and group.renewal_requested_at is None:
            group.reminded_for = group.valid_until
            record("group", group.id, "renewal reminder sent", valid_until=group.valid_until.isoformat())
            counts["reminded"] += 1
            after_commit(_status_mail(group, "reminder"))
        else:
            db.session.rollback()
            continue
        db.session.commit()
    return counts


# What each mail to the representative says in its subject; the body is templates/groups/status_mail.txt.
MAIL_SUBJECTS = {
    "approved": _l("Your group is registered"),
    "rejected": _l("Your group's registration was not approved"),
    "suspended": _l("Your group is suspended"),
    "reinstated": _l("Your group's suspension is lifted"),
    "renewed": _l("Your group's registration is renewed"),
    "reminder": _l("Please renew your group's registration"),
    "expired": _l("Your group's registration has expired"),
    "expired_under_review": _l("Your group's registration has expired: its renewal is being reviewed"),
}


def _status_mail(group: Group, kind: str):
    """The mail to the representative, rendered now (after_commit must not touch the database)."""
    representative = group.representative or db.session.get(User, group.representative_id)
    with force_locale(representative.locale or current_app.config["BABEL_DEFAULT_LOCALE"]):
        subject = str(MAIL_SUBJECTS[kind])
        body = render_template("groups/status_mail.txt", group=group, kind=kind,
                               status=status_label(group.status),
                               link=external_url("groups.detail", group_id=group.id),
                               renew_days=current_app.config["GROUP_REMINDER_DAYS"])
    return partial(send_mail, representative.email, subject, body)
