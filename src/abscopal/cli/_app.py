"""The typer app, the shared `--json` flag and the one way results are printed."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="abscopal",
    help="Find, measure and explain abscopal responses. For research use only; not for clinical "
    "decision-making.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]


@app.callback()
def _configure(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")
    ] = False,
) -> None:
    """Attach the only log handler (STYLE §10); warnings join the same stream."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(capture=True)


def emit(payload: dict[str, Any], *, as_json: bool, text: str) -> None:
    """Print `payload` as JSON (with --json) or `text` for a person."""
    if as_json:
        typer.echo(json.dumps(payload, default=str))
    else:
        typer.echo(text)
