"""The lottery draw (抽選): deterministic, published, and reproducible by anyone from what is published.

Nothing here reads the database or a clock: the round's services give it the applications, and it
returns the result and everything needed to check it. The steps, as the round page publishes them:

1. At the close, the applications become a canonical manifest: parties under pseudonyms, choices as
   sorted slot ids, every list in a fixed order, JSON with sorted keys and no spaces. Its SHA-256 is the
   manifest hash. The manifest hash, ALGORITHM and a commitment to a secret (SHA-256 of "commit:" ‖
   secret) are published then.
2. seed = SHA-256(manifest hash ‖ secret ‖ public value), where the public value is fixed after the close
   (e.g. a number staff choose and publish after it). `draw` refuses a public value fixed before the
   commitment: whoever knew both could choose the seed.
3. Each party gets one key, SHA-256(seed ‖ party id), however many choices it files: one party, one
   weight. Parties are ordered by (tier, key): a better tier first, then the key.
4. Round-robin passes: in each pass, each party in that order gets its best remaining choice whose slots
   are all still free and which its caps allow (a bundle of slots is won whole or not at all); a choice it
   can no longer have is dropped. Passes repeat until one assigns nothing.
5. The result hash is SHA-256 of the canonical result (order, wins, positions). `verify` recomputes it,
   and the log of every decision, from the published manifest, the revealed secret and the public value.

No library PRNG is used, and nothing depends on the order the applications were read in: the manifest
sorts everything, and ties cannot occur (keys are distinct SHA-256 values of distinct party ids).
"""
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

ALGORITHM = "reservations-lottery/1"


class DrawError(ValueError):
    pass


@dataclass(frozen=True)
class Choice:
    """One ranked choice: a bundle of slots won whole (e.g. a hall and its 控室 for one afternoon).

    `koma` is how many divisions it takes (for the caps); `holiday` whether it falls on a 土日祝."""

    rank: int
    slots: tuple[str, ...]
    koma: int = 1
    holiday: bool = False


@dataclass(frozen=True)
class Party:
    """One applicant: a person applying as themselves, or one group. `id` is a pseudonym (never a name)."""

    id: str
    tier: int  # lower draws first (e.g. 0: resident groups, 1: everyone else)
    choices: tuple[Choice, ...]


@dataclass(frozen=True)
class Caps:
    """What one party may win in the round (None: no limit)."""

    wins: int | None = None
    koma: int | None = None
    weekday_wins: int | None = None
    holiday_wins: int | None = None


@dataclass(frozen=True)
class Win:
    party: str
    rank: int
    slots: tuple[str, ...]
    won_in_pass: int


@dataclass
class Result:
    manifest_hash: str
    seed: str
    order: list[str]  # party ids in draw order
    wins: list[Win]
    log: list[str] = field(default_factory=list)
    # What became of each choice: (party, rank) -> "won" | "taken" (a slot went to a party drawn earlier)
    # | "cap" (the party's caps were reached first). The log says the same in words; neither is hashed apart.
    outcomes: dict[tuple[str, int], str] = field(default_factory=dict)

    @property
    def positions(self) -> dict[str, int]:
        """Each party's place in the draw order, from 1: what a loser is told."""
        return {party: n for n, party in enumerate(self.order, start=1)}

    def canonical(self) -> dict:
        return {"algorithm": ALGORITHM, "manifest_hash": self.manifest_hash, "seed": self.seed,
                "order": self.order,
                "wins": [{"party": w.party, "rank": w.rank, "slots": list(w.slots), "pass": w.won_in_pass}
                         for w in self.wins]}

    @property
    def result_hash(self) -> str:
        return sha256_hex(canonical_json(self.canonical()))


def canonical_json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def commitment(secret: str) -> str:
    """What is published at the close, before the public value is fixed: it binds the secret revealed later."""
    return sha256_hex(b"commit:" + secret.encode("utf-8"))


def manifest(round_key: str, parties: list[Party], caps: Caps) -> dict:
    """The canonical manifest: everything the draw depends on, in an order that does not depend on the reading.

    A party's choices are sorted by rank, a choice's slots by id, the parties by id. Two choices of one
    party with the same rank are refused: the draw could not tell which comes first."""
    seen: set[str] = set()
    rows = []
    for party in sorted(parties, key=lambda p: p.id):
        if party.id in seen:
            raise DrawError(f"party {party.id} appears twice: one party, one entry")
        seen.add(party.id)
        ranks = [c.rank for c in party.choices]
        if len(set(ranks)) != len(ranks):
            raise DrawError(f"party {party.id} ranks two choices the same")
        rows.append({"party": party.id, "tier": party.tier, "choices": [
            {"rank": c.rank, "slots": sorted(c.slots), "koma": c.koma, "holiday": c.holiday}
            for c in sorted(party.choices, key=lambda c: c.rank)]})
    return {"algorithm": ALGORITHM, "round": round_key, "caps": {
        "wins": caps.wins, "koma": caps.koma, "weekday_wins": caps.weekday_wins, "holiday_wins": caps.holiday_wins},
        "parties": rows}


def manifest_hash(document: dict) -> str:
    return sha256_hex(canonical_json(document))


