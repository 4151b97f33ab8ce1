"""Staff pages of the monthly lottery (抽選), under /staff/lottery/: the rounds, a room's standing rule, a
round's steps (open, close, the public value, the draw, publication, cancelling a win), its applications,
and applications taken at the counter.

A member of staff sees a round, and acts on it, only when every room of it is in the buildings they run:
any other round is "not found" (404), as everywhere in the back office; admin see every round. The rules
are services/lottery (rounds.py, applications.py, standing_rule.py); these views read forms, call them and
commit. Every step is in the audit trail, shown on the round's page.
"""
import csv
import io
import re

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import joinedload, selectinload
from wtforms import SelectChoice

from ..backoffice import building_scope, require_building, scoped
from ..extensions import db
from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..models import (
    AuditEntry,
    Booking,
    BookingState,
    Building,
    Group,
    Letting,
    LotteryApplication,
    LotteryParty,
    LotteryRound,
    LotteryRoundRoom,
    LotteryRule,
    Outcome,
    PaymentState,
    Role,
    Room,
    RoundState,
    User,
)
from ..public.labels import building_name, current_language, room_name
from ..public.routes import MAX_ID, row_or_404
from ..services import counter
from ..services.errors import BookingError
from ..services.exemptions import eligible_kinds
from ..services.exports import BOM, safe_cell
from ..services.groups import acting_groups, lottery_tier
from ..services.lottery import applications, rounds, standing_rule
from ..services.lottery.rounds import RoundError
from ..timeutil import business_date, now_utc, shift_months
from . import bp, staff_required
from .counter_forms import resident_choice_label
from .lottery_forms import (
    CAP_LABELS,
    TIER_LABELS,
    TIERS,
    ApplicationFilterForm,
    CancelWinForm,
    NewRoundForm,
    PublicValueForm,
    RoundFilterForm,
    RoundForm,
    RoundRoomsForm,
    RuleForm,
    StepForm,
    counter_form_class,
    round_form_data,
    rule_form_data,
)

ROUND_STATES = {
    RoundState.DRAFT: _l("Draft"),
    RoundState.OPEN: _l("Open for applications"),
    RoundState.CLOSED: _l("Closed (applications frozen)"),
    RoundState.DRAWN: _l("Drawn (not published yet)"),
    RoundState.PUBLISHED: _l("Published: winners paying"),
    RoundState.SETTLING: _l("Settling: the pay-by date has passed"),
    RoundState.RELEASED: _l("Released: what is left is bookable first-come"),
}
OUTCOMES = {
    Outcome.WON: _l("Won"),
    Outcome.LOST: _l("Not won: taken by a party drawn earlier"),
    Outcome.SKIPPED_BY_CAP: _l("Not drawn: the party's caps were reached first"),
    Outcome.UNAVAILABLE: _l("Won, but the slot could not be let"),
    Outcome.CANCELLED: _l("Win cancelled by staff"),
}
NOT_DRAWN = "none"
CHANNELS = {"online": _l("Online"), "counter": _l("At the counter")}
LIST_LIMIT = 200
APPLICATION_LIMIT = 1000
STEPS = ("open", "close", "value", "draw", "publish")


def _label(table: dict, code) -> str:
    return str(table.get(code, code or ""))


@bp.context_processor
def lottery_helpers() -> dict:
    return {"round_state_label": lambda code: _label(ROUND_STATES, code),
            "outcome_label": lambda code: _label(OUTCOMES, code) if code else _("Not drawn yet"),
            "channel_label": lambda code: _label(CHANNELS, code),
            "tier_label": lambda tier: _label(TIER_LABELS, str(tier))}


# -- scope ---------------------------------------------------------------------------------------------

def _rounds_in_scope():
    """The rounds whose every room is in the caller's buildings (all of them for admin)."""
    statement = select(LotteryRound)
    scope = building_scope(current_user)
    if scope is not None:
        outside = (select(LotteryRoundRoom.round_id).join(Room, Room.id == LotteryRoundRoom.room_id)
                   .where(Room.building_id.not_in(list(scope))))
        statement = statement.where(LotteryRound.id.not_in(outside))
    return statement


