"""Property-based sweep: every route of app.url_map, any input, never an answer of 500 or more.

Each rule of the URL map is driven with generated path values (for each of its
converters), query strings, form bodies and JSON bodies, with every method the
rule allows, signed out and signed in as a resident and as staff, with CSRF
checks off and on. A rule whose converter has no strategy here fails the test,
so a new route is swept as soon as it exists.

Hypothesis is derandomized (fixed examples, repeatable in CI). Each rule's inputs are
drawn once and sent in every pass (signed out, as a resident, as staff; CSRF off and
on), so both databases take about half a minute together. An exception that escapes
a view (the test app propagates them) counts as a 5xx, with its traceback line.
"""
import importlib
import json
import pkgutil
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict
from werkzeug.routing.converters import IntegerConverter, PathConverter, UnicodeConverter

import reservations
from reservations.extensions import db
from reservations.models import AttentionCase, Role
from reservations.services import booking as booking_service
from reservations.services import rules
from tests.conftest import CHUO_DIVISIONS
from tests.helpers import booking_day

pytestmark = pytest.mark.payments

# Drawn inputs per route and method, besides KNOWN_BAD (every route gets those). Six passes (CSRF off and on,
# three kinds of visitor) of every route: 6 keeps the sweep near two minutes a database on a 2-core machine,
# the longest test of `make test`.
EXAMPLES = {"GET": 6, "POST": 6, "HEAD": 2, "OPTIONS": 1}
HUGE = "9" * 30

# Values a person, a script or a fuzzer might put anywhere.
ODD = [
    "", " ", "x", "0", "1", "-1", "2", str(2**31 - 1), str(2**31), str(2**63), HUGE, "1e999", "NaN", "-0",
    "2026-02-30", "2026-13-01", "0000-01-01", "0001-01-01", "9999-12-31", "99999999999999999999-01",
    "99999999999999999999-01-01", "2026-12", "2026-1", "２０２６-１２", "25:61", "23:59", "09:00", "10:00", "24:00",
    "MORNING", "AFTERNOON", "EVENING", "music_room", "court", "piano", "y", "on", "ja", "en", "xx",
    "tok_x", "tok_visa", "resident", "outside", "<script>alert(1)</script>", "%00", "\x00", "' OR 1=1 --",
    "../../etc/passwd", "//evil.example/", "http://evil.example/", "日本語", "🙂", "\u202e", "a" * 5000,
    "a@b.c", "resident@example.com", "staff@example.com",
]
FIELDS = [
    "date", "month", "capacity", "kind", "building", "equipment", "free_only", "online_only", "divisions", "start",
    "minutes", "expected_price", "token", "email", "password", "confirm", "name", "residency", "locale", "phone",
    "next", "csrf_token", "reason", "note", "lang",
]

values = st.one_of(
    st.sampled_from(ODD),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.dates().map(lambda d: d.isoformat()),
    st.from_regex(r"[0-9]{1,22}-[0-9]{1,3}(-[0-9]{1,3})?", fullmatch=True),
    st.text(max_size=24),
)
# What can travel in a header at all: printable ASCII, no line breaks (an HTTP server refuses the rest).
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
keys = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=12))
pairs = st.lists(st.tuples(keys, values), max_size=6)


def _nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(), values,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
# Bodies the JSON parser itself may choke on: deep nesting, numbers too long for int(), broken text.
raw_json = st.one_of(
    st.builds(_nested, st.sampled_from([2, 100, 1000, 5000, 50_000]), st.sampled_from(["list", "dict"])),
    st.sampled_from(["{", "[]", "null", "1" * 5000, '{"token": ' + "1" * 5000 + "}", '{"token": 1e999}',
                     '"\\ud800"', "\xff\xfe", '{"token": "tok_x"}']),
)

bodies = st.one_of(
    st.builds(lambda p: ("form", MultiDict(p)), pairs),
    st.builds(lambda v: ("json", v), json_values),
    st.builds(lambda t: ("raw_json", t), raw_json),
    st.builds(lambda t: ("raw", t), st.binary(max_size=64)),
)


