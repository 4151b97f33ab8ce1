"""Remove the metrics files of processes that are gone from PROMETHEUS_MULTIPROC_DIR (reservations-web's ExecStartPre).

prometheus-client's multiprocess mode keeps one file per process and metric type (counter_1234.db,
histogram_1234.db, ...), and /metrics adds them all up. The directory is shared: the web app's workers and
the scheduler (`flask jobs run`, a unit of its own) both write there. So a starting web app must not empty it
(the running scheduler's files would vanish); it removes only the files whose process no longer runs: the
previous gunicorn's workers, an earlier scheduler. Stdlib only.

    python deploy/clear_dead_metrics.py /run/reservations/metrics
"""
import os
import sys
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now has that number: keep the file, to be safe
        return True
    return True


def clear_dead(directory: Path) -> list[str]:
    """Delete the files of dead processes; return their names."""
    removed = []
    for path in sorted(directory.glob("*.db")):
        _, _, pid = path.stem.rpartition("_")
        if pid.isdigit() and not alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def main(argv: list[str]) -> int:
    given = argv[1] if len(argv) > 1 else os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    directory = Path(given)
    if not given or not directory.is_dir():
        print(f"clear_dead_metrics: {given!r} is not a directory", file=sys.stderr)
        return 1
    removed = clear_dead(directory)
    print(f"clear_dead_metrics: removed {len(removed)} file(s) of ended processes from {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