def _round_or_404(round_id: int, *, lock: bool = False) -> LotteryRound:
    """The round, if every room of it is the caller's; else 404 either way. `lock`: read again under its row
    lock, so that two clicks on one step do not both take it."""
    round_ = row_or_404(LotteryRound, round_id)
    for part in round_.rooms:
        require_building(part.room.building_id)
    if lock:
        round_ = db.session.scalar(select(LotteryRound).where(LotteryRound.id == round_id).with_for_update()
                                   .execution_options(populate_existing=True))
    return round_


def _room_choice(room: Room) -> str:
    return f"{building_name(room.building)} · {room_name(room)}"


def _division_rooms() -> list[tuple[Room, str]]:
    """The rooms let in divisions in the caller's buildings, with their names for a list: what a round lets."""
    statement = scoped(select(Room).join(Building, Building.id == Room.building_id), Room.building_id, current_user)
    rooms = db.session.scalars(statement.where(Room.letting == Letting.DIVISION)
                               .order_by(Room.building_id, Room.id).options(joinedload(Room.building))).all()
    return [(room, _room_choice(room)) for room in rooms]


def _user() -> User:
    return current_user._get_current_object()


# -- the rounds ----------------------------------------------------------------------------------------

@bp.get("/lottery/")
@staff_required
def lottery_rounds():
    form = RoundFilterForm(request.args, states=[(s.value, label) for s, label in ROUND_STATES.items()])
    statement = _rounds_in_scope()
    if form.validate():
        if form.state.data:
            statement = statement.where(LotteryRound.state == form.state.data)
        if form.month.data:
            statement = statement.where(LotteryRound.target_month == form.month.data)
    found = db.session.scalars(statement.order_by(LotteryRound.target_month.desc(), LotteryRound.id.desc())
                               .limit(LIST_LIMIT + 1).options(selectinload(LotteryRound.rooms))).all()
    rows = [(r, applications.application_counts(r)) for r in found[:LIST_LIMIT]]
    rooms = _division_rooms()
    with_rule = set(db.session.scalars(select(LotteryRule.room_id).where(
        LotteryRule.room_id.in_([room.id for room, _label in rooms])))) if rooms else set()
    return render_template("staff/lottery/index.html", form=form, rows=rows, more=len(found) > LIST_LIMIT,
                           limit=LIST_LIMIT, rooms=rooms, with_rule=with_rule), 422 if form.errors else 200


def _next_month_to_set_up(room: Room):
    """The first month whose applications have not opened yet by the room's rule."""
    rule = rounds.default_rule(room)
    return shift_months(business_date(now_utc()).replace(day=1), rule.months_ahead + 1)


def _prefilled(room: Room, month) -> dict:
    """A round's dates and caps for `month` by the room's rule (rounds.default_rule and windows_from_rule)."""
    rule = rounds.default_rule(room)
    values = rounds.windows_from_rule(rule, month)
    values.update({name: getattr(rule, name) for name in rounds.CAP_FIELDS})
    return round_form_data(values)