KNOWN_BAD = [
    ([("month", "99999999999999999999-01")], ("form", MultiDict())),
    ([("date", "99999999999999999999-01-01"), ("month", "0000-01")], ("raw_json", "[[]]")),
    ([], ("raw_json", "1")),
    ([], ("raw_json", '"x"')),
    ([], ("raw_json", _nested(50_000, "list"))),
    ([], ("raw_json", _nested(50_000, "dict"))),
    ([], ("raw_json", '{"token": ' + "1" * 5000 + "}")),
    ([], ("json", {"token": ["tok_x"], "expected_price": 2**80, "date": None})),
    ([], ("json", {"email": {"a": 1}, "password": [None, 2], "name": 1.5, "residency": {"x": []}, "next": {}})),
]
KNOWN_BAD_IDS = [None, str(2**31), str(2**63), "1"]  # None: an id that exists


def path_strategy(converter, ids: list[int]):
    """Values for one URL converter; None when this sweep does not know the converter."""
    if isinstance(converter, IntegerConverter):
        return st.one_of(
            st.sampled_from(ids),
            st.sampled_from([0, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 10**20]),
            st.integers(min_value=-(2**64), max_value=2**64),
        ).map(str)
    if isinstance(converter, PathConverter):
        return st.one_of(st.sampled_from(["site.css", "pay.js", "../config.py", "a/b/c", "%2e%2e/x"]), values)
    if isinstance(converter, UnicodeConverter):
        return values
    return None


@dataclass
class Figures:
    rules: set = field(default_factory=set)
    requests: int = 0
    failures: list = field(default_factory=list)
    webhooks_accepted: list = field(default_factory=list)


@pytest.fixture
def app_config(app_config):
    # Every request reaches its view: the rate limits have their own tests (429 is fine here anyway).
    return {**app_config, "RATELIMIT_ENABLED": False}


@pytest.fixture
def world(make_room, make_hourly_room, make_user, localstripe):
    """A room of each letting, a held booking with its payment, a free confirmed one and a staff case."""
    room = make_room()
    free = make_room("無料の部屋", divisions=[(code, start, end, 0, 0) for code, start, end, *_ in CHUO_DIVISIONS])
    court = make_hourly_room()
    resident = make_user("resident@example.com")
    staff = make_user("staff@example.com", role=Role.STAFF)
    held = booking_service.reserve(resident, room, rules.division_slot(room, booking_day(), ["MORNING"]))
    confirmed = booking_service.reserve(resident, free, rules.division_slot(free, booking_day(), ["EVENING"]))
    db.session.commit()
    case = AttentionCase(booking_id=held.id, building_id=held.room.building_id, reason="late_payment", detail="sweep")
    db.session.add(case)
    db.session.commit()
    return {"users": {"resident": resident, "staff": staff},
            "ids": sorted({room.id, free.id, court.id, held.id, confirmed.id, case.id, 1, 2, 3})}


def _url(rule, path_values: dict, query: list) -> str:
    url = rule.rule
    for name, value in path_values.items():
        url = _fill(url, name, value)
    return url + ("?" + urlencode(query) if query else "")


def _fill(url: str, name: str, value: str) -> str:
    start = url.index("<")
    while True:
        end = url.index(">", start)
        part = url[start + 1:end]
        if part.split(":")[-1] == name:
            return url[:start] + quote(value, safe="/" if "path:" in part else "") + url[end + 1:]
        start = url.index("<", end)


def _send(client, method: str, url: str, body, headers: dict):
    kind, payload = body
    if kind == "form":
        return client.open(url, method=method, data=payload, headers=headers)
    if kind == "json":
        return client.open(url, method=method, json=payload, headers=headers)
    data = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    content_type = "application/json" if kind == "raw_json" else "application/octet-stream"
    return client.open(url, method=method, data=data, content_type=content_type, headers=headers)


def _sign_in(client, session_cookie, user) -> None:
    """Start the request's session afresh: signed out, or signed in as `user` (as session_transaction would
    leave it, without a request context per request). The cookie names the user's session version now."""
    name, serializer = session_cookie
    if user is None:
        client.delete_cookie(name)
        return
    session = {"_user_id": user.get_id(), "_fresh": True}  # "<id>:<session version>" (models/user.py)
    if hasattr(user, "session_version"):
        session["_session_version"] = user.session_version
    client.set_cookie(name, serializer.dumps(session))


