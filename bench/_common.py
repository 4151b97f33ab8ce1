"""What every benchmark shares: one JSON line of figures, with the machine it ran on.

`free_port()` and `start_localstripe()` serve the benchmarks that start servers of their own.

`emit(record)` prints the line on stdout and, when BENCH_RESULTS names a file (`make bench` sets it to
bench/results/<date>-<host>.jsonl), appends the same line there, so each run's lines can be committed.
Absolute times on a shared 2-core machine are noise: every benchmark reports ratios measured in the same run.
"""
import json
import os
import platform
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_localstripe() -> tuple[subprocess.Popen, str]:
    """localstripe (the app's fake Stripe) on a free port of 127.0.0.1: the process and its base URL. Its output
    is read on a thread of its own once it has started, so a full pipe never stops it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "reservations.payments.localstripe_server", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    for line in proc.stdout:
        if "Running on" in line:
            break
    else:
        raise SystemExit("localstripe did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, f"http://127.0.0.1:{port}"


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