@bp.route("/lottery/new", methods=["GET", "POST"])
@staff_required
def lottery_new():
    """A new round: first its rooms and month (a GET), then its dates and caps, filled in from the first room's
    rule for that month, each of which staff may change (the POST makes the draft)."""
    rooms = _division_rooms()
    if request.method == "POST":
        form = NewRoundForm(rooms=rooms)
        if form.validate_on_submit():
            try:
                round_ = rounds.create_round(form.chosen_rooms(), form.month.data, staff=_user(), now=now_utc(),
                                             title=form.title.data or "", overrides=form.values())
            except RoundError as exc:
                db.session.rollback()
                form.form_errors.append(exc.message)
            else:
                round_id = round_.id
                db.session.commit()
                flash(_("The round is made, as a draft: check it, then open it for applications."), "success")
                return redirect(url_for(".lottery_round", round_id=round_id), 303)
        chosen = form.chosen_rooms() if not (form.room.errors or form.with_rooms.errors) else []
        return render_template("staff/lottery/new.html", rooms=rooms, form=form, choose=None, chosen=chosen,
                               month=form.month.data), 422
    asked = {key: request.args.getlist(key) for key in ("room", "with_rooms", "month") if key in request.args}
    choose = RoundRoomsForm(request.args if asked else None, rooms=rooms)
    if not asked or not rooms or not choose.validate():
        if not asked and rooms:
            choose.room.data = rooms[0][0].id
            choose.month.data = _next_month_to_set_up(rooms[0][0])
        return render_template("staff/lottery/new.html", rooms=rooms, form=None, choose=choose, chosen=[],
                               month=None), 422 if choose.errors else 200
    chosen = choose.chosen_rooms()
    data = _prefilled(chosen[0], choose.month.data) | {
        "room": chosen[0].id, "with_rooms": [r.id for r in chosen[1:]], "month": choose.month.data}
    form = NewRoundForm(formdata=None, data=data, rooms=rooms)
    return render_template("staff/lottery/new.html", rooms=rooms, form=form, choose=None, chosen=chosen,
                           month=choose.month.data)


@bp.route("/lottery/<int:round_id>/edit", methods=["GET", "POST"])
@staff_required
def lottery_edit(round_id: int):
    round_ = _round_or_404(round_id, lock=request.method == "POST")
    if round_.state not in (RoundState.DRAFT, RoundState.OPEN):
        flash(RoundError("lottery_frozen").message, "info")
        return redirect(url_for(".lottery_round", round_id=round_id), 303)
    if request.method == "POST":
        form = RoundForm()
        if form.validate_on_submit():
            try:
                rounds.update_round(round_, form.values(), staff=_user())
            except RoundError as exc:
                db.session.rollback()
                form.form_errors.append(exc.message)
            else:
                db.session.commit()
                flash(_("The round's dates and caps are saved."), "success")
                return redirect(url_for(".lottery_round", round_id=round_id), 303)
        round_ = _round_or_404(round_id)
    else:
        form = RoundForm(formdata=None, data=_round_values(round_))
    return render_template("staff/lottery/edit.html", round=round_, form=form), 422 if request.method == "POST" else 200


def _round_values(round_: LotteryRound) -> dict:
    values = {name: getattr(round_, name) for name in (*rounds.WINDOW_FIELDS, *rounds.CAP_FIELDS)}
    return round_form_data(values | {"tier_windows": round_.tier_windows or {}})


# -- a room's standing rule ----------------------------------------------------------------------------

@bp.route("/lottery/rules/<int:room_id>", methods=["GET", "POST"])
@staff_required
def lottery_rule(room_id: int):
    room = row_or_404(Room, room_id)
    require_building(room.building_id)
    saved = db.session.get(LotteryRule, room.id)
    if request.method == "POST":
        form = RuleForm()
        if form.validate_on_submit():
            try:
                _rule, changed = standing_rule.save_rule(room, form.values(), staff=_user())
            except RoundError as exc:
                db.session.rollback()
                form.form_errors.append(exc.message)
            else:
                db.session.commit()
                flash(_("The lottery rule is saved. Rounds already made keep their own dates and caps.")
                      if changed else _("Nothing changed."), "success" if changed else "info")
                return redirect(url_for(".lottery_rule", room_id=room_id), 303)
    else:
        form = RuleForm(formdata=None, data=rule_form_data(standing_rule.rule_values(rounds.default_rule(room))))
    example = _example_windows(room, saved)
    return render_template("staff/lottery/rule.html", room=room, form=form, saved=saved is not None,
                           example=example), 422 if request.method == "POST" else 200


