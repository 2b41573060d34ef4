"""The command-line surface is frozen: every verb and option, compared with tests/assets/cli_surface.json.

A change to the CLI is deliberate: regenerate the file with
`python -m tests.cli.test_surface --write` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

ASSET = Path(__file__).resolve().parents[1] / "assets" / "cli_surface.json"


def surface() -> dict[str, list[str]]:
    from breastgpt import cli

    cli.register_subapps(list(cli.SUBAPPS))
    root = typer.main.get_command(cli.app)
    found: dict[str, list[str]] = {}

    def walk(command, path: str) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click classes)
            for name, sub in sorted(command.commands.items()):
                walk(sub, f"{path} {name}".strip())
            return
        found[path] = sorted(opt for param in command.params for opt in getattr(param, "opts", []))

    walk(root, "")
    return found


def test_cli_surface_is_unchanged() -> None:
    assert surface() == json.loads(ASSET.read_text())


if __name__ == "__main__" and "--write" in sys.argv:
    ASSET.parent.mkdir(parents=True, exist_ok=True)
    ASSET.write_text(json.dumps(surface(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {ASSET}")
