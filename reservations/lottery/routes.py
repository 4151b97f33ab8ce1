"""The resident's lottery pages: the rounds, a round's public page and its published draw, applying, and
changing or withdrawing an application (listed in My bookings). Draft rounds are staff's alone: "not found"."""
import json
from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import joinedload, selectinload
from wtforms import SelectChoice

from ..extensions import db
from ..i18n import gettext as _
from ..models import ExemptionKind, LotteryApplication, LotteryRound, LotteryRoundRoom, Room, RoundState
from ..public.labels import catalog_lang, current_language
from ..public.routes import row_or_404
from ..services.errors import BookingError
from ..services.exemptions import eligible_kinds
from ..services.groups import acting_groups, lottery_tier
from ..services.lottery import applications as lottery_applications
from ..services.lottery.draw import ALGORITHM
from ..services.lottery.rounds import accepting, live_applications, tier_opens_at
from ..timeutil import business_date, now_utc, shift_months
from . import bp, pages
from .forms import ApplyForm, RankForm, WithdrawForm, chosen_id
from .labels import is_published

CURRENT = (RoundState.OPEN, RoundState.CLOSED, RoundState.DRAWN)
PUBLISHED = (RoundState.PUBLISHED, RoundState.SETTLING, RoundState.RELEASED)
RESULTS_MONTHS_BACK = 2  # published rounds stay on the list until two months after the month they let


def _with_rooms(query):
    return query.options(selectinload(LotteryRound.rooms).joinedload(LotteryRoundRoom.room)
                         .options(joinedload(Room.building), selectinload(Room.divisions)))


def _round_or_404(key: str) -> LotteryRound:
    """A round by its public key; a draft (or an unknown key) is "not found"."""
    round_ = db.session.scalar(_with_rooms(select(LotteryRound).where(LotteryRound.key == key[:64])))
    if round_ is None or round_.state == RoundState.DRAFT:
        abort(404)
    return round_


@bp.get("/")
def index():
    now = now_utc()
    cutoff = shift_months(business_date(now).replace(day=1), -RESULTS_MONTHS_BACK)
    rounds = db.session.scalars(_with_rooms(select(LotteryRound).where(or_(
        LotteryRound.state.in_(CURRENT),
        and_(LotteryRound.state.in_(PUBLISHED), LotteryRound.target_month >= cutoff))))
        .order_by(LotteryRound.target_month, LotteryRound.apply_until, LotteryRound.id)).all()
    current = [r for r in rounds if r.state in CURRENT]
    results = sorted((r for r in rounds if r.state in PUBLISHED), key=lambda r: (r.target_month, r.id), reverse=True)
    return render_template("lottery/index.html", current=current, results=results, now=now)


@bp.get("/<key>/")
def round_page(key: str):
    round_ = _round_or_404(key)
    now = now_utc()
    parties = pages.own_parties(round_, current_user, now) if current_user.is_authenticated else []
    published = is_published(round_)
    yours = {p.pseudonym for p in parties}
    return render_template(
        "lottery/round.html", round=round_, now=now, algorithm=ALGORITHM, published=published,
        counts=lottery_applications.application_counts(round_),
        results=pages.results(round_, yours) if published else None,
        parties=[(p, [pages.ApplicationRow(a, pages.status_of(a, now), False, []) for a in live_applications(p)])
                 for p in parties],
        can_apply=round_.state == RoundState.OPEN and now <= round_.apply_until,
    )


@bp.get("/<key>/publication.json")
def publication(key: str):
    """The published draw, for `flask lottery verify`: the manifest, the revealed secret, the public value, the
    result and its log. Nothing before publication: the secret would let anyone foresee the draw."""
    round_ = _round_or_404(key)
    if not is_published(round_) or not round_.publication:
        abort(404)
    body = json.dumps(round_.publication, ensure_ascii=False, sort_keys=True, indent=2) + "\n"
    return body, 200, {"Content-Type": "application/json; charset=utf-8",
                       "Content-Disposition": f'attachment; filename="{download_name(round_)}"'}


def download_name(round_: LotteryRound) -> str:
    return f"lottery-{round_.key}-publication.json"


# --- applying --------------------------------------------------------------------------------------------


class _Who:
    """One party the resident may apply as: themselves (group None) or a group, with its window and room left."""

    def __init__(self, round_: LotteryRound, user, group, now):
        self.group = group
        self.tier = lottery_tier(group)
        self.opens_at = tier_opens_at(round_, self.tier)
        self.accepting = accepting(round_, self.tier, now)
        party = lottery_applications.find_party(round_, user, group)
        self.applications = live_applications(party) if party is not None else []
        self.left = pages.choices_left(round_, party)
        self.kinds = eligible_kinds(group)


