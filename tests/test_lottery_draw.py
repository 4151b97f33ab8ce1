"""The draw (services/lottery/draw.py): one party one weight, tiers first, bundles whole, caps held, the same
result whatever order the applications are read in, and a published draw anyone can reproduce.

The expected orders are worked out here with hashlib, from the published formula, not by the module.
"""
import hashlib
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reservations.services.lottery.draw import (
    ALGORITHM,
    Caps,
    Choice,
    DrawError,
    Party,
    commitment,
    draw,
    manifest,
    publication,
    verify,
)

CLOSED = datetime(2027, 3, 10, 15, 0, tzinfo=UTC)
LATER = CLOSED + timedelta(hours=20)
SECRET, PUBLIC = "s3cret-of-round-42", "2027-03-11 宝くじ 123456"


def run(parties, caps: Caps | None = None, *, secret=SECRET, public=PUBLIC):
    document = manifest("room-7/2027-05", parties, caps or Caps())
    return document, draw(document, secret, public, committed_at=CLOSED, public_value_fixed_at=LATER)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_order_is_the_published_formula_and_the_better_tier_draws_first():
    parties = [Party(f"p{n}", tier=n % 2, choices=(Choice(1, (f"s{n}",)),)) for n in range(6)]
    document, result = run(parties)

    digest = sha(json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode())
    seed = sha(digest.encode() + SECRET.encode() + PUBLIC.encode())
    key = {p.id: sha(seed.encode() + p.id.encode()) for p in parties}
    expected = sorted((p.id for p in parties), key=lambda pid: (int(pid[1:]) % 2, key[pid]))
    assert (result.manifest_hash, result.seed, result.order) == (digest, seed, expected)
    assert [result.order.index(p) < 3 for p in ("p0", "p2", "p4")] == [True] * 3  # tier 0 before tier 1


def test_one_slot_goes_to_the_first_in_order_and_the_others_learn_their_position():
    parties = [Party(f"p{n}", tier=0, choices=(Choice(1, ("hall-pm",)),)) for n in range(5)]
    _, result = run(parties)

    assert [(w.party, w.slots) for w in result.wins] == [(result.order[0], ("hall-pm",))]
    assert sorted(result.positions.values()) == [1, 2, 3, 4, 5]


def test_a_bundle_is_won_whole_or_not_at_all():
    parties = [Party("hall", 0, (Choice(1, ("hall-pm",)),)),
               Party("bundle", 0, (Choice(1, ("green-room-pm", "hall-pm")), Choice(2, ("green-room-pm",))))]
    _, result = run(parties)

    wins = {w.party: (w.rank, w.slots) for w in result.wins}
    if result.order[0] == "hall":
        # The bundle lost the hall, so it does not get the green room with it: its second choice is the room alone.
        assert wins == {"hall": (1, ("hall-pm",)), "bundle": (2, ("green-room-pm",))}
    else:
        assert wins == {"bundle": (1, ("green-room-pm", "hall-pm"))}


def test_round_robin_gives_everyone_a_first_win_before_anyone_a_second():
    # Whoever draws first, a's second choice (y) never beats b's first.
    parties = [Party("a", 0, (Choice(1, ("x",)), Choice(2, ("y",)))), Party("b", 0, (Choice(1, ("y",)),)),
               Party("c", 0, (Choice(1, ("z",)), Choice(2, ("w",))))]
    _, result = run(parties)

    wins = {(w.party, w.slots[0]): w.won_in_pass for w in result.wins}
    assert wins == {("a", "x"): 1, ("b", "y"): 1, ("c", "z"): 1, ("c", "w"): 2}


def test_caps_hold_wins_koma_and_holidays():
    many = tuple(Choice(r, (f"d{r}",), koma=2, holiday=r % 2 == 0) for r in range(1, 7))
    _, by_wins = run([Party("a", 0, many)], Caps(wins=2))
    _, by_koma = run([Party("a", 0, many)], Caps(koma=5))
    _, by_holiday = run([Party("a", 0, many)], Caps(holiday_wins=1))

    assert len(by_wins.wins) == 2 and len(by_koma.wins) == 2  # 2 + 2 koma; a third would make 6
    assert [w.rank for w in by_holiday.wins] == [1, 2, 3, 5]  # one holiday choice (2), every weekday one


