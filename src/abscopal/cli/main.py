"""Entry point: registers the subcommands and turns `AbscopalError` into one line and exit 1."""

from __future__ import annotations

import sys

from abscopal.cli import analyze, cohort, criteria, demo, dvh, measure, suv, synth, y90  # noqa: F401  (registers the commands)
from abscopal.cli._app import app
from abscopal.errors import AbscopalError


def main(argv: list[str] | None = None) -> None:
    """Run the `abscopal` command line; tests call `main([...])` and catch `SystemExit`."""
    try:
        app(args=argv, prog_name="abscopal")  # exits 0, or 2 on bad usage
    except AbscopalError as exc:
        sys.exit(f"abscopal: error: {exc}")  # one line on stderr, status 1
