"""``breastgpt train``: run a recipe, list recipes, show a resolved config.

    breastgpt train run --recipe stage2 --set optim.lr=2e-5 --set data.train=corpus/train.jsonl --output runs/s2
    breastgpt train run --recipe stage2 --output runs/s2 --resume auto
    accelerate launch --config_file recipes/launch/accelerate_zero2.yaml -m breastgpt.train.cli run --recipe stage2
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Stage-1 / stage-2 supervised fine-tuning, full or LoRA, with exact resume.",
                  no_args_is_help=True, add_completion=False)


def resolve_config(recipe: str, overrides: list[str], output: Optional[Path], recipes_dir: Optional[Path]):
    from breastgpt.train.config import apply_overrides
    from breastgpt.train.recipes import get_recipe

    config = apply_overrides(get_recipe(recipe, recipes_dir), overrides)
    if output is not None:
        config.output_dir = str(output)
    return config.check()


@app.command("run")
def run_command(
    recipe: str = typer.Option(..., "--recipe", "-r", help="recipe name (see `breastgpt train recipes`)"),
    overrides: list[str] = typer.Option([], "--set", help="override a config key: section.key=value (repeatable)"),
    resume: Optional[str] = typer.Option(None, "--resume", help="a checkpoint folder, or 'auto' (newest under OUT)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="output folder (default runs/<recipe name>)"),
    recipes_dir: Optional[Path] = typer.Option(None, "--recipes-dir", help="folder of recipe modules"),
    as_json: bool = typer.Option(False, "--json", help="print the run summary as JSON"),
) -> None:
    """Train with a recipe; checkpoints, logs and the final model go under OUT."""
    from breastgpt.train.config import ConfigError

    try:  # the config first: a mistake in it is reported before torch and the models are imported
        config = resolve_config(recipe, overrides, output, recipes_dir)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    from breastgpt.train.loop import NonFiniteLossError, train

    try:
        if as_json:
            config.logging.progress = False
        result = train(config, resume=resume)
    except (ConfigError, NonFiniteLossError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    summary = {"output_dir": str(result.output_dir), "steps": result.steps,
               "first_loss": result.losses[0] if result.losses else None,
               "last_loss": result.losses[-1] if result.losses else None,
               "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
               "final_dir": str(result.final_dir) if result.final_dir else None}
    typer.echo(json.dumps(summary, indent=1) if as_json else
               f"done: {summary['steps']} steps, loss {summary['first_loss']} -> {summary['last_loss']}; "
               f"final model in {summary['final_dir']}")


@app.command("recipes")
def recipes_command(
    recipes_dir: Optional[Path] = typer.Option(None, "--recipes-dir"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the registered recipes."""
    from breastgpt.train.recipes import load_recipes

    names = sorted(load_recipes(recipes_dir))
    typer.echo(json.dumps(names) if as_json else "\n".join(names))


@app.command("show")
def show_command(
    recipe: str = typer.Option(..., "--recipe", "-r"),
    overrides: list[str] = typer.Option([], "--set"),
    recipes_dir: Optional[Path] = typer.Option(None, "--recipes-dir"),
) -> None:
    """Print the resolved config (recipe + overrides) as JSON without training."""
    from breastgpt.train.config import ConfigError, apply_overrides
    from breastgpt.train.recipes import get_recipe

    try:
        config = apply_overrides(get_recipe(recipe, recipes_dir), overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(json.dumps(config.to_dict(), indent=1))


def main() -> None:  # ``python -m breastgpt.train.cli`` (what ``accelerate launch -m`` runs)
    app()


if __name__ == "__main__":
    main()
