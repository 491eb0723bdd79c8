"""Run every benchmark (`benchmarks/bench_*.py`) in its own process and print its ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    """Run each benchmark script; non-zero when any failed."""
    here = Path(__file__).resolve().parent
    scripts = sorted(here.glob("bench_*.py"))
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        failed += subprocess.run([sys.executable, str(script)], check=False).returncode != 0
    if not scripts:
        print("no benchmarks found")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