def _example_windows(room: Room, saved) -> dict | None:
    """The dates the saved (or usual) rule gives the next month to set up, to show what it means."""
    rule = saved or rounds.default_rule(room)
    month = _next_month_to_set_up(room)
    try:
        return {"month": month, **rounds.windows_from_rule(rule, month)}
    except ValueError:
        return None


# -- a round and its steps -----------------------------------------------------------------------------

def _step_forms(given: dict | None = None) -> dict:
    forms = {name: (PublicValueForm if name == "value" else StepForm)(prefix=name, formdata=None) for name in STEPS}
    forms.update(given or {})
    return forms


def _wins(round_: LotteryRound) -> list[dict]:
    """The wins of a published round (and the wins cancelled or not let), by draw order, with their bookings."""
    found = db.session.scalars(
        select(LotteryApplication).join(LotteryParty, LotteryParty.id == LotteryApplication.party_id)
        .where(LotteryApplication.round_id == round_.id, LotteryApplication.withdrawn_at.is_(None),
               LotteryApplication.outcome.in_([Outcome.WON, Outcome.CANCELLED, Outcome.UNAVAILABLE]))
        .order_by(LotteryParty.position, LotteryApplication.rank)
        .options(selectinload(LotteryApplication.slots), joinedload(LotteryApplication.party))).all()
    return [{"application": a, "bookings": rounds.win_bookings(a)} for a in found]


def booking_status(booking: Booking) -> str:
    """A win's booking in the words of the wins table: paid, waiting until its deadline, or what ended it."""
    if booking.state == BookingState.CONFIRMED:
        payment = booking.payment
        if payment is not None and payment.state in (PaymentState.AUTHORIZED, PaymentState.CAPTURED):
            return _("Paid")
        return _("Confirmed (nothing to pay online)")
    if booking.state == BookingState.HELD:
        from ..filters import tokyo_datetime

        return _("Waiting for payment until %(deadline)s", deadline=tokyo_datetime(booking.hold_expires_at))
    from ..public.labels import state_label

    return state_label(booking.state)


def _history(round_: LotteryRound) -> list[AuditEntry]:
    """The round's audit trail and its applications', oldest first."""
    application_ids = select(LotteryApplication.id).where(LotteryApplication.round_id == round_.id)
    return list(db.session.scalars(
        select(AuditEntry).where(or_(
            and_(AuditEntry.subject == rounds.ROUND, AuditEntry.subject_id == round_.id),
            and_(AuditEntry.subject == applications.APPLICATION, AuditEntry.subject_id.in_(application_ids))))
        .order_by(AuditEntry.at, AuditEntry.id).options(joinedload(AuditEntry.actor))))


def _detail(round_: LotteryRound, forms: dict | None = None, status: int = 200):
    now = now_utc()
    forms = _step_forms(forms)
    published = round_.state in (RoundState.PUBLISHED, RoundState.SETTLING, RoundState.RELEASED)
    wins = _wins(round_) if published else []
    for win in wins:
        a = win["application"]
        if a.outcome == Outcome.WON:
            forms.setdefault(("win", a.id), CancelWinForm(prefix=f"win{a.id}", formdata=None))
    withdrawn = db.session.scalar(select(func.count(LotteryApplication.id)).where(
        LotteryApplication.round_id == round_.id, LotteryApplication.withdrawn_at.is_not(None))) or 0
    return render_template(
        "staff/lottery/round.html", round=round_, now=now, forms=forms, wins=wins, published=published,
        counts=applications.application_counts(round_), withdrawn=withdrawn,
        tiers=[(t, rounds.tier_opens_at(round_, int(t))) for t in TIERS], cap_labels=CAP_LABELS,
        problems=rounds.verify_round(round_) if round_.publication is not None else None,
        history=_history(round_), booking_status=booking_status), status


@bp.get("/lottery/<int:round_id>/")
@staff_required
def lottery_round(round_id: int):
    return _detail(_round_or_404(round_id))


