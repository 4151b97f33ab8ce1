"""The authorisation matrix: every back-office route, under every role and building scope.

Every rule of `app.url_map` under /staff/, /admin/ or /finance/ is requested with every
method it allows, by each actor below. A route added without its role check or its scope
check fails here: nothing in the list is written per route but the values of its path
arguments (PATH_VALUES), and a new argument name fails until it is given one.

The objects the paths name belong to building A. "staff here" runs A; "staff elsewhere"
runs only building B: for them an object of A is "not found" (404, as if it did not
exist), and a list never shows A's marker.
"""
import pytest

from reservations.extensions import db
from reservations.models import Building, Role, Room
from tests.exemptions_helpers import exemption_kind_id, pending_exemption
from tests.groups_helpers import group_of
from tests.helpers import attention_case, suspension_for
from tests.lottery_helpers import draft_round

BACK_OFFICE = ("/staff/", "/admin/", "/finance/")
MARKER = "部屋A-秘密"  # a room name only building A has
# Who may use each part of the back office at all.
ROLES_FOR = {"staff": {Role.STAFF, Role.ADMIN}, "admin": {Role.ADMIN}, "finance": {Role.FINANCE, Role.ADMIN}}
ACTORS = ["anonymous", "resident", "staff here", "staff elsewhere", "finance", "admin"]
# Pages about the ward's own objects, not a building's: any member of staff opens them, whatever they run.
WARD_WIDE = ("/staff/groups/",)
# A path argument's value, by its name: each names an object of building A.
PATH_VALUES = {
    "case_id": lambda world: world["case_id"],
    "building_id": lambda world: world["building_id"],
    "booking_id": lambda world: world["booking_id"],
    "room_id": lambda world: world["room_id"],
    "user_id": lambda world: world["users"]["staff here"],
    "suspension_id": lambda world: suspension_for(world["booking_id"]),  # a no-show of building A's booking
    "division_id": lambda world: db.session.get(Room, world["room_id"]).divisions[0].id,  # room A's MORNING
    "group_id": lambda world: group_of(world["users"]["resident"]),  # a group is the ward's: see WARD_WIDE
    "exemption_id": lambda world: pending_exemption(world["booking_id"]),  # waiting, on a booking of building A
    "kind_id": lambda world: exemption_kind_id(),  # an exemption kind is the ward's: its pages are admin's only
    "round_id": lambda world: draft_round(world["room_id"], world["users"]["staff here"]),  # a round of room A
}


@pytest.fixture
def world(make_room, make_user, resident):
    room = make_room(MARKER)  # in the test building: building A
    other = Building(name="別の会館", name_kana="ベツノカイカン", name_en="Other Hall")
    db.session.add(other)
    case = attention_case(resident, room, "intent pi_A")
    users = {
        "resident": resident,
        "staff here": make_user("here@example.com", role=Role.STAFF, buildings=[room.building]),
        "staff elsewhere": make_user("elsewhere@example.com", role=Role.STAFF, buildings=[other]),
        "finance": make_user("finance@example.com", role=Role.FINANCE),
        "admin": make_user("admin@example.com", role=Role.ADMIN),
    }
    return {"case_id": case.id, "building_id": room.building_id, "booking_id": case.booking_id, "room_id": room.id,
            "users": {name: u.id for name, u in users.items()},
            "ids": {name: u.get_id() for name, u in users.items()}}


def back_office_rules(app):
    return sorted((r for r in app.url_map.iter_rules() if r.rule.startswith(BACK_OFFICE)), key=lambda r: r.rule)


def url_for_rule(rule, world) -> str:
    values = {}
    for name in rule.arguments:
        assert name in PATH_VALUES, f"{rule.rule}: give PATH_VALUES a value for <{name}> (an object of building A)"
        values[name] = PATH_VALUES[name](world)
    return rule.build(values, append_unknown=False)[1]


def sign_in(client, world, actor: str) -> None:
    with client.session_transaction() as session:
        session.clear()
        if actor != "anonymous":
            session["_user_id"] = world["ids"][actor]
            session["_fresh"] = True


def expected(rule, actor: str) -> str:
    part = rule.rule.split("/")[1]
    if actor == "anonymous":
        return "log in"
    role = {"resident": Role.RESIDENT, "staff here": Role.STAFF, "staff elsewhere": Role.STAFF,
            "finance": Role.FINANCE, "admin": Role.ADMIN}[actor]
    if role not in ROLES_FOR[part]:
        return "forbidden"
    if actor == "staff elsewhere" and rule.arguments and not rule.rule.startswith(WARD_WIDE):
        return "not found"
    return "allowed"


def test_every_back_office_route_checks_role_and_building_scope(app, client, world, capsys):
    rules = back_office_rules(app)
    assert {r.endpoint for r in rules} >= {"staff.index", "staff.building_day", "staff.booking",
                                           "staff.attention_list", "staff.resolve", "admin.accounts"}
    checked = []
    shown_in_scope = set()  # the pages that showed A's marker to the staff of A
    # Every GET first, then every POST: a POST may change what a later GET shows (a resolved case).
    for method in ("GET", "POST"):
        for rule in (r for r in rules if method in r.methods):
            url = url_for_rule(rule, world)
            for actor in ACTORS:
                sign_in(client, world, actor)
                response = client.open(url, method=method)
                want = expected(rule, actor)
                got = response.status_code
                where = f"{method} {url} as {actor}: {got}"
                assert got < 500, where
                if want == "log in":
                    assert got == 302 and "/account/login" in response.headers["Location"], where
                elif want == "forbidden":
                    assert got == 403, where
                elif want == "not found":
                    assert got == 404, where
                else:
                    assert got not in (401, 403, 404, 405), where
                if got == 200 and actor == "staff elsewhere":
                    assert MARKER not in response.get_data(as_text=True), f"{where} shows building A's data"
                if got == 200 and actor == "staff here" and MARKER in response.get_data(as_text=True):
                    shown_in_scope.add(rule.rule)
                checked.append((rule.rule, method, actor, want))
    # The lists really show A's data to those who may see it, so the check above can fail.
    assert {"/staff/attention", "/staff/buildings/<int:building_id>/day", "/staff/bookings/<int:booking_id>"} \
        <= shown_in_scope
    routes = {(r, m) for r, m, _, _ in checked}
    with capsys.disabled():
        print(f"\nauthorisation matrix: {len(routes)} route-methods × {len(ACTORS)} actors "
              f"(anonymous, resident, staff in scope, staff out of scope, finance, admin) = {len(checked)} checks")
    assert len(checked) == len(routes) * len(ACTORS)
