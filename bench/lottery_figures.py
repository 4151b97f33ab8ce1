"""The lottery's fairness figures (issue tests 4, 5 and 8), from the draw module alone: no database.

Usage: .venv/bin/python bench/lottery_figures.py [--seeds 10000] [--tier-seeds 1000]

- test 4: 40 fixed applications give one result hash, read twice and with every list shuffled; one bit of
  the public value changed gives another;
- test 5: two groups put slot S first; over --seeds public values, the share of draws A wins S, alone and
  after A adds 9 more choices (one party, one weight: it stays near 50 %);
- test 8: a tier-1 party against a tier-2 party for S, on --tier-seeds public values.
Also the time one draw of the 40 applications takes, as draws per second on this machine.
"""
import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reservations.services.lottery.draw import Caps, Choice, Party, draw, manifest  # noqa: E402

CLOSED = datetime(2027, 3, 10, 15, 0, tzinfo=UTC)
LATER = CLOSED + timedelta(hours=20)
SECRET, PUBLIC = "bench-secret", "2027-03-11 123456"


def forty() -> list[Party]:
    rng = random.Random(40)
    parties, left = [], 40
    n = 0
    while left:
        count = min(left, rng.randint(1, 3))
        slots = rng.sample([f"s{k}" for k in range(12)], count)
        parties.append(Party(f"party-{n:02d}", tier=rng.randint(1, 2),
                             choices=tuple(Choice(r, (s,)) for r, s in enumerate(slots, start=1))))
        left -= count
        n += 1
    return parties


def run(parties, public=PUBLIC):
    return draw(manifest("bench", parties, Caps()), SECRET, public, committed_at=CLOSED, public_value_fixed_at=LATER)


def share(extra: int, seeds: int) -> float:
    a = Party("A", 1, (Choice(1, ("S",)), *(Choice(r, (f"a{r}",)) for r in range(2, 2 + extra))))
    document = manifest("fair", [a, Party("B", 1, (Choice(1, ("S",)),))], Caps())
    return sum(any(w.party == "A" and "S" in w.slots for w in
                   draw(document, SECRET, f"p{n}", committed_at=CLOSED, public_value_fixed_at=LATER).wins)
               for n in range(seeds)) / seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10_000)
    parser.add_argument("--tier-seeds", type=int, default=1000)
    args = parser.parse_args()

    parties = forty()
    first, again = run(parties), run(parties)
    shuffled = random.Random(1).sample(parties, len(parties))
    flipped = (bytes([PUBLIC.encode()[0] ^ 1]) + PUBLIC.encode()[1:]).decode()
    print(f"test 4: {sum(len(p.choices) for p in parties)} applications from {len(parties)} parties")
    print(f"  result hash        {first.result_hash}")
    print(f"  read again         {again.result_hash}")
    print(f"  rows shuffled      {run(shuffled).result_hash}")
    print(f"  one bit flipped    {run(parties, flipped).result_hash}")

    started = time.perf_counter()
    alone, more = share(0, args.seeds), share(9, args.seeds)
    print(f"test 5: over {args.seeds:,} seeds A wins S {alone:.2%} alone, {more:.2%} with 9 more choices "
          f"({time.perf_counter() - started:.1f} s)")

    document = manifest("tiers", [Party("T1", 1, (Choice(1, ("S",)),)), Party("T2", 2, (Choice(1, ("S",)),))], Caps())
    won = sum(draw(document, SECRET, f"p{n}", committed_at=CLOSED, public_value_fixed_at=LATER).wins[0].party == "T1"
              for n in range(args.tier_seeds))
    print(f"test 8: the tier-1 party won S on {won:,} of {args.tier_seeds:,} seeds")

    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 1.0:
        run(parties, f"p{n}")
        n += 1
    print(f"speed: {n / (time.perf_counter() - started):,.0f} draws of the 40 applications per second")


if __name__ == "__main__":
    main()