def _step(round_id: int, name: str, act, done: str):
    """One step of the round from its form: refused with the form's errors, or done, committed and said."""
    round_ = _round_or_404(round_id, lock=True)
    form = (PublicValueForm if name == "value" else StepForm)(prefix=name)
    if form.validate_on_submit():
        try:
            act(round_, form, now_utc())
        except BookingError as exc:
            db.session.rollback()
            form.form_errors.append(exc.message)
        else:
            db.session.commit()
            flash(done, "success")
            return redirect(url_for(".lottery_round", round_id=round_id), 303)
    else:
        db.session.rollback()
    return _detail(_round_or_404(round_id), {name: form}, 422)


@bp.post("/lottery/<int:round_id>/open")
@staff_required
def lottery_open(round_id: int):
    return _step(round_id, "open", lambda r, form, now: rounds.open_round(r, staff=_user()),
                 _("The round is open: each tier may apply from its date."))


@bp.post("/lottery/<int:round_id>/close")
@staff_required
def lottery_close(round_id: int):
    def close(round_, form, now):
        if round_.state != RoundState.OPEN:
            raise RoundError("lottery_wrong_state")
        rounds.freeze(round_, now=now, actor_id=current_user.id)

    return _step(round_id, "close", close,
                 _("Applications are closed and frozen: the manifest's hash and the commitment are published."))


@bp.post("/lottery/<int:round_id>/public-value")
@staff_required
def lottery_public_value(round_id: int):
    return _step(round_id, "value", lambda r, form, now: rounds.fix_public_value(
        r, form.value.data, form.source.data, staff=_user(), now=now), _("The public value is fixed."))


@bp.post("/lottery/<int:round_id>/draw")
@staff_required
def lottery_draw(round_id: int):
    return _step(round_id, "draw", lambda r, form, now: rounds.run_draw(r, staff=_user(), now=now),
                 _("The draw is done. Nobody sees its results until they are published."))


@bp.post("/lottery/<int:round_id>/publish")
@staff_required
def lottery_publish(round_id: int):
    return _step(round_id, "publish", lambda r, form, now: rounds.publish(r, staff=_user(), now=now),
                 _("The results are published: every party is told by mail, and each win is a booking to pay by "
                   "its deadline."))


@bp.post("/lottery/<int:round_id>/cancel-win")
@staff_required
def lottery_cancel_win(round_id: int):
    round_ = _round_or_404(round_id, lock=True)
    raw = request.form.get("application", "")
    application = (db.session.get(LotteryApplication, int(raw))
                   if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID else None)
    if application is None or application.round_id != round_.id:
        db.session.rollback()
        flash(_("Choose the win to cancel."), "error")
        return redirect(url_for(".lottery_round", round_id=round_id), 303)
    application_id = application.id
    form = CancelWinForm(prefix=f"win{application_id}")
    if form.validate_on_submit():
        try:
            rounds.cancel_win(application, staff=_user(), reason=form.reason.data, now=now_utc())
        except BookingError as exc:
            db.session.rollback()
            form.form_errors.append(exc.message)
        else:
            db.session.commit()
            flash(_("The win is cancelled, and its bookings with it (a paid one is refunded in full). Those who "
                    "lost its slots are told that they are free."), "success")
            return redirect(url_for(".lottery_round", round_id=round_id), 303)
    else:
        db.session.rollback()
    return _detail(_round_or_404(round_id), {("win", application_id): form}, 422)


# -- the applications ----------------------------------------------------------------------------------

