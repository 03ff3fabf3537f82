"""Run every benchmark in turn and print their tables: `make bench` (or `python bench/run_all.py`).

Each figure also has its own command (`python bench/<name>.py --help`); this is the one-command
way to see them all. The real-browser figures (`bench/e2e.py`) need root for a private network
namespace and Debian's chromium; `bench/capacity.py` uses a private network namespace
when run as root (plain loopback otherwise).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHES = ["render.py", "engine.py", "external.py", "e2e.py", "capacity.py"]


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for name in BENCHES:
        path = here / name
        if not path.exists():
            continue
        print(f"\n=== bench/{name} ===", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, str(path)])
        print(f"(bench/{name}: exit {rc}, {time.monotonic() - t0:.0f} s)", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
