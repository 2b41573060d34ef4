"""The `breastgpt` command line: a thin layer over the Python API (one sub-app per area)."""

from __future__ import annotations

import typer

from breastgpt import __version__

app = typer.Typer(
    name="breastgpt",
    help="BreastGPT — multimodal AI across the breast-cancer care pathway (research software, not a medical device).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    app()
