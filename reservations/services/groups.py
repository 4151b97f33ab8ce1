"""Registered groups (登録団体): who may act for a group, its fee class and its lottery tier.

(Registration, review, renewal and the duplicate-member check are below the core.)
"""
import re
import unicodedata
from datetime import date

from flask import current_app
from sqlalchemy import or_, select

from ..extensions import db
from ..models import Group, GroupMember, GroupStatus, Residency, User

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
    member_of = select(GroupMember.group_id).where(GroupMember.user_id == user.id)
    groups = db.session.scalars(
        select(Group).where(or_(Group.representative_id == user.id, Group.id.in_(member_of)),
                            Group.status == GroupStatus.ACTIVE, Group.valid_until >= today)
        .order_by(Group.name, Group.id)).all()
    return list(groups)


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