def test_one_party_one_weight_and_no_party_twice():
    with pytest.raises(DrawError, match="twice"):
        manifest("r", [Party("a", 0, (Choice(1, ("x",)),)), Party("a", 0, (Choice(2, ("y",)),))], Caps())
    with pytest.raises(DrawError, match="same"):
        manifest("r", [Party("a", 0, (Choice(1, ("x",)), Choice(1, ("y",))))], Caps())


def test_a_public_value_fixed_before_the_commitment_is_refused():
    document = manifest("r", [Party("a", 0, (Choice(1, ("x",)),))], Caps())
    with pytest.raises(DrawError, match="before the commitment"):
        draw(document, SECRET, PUBLIC, committed_at=CLOSED, public_value_fixed_at=CLOSED - timedelta(minutes=1))
    with pytest.raises(DrawError, match="missing"):
        draw(document, SECRET, "", committed_at=CLOSED, public_value_fixed_at=LATER)


def published_draw():
    parties = [Party(f"p{n}", n % 2, tuple(Choice(r, (f"s{(n + r) % 4}",)) for r in range(1, 4))) for n in range(8)]
    document, result = run(parties, Caps(wins=2))
    return publication(document, SECRET, PUBLIC, result)


def test_a_published_draw_is_reproduced_and_any_change_to_it_is_found():
    published = published_draw()
    assert published["commitment"] == commitment(SECRET) and published["algorithm"] == ALGORITHM
    assert verify(published) == []

    def changed(edit):
        copy = json.loads(json.dumps(published))
        edit(copy)
        return verify(copy)

    assert any("commitment" in p for p in changed(lambda d: d.update(secret="another")))
    assert any("result" in p for p in changed(lambda d: d["result"]["wins"].pop()))
    assert any("manifest hash" in p for p in changed(lambda d: d["manifest"]["parties"][0].update(tier=9)))
    assert any("result" in p for p in changed(lambda d: d.update(public_value="chosen later")))
    assert any("log" in p for p in changed(lambda d: d["log"].__setitem__(1, d["log"][1] + " ")))


def test_flask_lottery_verify_reproduces_a_published_file_and_says_when_it_does_not(app, tmp_path):
    published = published_draw()
    good, bad = tmp_path / "draw.json", tmp_path / "tampered.json"
    good.write_text(json.dumps(published, ensure_ascii=False), encoding="utf-8")
    published["result"]["order"].reverse()
    bad.write_text(json.dumps(published, ensure_ascii=False), encoding="utf-8")
    runner = app.test_cli_runner()

    ok = runner.invoke(args=["lottery", "verify", str(good)])
    differs = runner.invoke(args=["lottery", "verify", str(bad)])
    garbage = runner.invoke(args=["lottery", "verify", str(tmp_path / "nothing.json")])

    assert ok.exit_code == 0 and published["result_hash"] in ok.output
    assert differs.exit_code == 1 and "differs" in differs.output
    assert garbage.exit_code == 1 and "no round" in garbage.output  # neither a stored round nor a file


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.lists(st.sets(st.sampled_from("abcdefgh"), min_size=1, max_size=3),
                                                      min_size=1, max_size=4)), min_size=1, max_size=8),
       st.integers(0, 2**32 - 1), st.one_of(st.none(), st.integers(1, 3)))
