"""Shared helpers for benchmarks: peer environments, repeat timing, peak memory.

Peers live in their own virtual environments under `benchmarks/.venvs/` (ignored by git) so their
old pins never touch the project's environment (../shared/BENCHMARKS.md).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

VENVS = Path(__file__).resolve().parent / ".venvs"


def peer_python(name: str, install_steps: Sequence[Sequence[str]]) -> Path | None:
    """Python of the peer environment `name`, created with `install_steps` (pip arguments) once.

    Returns None (and prints why) when the peer cannot be installed here.
    """
    env = VENVS / name
    python = env / "bin" / "python"
    stamp = env / ".installed"
    if stamp.exists():
        return python
    venv.create(env, with_pip=True, clear=True)
    for step in install_steps:
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *step],
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(
                f"peer {name}: `pip install {' '.join(step)}` failed:\n{done.stderr[-2000:]}",
                file=sys.stderr,
            )
            return None
    stamp.touch()
    return python


def median_seconds(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(name: str, ours_s: float, peer_s: float, *, peer: str, note: str = "") -> None:
    """Print one comparison line with the ratio peer/ours."""
    ratio = peer_s / ours_s if ours_s > 0 else float("inf")
    print(
        f"{name}: abscopal {ours_s * 1000:.1f} ms, {peer} {peer_s * 1000:.1f} ms, ratio {ratio:.1f}x {note}".rstrip()
    )