def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def _applications(round_: LotteryRound, form: ApplicationFilterForm | None) -> list[LotteryApplication]:
    statement = (select(LotteryApplication).join(LotteryParty, LotteryParty.id == LotteryApplication.party_id)
                 .join(User, User.id == LotteryParty.user_id).outerjoin(Group, Group.id == LotteryParty.group_id)
                 .where(LotteryApplication.round_id == round_.id))
    status = form.status.data if form is not None else "live"
    if status == "live":
        statement = statement.where(LotteryApplication.withdrawn_at.is_(None))
    elif status == "withdrawn":
        statement = statement.where(LotteryApplication.withdrawn_at.is_not(None))
    if form is not None:
        if form.outcome.data == NOT_DRAWN:
            statement = statement.where(LotteryApplication.outcome.is_(None))
        elif form.outcome.data:
            statement = statement.where(LotteryApplication.outcome == form.outcome.data)
        if form.kind.data == "person":
            statement = statement.where(LotteryParty.group_id.is_(None))
        elif form.kind.data == "group":
            statement = statement.where(LotteryParty.group_id.is_not(None))
        if form.room.data:
            statement = statement.where(LotteryApplication.slots.any(room_id=int(form.room.data)))
        if form.day.data:
            statement = statement.where(LotteryApplication.slots.any(day=form.day.data))
        if form.q.data:
            pattern = _like(form.q.data)
            statement = statement.where(or_(*(column.ilike(pattern, escape="\\") for column in (
                User.name, User.name_kana, User.email, Group.name, Group.name_kana, LotteryParty.pseudonym))))
    return list(db.session.scalars(
        statement.order_by(LotteryParty.position.is_(None), LotteryParty.position, LotteryParty.id,
                           LotteryApplication.rank, LotteryApplication.id)
        .limit(APPLICATION_LIMIT)
        .options(selectinload(LotteryApplication.slots),
                 joinedload(LotteryApplication.party).joinedload(LotteryParty.user),
                 joinedload(LotteryApplication.party).joinedload(LotteryParty.group))))


def _slots_text(application: LotteryApplication) -> str:
    from ..filters import tokyo_date
    from ..public.labels import division_label

    return " + ".join(f"{room_name(s.room)} {tokyo_date(s.start_at)} "
                      f"{'・'.join(division_label(c) for c in s.divisions)}" for s in application.slots)