def test_any_round_gives_each_slot_once_only_within_caps_and_ignores_the_reading_order(entries, shuffle, cap):
    parties = [Party(f"party-{n}", tier, tuple(Choice(r, tuple(sorted(slots))) for r, slots in
                                              enumerate(bundles, start=1)))
               for n, (tier, bundles) in enumerate(entries)]
    _, result = run(parties, Caps(wins=cap))
    reread = list(parties)
    random.Random(shuffle).shuffle(reread)
    _, again = run(reread, Caps(wins=cap))

    assert again.canonical() == result.canonical()  # the database's row order cannot matter
    slots = [s for w in result.wins for s in w.slots]
    assert len(slots) == len(set(slots))  # no slot twice
    chosen = {p.id: {c.rank: c.slots for c in p.choices} for p in parties}
    assert all(chosen[w.party][w.rank] == w.slots for w in result.wins)  # only what the party asked for, whole
    assert cap is None or all(sum(w.party == p.id for w in result.wins) <= cap for p in parties)
    tiers = [next(p.tier for p in parties if p.id == party) for party in result.order]
    assert tiers == sorted(tiers)


# -- the tests 4, 5 and 8, with the figures they print (pytest -s; bench/lottery_figures.py prints them too) --

def forty_applications() -> list[Party]:
    """40 applications from 25 parties over 12 slots: fixed inputs, some bundles, two tiers."""
    parties = []
    for n in range(25):
        count = 1 if n < 10 else 2
        choices = tuple(Choice(rank, tuple(sorted({f"s{(n + rank * 5) % 12}", *([f"s{(n * 7) % 12}"] if n % 6 == 0
                                                                              else [])})))
                        for rank in range(1, count + 1))
        parties.append(Party(f"party-{n:02d}", tier=1 + n % 2, choices=choices))
    assert sum(len(p.choices) for p in parties) == 40
    return parties


def test_forty_fixed_applications_give_one_result_hash_whatever_the_reading_order_and_a_bit_changes_it():
    parties = forty_applications()
    _, first = run(parties)
    _, again = run(parties)
    shuffled = [Party(p.id, p.tier, tuple(random.Random(n).sample(p.choices, len(p.choices))))
                for n, p in enumerate(random.Random(7).sample(parties, len(parties)))]
    _, reordered = run(shuffled)
    flipped = bytes([PUBLIC.encode()[0] ^ 1]) + PUBLIC.encode()[1:]  # one bit of the public value
    _, other = run(parties, public=flipped.decode())

    print(f"\ntest 4: 40 applications, result hash {first.result_hash}; again {again.result_hash}; "
          f"rows shuffled {reordered.result_hash}; one bit of the public value changed {other.result_hash}")
    assert first.result_hash == again.result_hash == reordered.result_hash
    assert other.result_hash != first.result_hash and other.order != first.order


def share_won_by_a(extra_choices: int, seeds: int) -> float:
    a = Party("group-a", 1, (Choice(1, ("S",)), *(Choice(r, (f"a{r}",)) for r in range(2, 2 + extra_choices))))
    b = Party("group-b", 1, (Choice(1, ("S",)),))
    document = manifest("fairness", [a, b], Caps())
    wins = 0
    for n in range(seeds):
        result = draw(document, SECRET, f"public-{n}", committed_at=CLOSED, public_value_fixed_at=LATER)
        wins += any(w.party == "group-a" and "S" in w.slots for w in result.wins)
    return wins / seeds


def test_no_gaming_by_volume_two_groups_share_slot_s_evenly_over_10000_seeds_even_after_a_adds_9_choices():
    alone, with_nine_more = share_won_by_a(0, 10_000), share_won_by_a(9, 10_000)

    print(f"\ntest 5: over 10,000 seeds A wins S {alone:.2%}; with 9 more choices {with_nine_more:.2%}")
    assert abs(alone - 0.5) <= 0.02 and abs(with_nine_more - 0.5) <= 0.02


def test_a_tier_1_party_beats_a_tier_2_party_for_the_same_slot_on_1000_of_1000_seeds():
    document = manifest("tiers", [Party("resident-group", 1, (Choice(1, ("S",)),)),
                                  Party("anyone", 2, (Choice(1, ("S",)),))], Caps())
    won = sum(draw(document, SECRET, f"public-{n}", committed_at=CLOSED, public_value_fixed_at=LATER).wins[0].party
              == "resident-group" for n in range(1000))

    print(f"\ntest 8: the tier-1 party won S on {won} of 1,000 seeds")
    assert won == 1000
