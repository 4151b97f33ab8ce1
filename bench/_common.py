"""What every benchmark shares: one JSON line of figures, with the machine it ran on.

`emit(record)` prints the line on stdout and, when BENCH_RESULTS names a file (`make bench` sets it to
bench/results/<date>-<host>.jsonl), appends the same line there, so each run's lines can be committed.
Absolute times on a shared 2-core machine are noise: every benchmark reports ratios measured in the same run.
"""
import json
import os
import platform
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def machine() -> dict:
    """The machine, as a reader of the figures needs it: cores, CPU model, memory, Python, load."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {"host": socket.gethostname(), "cores": os.cpu_count(), "cpu": model,
            "mem_gb": round(mem_kb / 2**20, 1), "python": platform.python_version(),
            "load_1m": round(os.getloadavg()[0], 2)}


def emit(record: dict) -> dict:
    line = {**record, "at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    text = json.dumps(line, ensure_ascii=False)
    print(text, flush=True)
    target = os.environ.get("BENCH_RESULTS")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as out:
            out.write(text + "\n")
    return line
