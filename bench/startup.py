"""How fast the runspan command starts: `runspan --version`, and `runspan runs` on a small
database, median of N runs each, as a user types them (a fresh process every time).

    python bench/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNSPAN = Path(sys.executable).parent / "runspan"


def _median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/runspan.db"
        subprocess.run(
            [str(RUNSPAN), "demo", "--database-url", url, "--json"], check=True, capture_output=True
        )
        python = _median_seconds([sys.executable, "-c", "pass"], args.runs)
        version = _median_seconds([str(RUNSPAN), "--version"], args.runs)
        listing = _median_seconds([str(RUNSPAN), "runs", "--database-url", url], args.runs)
    print(f"Start-up, median of {args.runs} fresh processes")
    print(f"  python -c pass                      {python * 1000:7.0f} ms")
    print(f"  runspan --version                   {version * 1000:7.0f} ms")
    print(f"  runspan runs (22 runs, SQLite)      {listing * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