def _csv(round_: LotteryRound, rows: list[LotteryApplication]) -> Response:
    from ..filters import tokyo_datetime

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_("Application"), _("Pseudonym"), _("Tier"), _("Person"), _("Group"), _("Rank"), _("Choice"),
                     _("Koma"), _("Channel"), _("Outcome"), _("Place in the draw"), _("Filed at"), _("Withdrawn at")])
    for a in rows:
        party = a.party
        writer.writerow([safe_cell(value) for value in (
            a.id, party.pseudonym, party.tier, party.user.name, party.group.name if party.group else "", a.rank,
            _slots_text(a), a.koma, _label(CHANNELS, a.channel), _label(OUTCOMES, a.outcome) if a.outcome else "",
            party.position or "", tokyo_datetime(a.created_at),
            tokyo_datetime(a.withdrawn_at) if a.withdrawn_at else "")])
    filename = f"lottery-{round_.key}-applications.csv"
    return Response((BOM + buffer.getvalue()).encode("utf-8"), mimetype="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


@bp.get("/lottery/<int:round_id>/applications")
@staff_required
def lottery_applications(round_id: int):
    round_ = _round_or_404(round_id)
    outcomes = [(o.value, label) for o, label in OUTCOMES.items()] + [(NOT_DRAWN, _l("Not drawn yet"))]
    form = ApplicationFilterForm(request.args, outcomes=outcomes,
                                 rooms=[(part.room, room_name(part.room)) for part in round_.rooms])
    valid = form.validate()
    rows = _applications(round_, form if valid else None)
    if valid and request.args.get("format") == "csv":
        return _csv(round_, rows)
    csv_args = {**request.args.to_dict(), "format": "csv"} if valid else {"format": "csv"}
    return render_template("staff/lottery/applications.html", round=round_, form=form, rows=rows,
                           limit=APPLICATION_LIMIT, csv_args=csv_args), 200 if valid else 422


# -- applications at the counter ----------------------------------------------------------------------

def _asked_resident() -> User | None:
    raw = request.args.get("user_id", "")
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= MAX_ID:
        return None
    user = db.session.get(User, int(raw))
    return user if user is not None and user.role == Role.RESIDENT and not user.walk_in else None


def _kinds_for(groups: list[Group]) -> list:
    """The exemption kinds the resident may ask for as themselves or for one of their groups."""
    found = {}
    for group in [None, *groups]:
        for kind in eligible_kinds(group):
            found.setdefault(kind.id, kind)
    return sorted(found.values(), key=lambda k: k.code)


def _parties_of(round_: LotteryRound, user: User, groups: list[Group]) -> list[tuple[str, LotteryParty]]:
    out = []
    for group in [None, *groups]:
        party = applications.find_party(round_, user, group)
        if party is not None and rounds.live_applications(party):
            out.append((group.name if group is not None else user.name, party))
    return out


@bp.route("/lottery/<int:round_id>/apply", methods=["GET", "POST"])
@staff_required
def lottery_apply(round_id: int):
    """A resident's application taken at the counter (窓口): find them, then file one ranked choice for them,
    as themselves or for a group they may act for."""
    round_ = _round_or_404(round_id)
    now = now_utc()
    query = request.args.get("q", "").strip()[:100]
    # A walk-in has no account to be told the results by, nor My bookings to pay from.
    residents = [r for r in counter.search_residents(query) if not r.walk_in]
    user = _asked_resident()
    room_parts = [(part.room, room_name(part.room)) for part in round_.rooms]
    form, parties, status = None, [], 200
    if user is not None:
        groups = acting_groups(user, business_date(now))
        kinds = _kinds_for(groups)
        form_class = counter_form_class(room_parts)
        form = form_class() if request.method == "POST" else form_class(formdata=None, data={"party": "self"})
        form.party.choices = [SelectChoice("self", _("As themselves (%(tier)s)", tier=_label(
            TIER_LABELS, str(lottery_tier(None)))))] + [
            SelectChoice(str(g.id), _("For the group %(name)s (%(tier)s)", name=g.name,
                                      tier=_label(TIER_LABELS, str(lottery_tier(g))))) for g in groups]
        locale = current_language()
        form.exemption.choices = [SelectChoice("", _("None"))] + [
            SelectChoice(str(k.id), f"{k.display_name(locale)} ({k.rate_pct}%)") for k in kinds]
        if request.method == "POST":
            status = 422
            if form.validate_on_submit():
                response = _file(round_, user, form, room_parts, groups, kinds, now)
                if response is not None:
                    return response
        parties = _parties_of(round_, user, groups)
    elif request.method == "POST":
        db.session.rollback()
        flash(_("Find the resident first, then choose them."), "error")
        status = 422
    return render_template("staff/lottery/apply.html", round=round_, query=query, residents=residents,
                           searched=len(query) >= 2, user=user, form=form, room_parts=room_parts, parties=parties,
                           accepting={t: rounds.accepting(round_, int(t), now) for t in TIERS},
                           resident_label=resident_choice_label), status


def _file(round_, user, form, room_parts, groups, kinds, now):
    parts = [applications.Part(room.id, tuple(form[f"divisions_{room.id}"].data))
             for room, _name in room_parts if form[f"divisions_{room.id}"].data]
    group = next((g for g in groups if str(g.id) == form.party.data), None)
    kind = next((k for k in kinds if str(k.id) == form.exemption.data), None)
    try:
        application = applications.apply(round_, user, day=form.day.data, parts=parts, rank=form.rank.data,
                                          group=group, exemption_kind=kind,
                                          exemption_note=form.exemption_note.data or "", actor=_user(), now=now)
    except BookingError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        return None
    rank = application.rank
    db.session.commit()
    flash(_("Choice %(rank)d is filed for %(name)s at the counter.", rank=rank,
            name=group.name if group is not None else user.name), "success")
    return redirect(url_for(".lottery_apply", round_id=round_.id, user_id=user.id), 303)
