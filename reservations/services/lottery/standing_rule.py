"""A room's standing lottery rule (LotteryRule): what staff set once, and each month's round is made from.

Staff save it from the back office (/staff/lottery/rules/<room>); rounds.default_rule reads it, and
rounds.windows_from_rule turns it into a month's dates. A rule is refused when the dates it would give a month
do not follow each other (applications open, close, the draw, publication, pay-by, release), the same test
rounds.create_round makes, so a saved rule always makes a round.
"""
from datetime import date, time

from ...extensions import db
from ...models import LotteryRule, Room, User, record
from .rounds import CAP_FIELDS, RoundError, windows_from_rule

DAY_FIELDS = ("apply_from_day", "apply_until_day", "draw_day", "publish_day", "pay_by_day", "release_day")
RULE_FIELDS = ("months_ahead", *DAY_FIELDS, "release_time", *CAP_FIELDS)
SUBJECT = "lottery_rule"  # audit: one trail per room ("lottery_rule", room id)
_SAMPLE_MONTH = date(2030, 1, 1)  # the rule's days are 1-28: any month gives the same order


def rule_values(rule: LotteryRule) -> dict:
    """The rule as the form and the audit trail see it: its fields and its tier months ({"1": 3, "2": 2})."""
    return {name: getattr(rule, name) for name in RULE_FIELDS} | {"tier_months": dict(rule.tier_months or {})}


def check(values: dict) -> None:
    """Refuse a rule that names no tier, or whose month would not be a valid round (RoundError)."""
    tier_months = values.get("tier_months") or {}
    if not tier_months:
        raise RoundError("lottery_no_tier")
    trial = LotteryRule(**{name: values[name] for name in RULE_FIELDS}, tier_months=tier_months)
    windows = windows_from_rule(trial, _SAMPLE_MONTH)
    first = min(windows["tier_windows"].values())
    last_tier = max(windows["tier_windows"].values())
    if not (first <= last_tier < windows["apply_until"] < windows["draw_at"] <= windows["publish_at"]
            < windows["pay_by"] <= windows["release_at"]):
        raise RoundError("lottery_window_order")


def _audit_value(value):
    return value.isoformat(timespec="minutes") if isinstance(value, time) else value


def save_rule(room: Room, values: dict, *, staff: User) -> tuple[LotteryRule, bool]:
    """Create or change the room's rule; returns it and whether anything changed. Rounds already made keep
    their own dates and caps. Flushes; the caller commits."""
    values = dict(values)
    values["tier_months"] = {str(tier): int(months) for tier, months in sorted(values["tier_months"].items())
                             if months}
    check(values)
    rule = db.session.get(LotteryRule, room.id)
    created = rule is None
    before = {} if created else rule_values(rule)
    if created:
        rule = LotteryRule(room_id=room.id)
        db.session.add(rule)
    for name in RULE_FIELDS:
        setattr(rule, name, values[name])
    rule.tier_months = values["tier_months"]
    after = rule_values(rule)
    changed = {name: _audit_value(value) for name, value in after.items() if before.get(name, object()) != value}
    if not created and not changed:
        return rule, False
    db.session.flush()
    record(SUBJECT, room.id, "created" if created else "changed", actor_id=staff.id, **changed)
    return rule, True