def _choice(value: str, label: str) -> SelectChoice:
    """An option of a select; a Japanese name (a group's, an exemption's) marked so on an English page."""
    lang = catalog_lang(label)
    return SelectChoice(value, label, render_kw={"lang": "ja"} if lang else {})


def _apply_choices(form: ApplyForm, round_: LotteryRound, who: list[_Who]) -> None:
    form.apply_as.choices = [_choice("", _("Myself"))] + [_choice(str(w.group.id), w.group.name)
                                                         for w in who if w.group]
    form.rank.choices = [("", _("The next free rank"))] + [(str(n), str(n))
                                                          for n in range(1, round_.max_applications + 1)]
    kinds: dict[int, ExemptionKind] = {}
    for w in who:
        kinds.update((k.id, k) for k in w.kinds)
    form.exemption.choices = [_choice("", _("None"))] + [
        _choice(str(k.id), f"{k.display_name(current_language())} ({k.rate_pct}%)") for k in kinds.values()]


class _Invalid(Exception):
    """The form's own checks failed: their messages are beside the fields."""


def _apply(form: ApplyForm, round_: LotteryRound, who: list[_Who], now) -> LotteryApplication:
    """File the choice the form asks for, or raise the BookingError that says why not (nothing stored)."""
    if not form.validate():
        raise _Invalid
    groups = {str(w.group.id): w.group for w in who if w.group is not None}
    group = None
    if form.apply_as.data:
        group = groups.get(form.apply_as.data)
        if group is None:
            raise BookingError("not_group_member")
    kind = None
    if form.exemption.data:
        kind_id = chosen_id(form.exemption.data)
        kind = db.session.get(ExemptionKind, kind_id) if kind_id else None
        if kind is None:
            raise BookingError("exemption_not_eligible")
    return lottery_applications.apply(
        round_, current_user._get_current_object(), day=form.day.data, parts=form.parts(), rank=form.chosen_rank(),
        group=group, exemption_kind=kind, exemption_note=form.exemption_note.data or "", now=now)


@bp.route("/<key>/apply", methods=["GET", "POST"])
@login_required
def apply(key: str):
    round_ = _round_or_404(key)
    now = now_utc()
    user = current_user._get_current_object()
    groups = acting_groups(user, business_date(now))
    who = [_Who(round_, user, None, now)] + [_Who(round_, user, g, now) for g in groups]
    form = ApplyForm()
    _apply_choices(form, round_, who)
    status = 200
    if request.method == "POST":
        try:
            application = _apply(form, round_, who, now)
        except _Invalid:
            status = 422
        except BookingError as exc:
            db.session.rollback()
            form.show_refusal(exc)
            status = 422
        else:
            rank = application.rank
            db.session.commit()
            flash(_("Your choice was filed as rank %(rank)d. You can add another, or change or withdraw it in "
                    "My bookings until the close.", rank=rank), "success")
            return redirect(url_for(".apply", key=round_.key))
        round_ = _round_or_404(key)
        who = [_Who(round_, user, None, now)] + [_Who(round_, user, g, now) for g in groups]
    month = round_.target_month
    return render_template("lottery/apply.html", round=round_, form=form, who=who, now=now,
                           first_day=month, last_day=shift_months(month, 1) - timedelta(days=1),
                           open=round_.state == RoundState.OPEN and now <= round_.apply_until), status


# --- changing and withdrawing ----------------------------------------------------------------------------


def _own_application_or_404(application_id: int) -> LotteryApplication:
    """The signed-in user's application, or their group's; anyone else's is "not found"."""
    application = row_or_404(LotteryApplication, application_id)
    if not pages.may_handle(application, current_user, now_utc()):
        abort(404)
    return application


def _back(application_id: int):
    return redirect(url_for("bookings.mine", _anchor=f"lottery-application-{application_id}"))


@bp.post("/applications/<int:application_id>/rank")
@login_required
def change_rank(application_id: int):
    application = _own_application_or_404(application_id)
    form = RankForm()
    try:
        if not form.validate():
            raise BookingError("lottery_rank_taken")
        lottery_applications.change_rank(application, form.rank.data, actor=current_user._get_current_object(),
                                         now=now_utc())
    except BookingError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return _back(application_id)
    db.session.commit()
    flash(_("The rank was changed."), "success")
    return _back(application_id)


@bp.post("/applications/<int:application_id>/withdraw")
@login_required
def withdraw(application_id: int):
    application = _own_application_or_404(application_id)
    WithdrawForm()  # the CSRF token is checked for every POST (CSRFProtect)
    try:
        lottery_applications.withdraw(application, actor=current_user._get_current_object(), now=now_utc())
    except BookingError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return _back(application_id)
    db.session.commit()
    flash(_("The application was withdrawn."), "success")
    return redirect(url_for("bookings.mine", _anchor="lottery-title"))
