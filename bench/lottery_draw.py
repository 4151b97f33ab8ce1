"""The draw of a large round: 5,000 applications of 10 ranked choices each over 600 slots (issue 11, "lottery").

Usage: .venv/bin/python bench/lottery_draw.py [--parties 5000] [--choices 10] [--slots 600]

A party (a resident, or a group) makes one application of the round, with `--choices` ranked choices: so
`--parties 5000 --choices 10` is the issue's 5,000 applications of 10 choices (50,000 choices in all).
Builds the canonical manifest, hashes it, runs the draw and verifies the publication, as the round's close,
draw and `flask lottery verify` do; prints one JSON line (bench/_common.emit): the time of each step, the
wins, and the peak memory (tracemalloc's peak of Python allocations, and the process's peak RSS).
"""
import argparse
import json
import random
import resource
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from _common import emit

from reservations.services.lottery.draw import (
    Caps,
    Choice,
    Party,
    draw,
    manifest,
    manifest_hash,
    publication,
    verify,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=5000)
    parser.add_argument("--choices", type=int, default=10)
    parser.add_argument("--slots", type=int, default=600)
    args = parser.parse_args()
    rng = random.Random(11)
    slots = [f"{room}/2027-06-{day:02d}/{code}" for room in range(1, 99) for day in range(1, 31)
             for code in ("MORNING", "AFTERNOON", "EVENING")][:args.slots]
    parties = [Party(f"{n:016x}", tier=1 if n % 5 == 0 else 2,
                     choices=tuple(Choice(rank, (slot,), holiday=rank % 3 == 0)
                                   for rank, slot in enumerate(rng.sample(slots, args.choices), start=1)))
               for n in range(args.parties)]
    closed = datetime(2027, 4, 10, 15, tzinfo=UTC)

    tracemalloc.start()
    started = time.perf_counter()
    document = manifest("bench-2027-06", parties, Caps(wins=2))
    digest = manifest_hash(document)
    frozen = time.perf_counter()
    result = draw(document, "bench-secret", "2027-04-11 123456", committed_at=closed,
                  public_value_fixed_at=closed + timedelta(hours=1))
    drawn = time.perf_counter()
    published = publication(document, "bench-secret", "2027-04-11 123456", result)
    problems = verify(json.loads(json.dumps(published, ensure_ascii=False)))
    verified = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    emit({
        "bench": "lottery", "applications": args.parties, "choices_per_application": args.choices,
        "choices": args.parties * args.choices, "slots": len(slots), "manifest_hash": digest,
        "wins": len(result.wins), "result_hash": result.result_hash,
        "log_entries": len(result.log), "verified": not problems,
        "manifest_s": round(frozen - started, 3), "draw_s": round(drawn - frozen, 3),
        "publish_and_verify_s": round(verified - drawn, 3), "total_s": round(verified - started, 3),
        "peak_python_mb": round(peak / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    })


if __name__ == "__main__":
    main()