def _inputs(rule, method, ids: list[int]) -> list[tuple]:
    """What the sweep sends to one rule with one method: the inputs that once gave 500s, then the generated
    ones, as (path values, query, body, headers).

    Drawn once per rule and method, then sent signed out and signed in as each user, with CSRF off and on:
    Hypothesis is derandomized, so each of those passes was given these same inputs anyway, and drawing
    them six times cost more than sending them.
    """
    strategies = {}
    for name, converter in rule._converters.items():
        strategy = path_strategy(converter, ids)
        assert strategy is not None, f"{rule.rule}: no strategy for the {type(converter).__name__} converter"
        strategies[name] = strategy
    header_values = st.fixed_dictionaries({}, optional={
        "Stripe-Signature": st.one_of(header_text, st.just("t=1,v1=abc"),
                                      st.just(f"t={int(datetime.now(UTC).timestamp())},v1=00")),
        "X-CSRFToken": header_text,
        "Accept-Language": st.sampled_from(["en", "ja", "*", "zz;q=x"]),
    })
    drawn: list[tuple] = []

    @settings(max_examples=EXAMPLES[method], derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(path=st.fixed_dictionaries(strategies), query=pairs, body=bodies, headers=header_values)
    def draw(path, query, body, headers):
        drawn.append((path, query, body, headers))

    # The inputs that once gave 500s are always tried, whatever the generated examples happen to be.
    for n, (query, body) in enumerate(KNOWN_BAD):
        value = KNOWN_BAD_IDS[n % len(KNOWN_BAD_IDS)] or str(ids[0])
        draw = example(path={name: value for name in strategies}, query=query, body=body, headers={})(draw)
    draw()
    return drawn


def _sweep_rule(client, session_cookie, rule, method, user, figures: Figures, inputs: list[tuple]) -> None:
    for path, query, body, headers in inputs:
        url = _url(rule, path, query)
        _sign_in(client, session_cookie, user)
        figures.requests += 1
        try:
            response = _send(client, method, url, body, headers)
        except Exception as exc:  # the test app propagates what would be a 500 in production
            db.session.rollback()
            line = traceback.extract_tb(exc.__traceback__)[-1]
            figures.failures.append((method, rule.rule, url[:200], repr(body)[:200],
                                     f"{type(exc).__name__}: {str(exc)[:200]} at {line.filename}:{line.lineno}"))
            continue
        response.close()  # a static file's answer holds the file open until closed
        webhook = rule.endpoint == "webhooks.stripe_events" and method == "POST"
        if webhook and response.status_code not in (400, 413, 429):
            # Nothing here is signed with the endpoint's secret: every event is refused (413: too big
            # to read), none acted on.
            figures.webhooks_accepted.append((url[:200], repr(body)[:200], response.status_code))
        if response.status_code >= 500:
            figures.failures.append((method, rule.rule, url[:200], repr(body)[:200], response.status_code))
    figures.rules.add(rule.rule)


def test_no_route_answers_500_whatever_it_is_sent(app, client, world):
    figures = Figures()
    users = world["users"]
    rules_ = sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))
    # Hypothesis draws some strings from the constants of the app's modules imported so far: import them all
    # first, so the inputs do not depend on which tests ran before in this process (xdist shares them out).
    # (Not localstripe's runner: a program of its own, never imported by the app.)
    for module in pkgutil.walk_packages(reservations.__path__, "reservations."):
        if module.name != "reservations.payments.localstripe_server":
            importlib.import_module(module.name)
    inputs = {(id(rule), method): _inputs(rule, method, world["ids"]) for rule in rules_ for method in rule.methods}
    session_cookie = (app.config["SESSION_COOKIE_NAME"], app.session_interface.get_signing_serializer(app))
    for csrf in (False, True):
        app.config["WTF_CSRF_ENABLED"] = csrf
        for who in (None, "resident", "staff"):
            user = users.get(who)
            for rule in rules_:
                for method in sorted(rule.methods):
                    _sweep_rule(client, session_cookie, rule, method, user, figures, inputs[id(rule), method])
    app.config["WTF_CSRF_ENABLED"] = False

    all_rules = {r.rule for r in app.url_map.iter_rules()}
    print(f"\nsweep on {db.engine.dialect.name}: {len(figures.rules)}/{len(all_rules)} routes, "
          f"{figures.requests} requests, {len(figures.failures)} 5xx")
    kinds = {}
    for method, rule, url, body, error in figures.failures:
        kinds.setdefault((method, rule, str(error)[:160]), (url, body))
    for (method, rule, error), (url, body) in sorted(kinds.items()):
        print(f"  5xx: {method} {rule} <- {url[:80]} {body[:80]}\n       {error}")
    assert figures.rules == all_rules
    assert not figures.webhooks_accepted, figures.webhooks_accepted[:5]
    assert not figures.failures, json.dumps(figures.failures[:5], default=str, ensure_ascii=False, indent=1)
