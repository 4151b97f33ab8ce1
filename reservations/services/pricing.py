"""Prices: integer yen, tax included, always computed here on the server."""
from dataclasses import dataclass, field

from ..models import Letting, Residency, Room
from .rules import Slot, is_holiday

# Residency classes that pay the base fee; everyone else pays the room's multiplier.
BASE_FEE_CLASSES = frozenset({Residency.RESIDENT, Residency.WORKER, Residency.STUDENT})


@dataclass(frozen=True)
class Quote:
    total: int
    holiday: bool
    multiplier_pct: int
    lines: list[dict] = field(default_factory=list)  # [{"item": "MORNING", "amount": 2800}, ...]

    def as_detail(self) -> dict:
        return {"holiday": self.holiday, "multiplier_pct": self.multiplier_pct, "lines": self.lines}


def quote(room: Room, slot: Slot, residency: str) -> Quote:
    """The price of `slot` for a user of `residency`.

    The holiday fee applies on Saturdays, Sundays and Japanese public holidays.
    The non-resident multiplier is applied to the sum and rounded down to the
    yen, so a resident and a non-resident never differ by a fraction.
    """
    holiday = is_holiday(slot.day)
    lines = []
    if room.letting == Letting.DIVISION:
        by_code = {d.code: d for d in room.divisions}
        for code in slot.division_codes:
            division = by_code[code]
            lines.append({"item": code, "amount": division.holiday_fee if holiday else division.weekday_fee})
    else:
        rate = room.holiday_hourly_fee if holiday else room.weekday_hourly_fee
        lines.append({"item": f"{slot.minutes}min", "amount": rate * slot.minutes // room.hourly_unit_minutes})
    base = sum(line["amount"] for line in lines)
    pct = 100 if residency in BASE_FEE_CLASSES else room.nonresident_multiplier_pct
    total = base * pct // 100
    if total != base:
        lines.append({"item": "nonresident", "amount": total - base})
    return Quote(total=total, holiday=holiday, multiplier_pct=pct, lines=lines)