def seed_of(manifest_digest: str, secret: str, public_value: str) -> str:
    return sha256_hex(manifest_digest.encode("ascii") + secret.encode("utf-8") + public_value.encode("utf-8"))


def party_key(seed: str, party_id: str) -> str:
    return sha256_hex(seed.encode("ascii") + party_id.encode("utf-8"))


def _allowed(choice: dict, won: list[dict], caps: dict) -> bool:
    holiday = sum(1 for c in won if c["holiday"])
    return ((caps["wins"] is None or len(won) < caps["wins"])
            and (caps["koma"] is None or sum(c["koma"] for c in won) + choice["koma"] <= caps["koma"])
            and (caps["holiday_wins"] is None or not choice["holiday"] or holiday < caps["holiday_wins"])
            and (caps["weekday_wins"] is None or choice["holiday"] or len(won) - holiday < caps["weekday_wins"]))


def _assign(document: dict, seed: str) -> Result:
    """Steps 3 and 4 on a manifest, with a log of every decision."""
    parties = {row["party"]: row for row in document["parties"]}
    keys = {party: party_key(seed, party) for party in parties}
    order = sorted(parties, key=lambda party: (parties[party]["tier"], keys[party]))
    remaining = {party: list(parties[party]["choices"]) for party in order}
    won: dict[str, list[dict]] = {party: [] for party in order}
    taken: set[str] = set()
    wins: list[Win] = []
    outcomes: dict[tuple[str, int], str] = {}
    log = [f"{ALGORITHM}: {len(order)} parties; seed {seed}"]
    log += [f"order {n}: {party} tier {parties[party]['tier']} key {keys[party]}"
            for n, party in enumerate(order, start=1)]
    passes = 0
    while True:
        passes += 1
        assigned = 0
        for party in order:
            while remaining[party]:
                choice = remaining[party].pop(0)
                if taken.intersection(choice["slots"]):
                    log.append(f"pass {passes}: {party} choice {choice['rank']}: a slot is taken")
                    outcomes[(party, choice["rank"])] = "taken"
                    continue
                if not _allowed(choice, won[party], document["caps"]):
                    log.append(f"pass {passes}: {party} choice {choice['rank']}: over the party's caps")
                    outcomes[(party, choice["rank"])] = "cap"
                    continue
                outcomes[(party, choice["rank"])] = "won"
                taken.update(choice["slots"])
                won[party].append(choice)
                wins.append(Win(party, choice["rank"], tuple(choice["slots"]), passes))
                log.append(f"pass {passes}: {party} wins choice {choice['rank']}: {' + '.join(choice['slots'])}")
                assigned += 1
                break
        if not assigned:
            log.append(f"pass {passes}: nothing left to assign")
            return Result(manifest_hash=manifest_hash(document), seed=seed, order=order, wins=wins, log=log,
                          outcomes=outcomes)


def draw(document: dict, secret: str, public_value: str, *, committed_at: datetime,
         public_value_fixed_at: datetime) -> Result:
    """The draw of a closed round's manifest. Refused when the public value was fixed before the commitment."""
    if document.get("algorithm") != ALGORITHM:
        raise DrawError(f"this manifest is for {document.get('algorithm')!r}, not {ALGORITHM}")
    if not public_value:
        raise DrawError("the public value is missing")
    if public_value_fixed_at <= committed_at:
        raise DrawError("the public value was fixed before the commitment was published: it could have been chosen")
    return _assign(document, seed_of(manifest_hash(document), secret, public_value))


def publication(document: dict, secret: str, public_value: str, result: Result) -> dict:
    """What the round's page publishes after the draw: enough for anyone to run `verify`."""
    return {"algorithm": ALGORITHM, "manifest": document, "manifest_hash": result.manifest_hash,
            "commitment": commitment(secret), "secret": secret, "public_value": public_value,
            "result": result.canonical(), "result_hash": result.result_hash, "log": result.log}


def verify(published: dict) -> list[str]:
    """Recompute a published draw; returns what does not hold (empty: the draw is reproduced exactly)."""
    problems = []
    document = published.get("manifest") or {}
    if published.get("algorithm") != ALGORITHM:
        return [f"algorithm {published.get('algorithm')!r} is not {ALGORITHM}"]
    digest = manifest_hash(document)
    if digest != published.get("manifest_hash"):
        problems.append("the manifest does not hash to the published manifest hash")
    if commitment(published.get("secret", "")) != published.get("commitment"):
        problems.append("the revealed secret does not match the commitment published at the close")
    result = _assign(document, seed_of(digest, published.get("secret", ""), published.get("public_value", "")))
    if result.canonical() != published.get("result"):
        problems.append("the published result differs from the draw reproduced from the inputs")
    if result.result_hash != published.get("result_hash"):
        problems.append("the published result hash differs from the reproduced one")
    log = published.get("log")
    if log != result.log:
        pairs = zip(log or [], result.log, strict=False)
        changed = next((n for n, (a, b) in enumerate(pairs, start=1) if a != b),
                       min(len(log or []), len(result.log)) + 1)
        problems.append(f"the published log differs from the reproduced one (from entry {changed})")
    return problems
