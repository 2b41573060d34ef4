"""`breastgpt slides …`: describe, extract, overlay, convert-weights. Thin over the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(help="Whole-slide images: describe, tile + encode to feature files, overlays.",
                  no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break them


@app.command()
def describe(slide: Path, mpp: float = typer.Option(None, help="µm/px at level 0, overrides the file"),
             json_out: bool = typer.Option(False, "--json", help="print JSON only")) -> None:
    """Geometry, µm/px, reader and vendor of a slide (no identifiers, no label image)."""
    from breastgpt.io.errors import MedicalFileError
    from breastgpt.io.wsi import open_slide

    try:
        with open_slide(slide, mpp=mpp, require_mpp=False) as reader:
            info = reader.describe()
    except MedicalFileError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if json_out:
        typer.echo(json.dumps(info))
    else:
        for key, value in info.items():
            typer.echo(f"{key}: {value}")


@app.command()
def extract(
    slides: list[Path] = typer.Argument(None, help="slide files (SVS, TIFF, NDPI, …; JPEG/PNG need --mpp)"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    encoder: str = typer.Option("stain-texture-v1", help="tile encoder name (see `slides encoders`)"),
    weights: Path = typer.Option(None, help="local .safetensors weights for gated encoders"),
    mpp: float = typer.Option(None, help="µm/px at level 0, overrides the file (required for JPEG/PNG)"),
    target_mpp: float = typer.Option(0.5, help="tile resolution in µm/px (0.5 ≈ 20×)"),
    tile_size: int = typer.Option(512, help="tile side in pixels at --target-mpp"),
    min_tissue: float = typer.Option(0.25, help="minimum tissue fraction of a kept tile"),
    workers: int = typer.Option(1, help="reader processes (0 = read in the main process)"),
    batch_size: int = typer.Option(32, help="tiles per batch"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    float16: bool = typer.Option(False, "--float16", help="store features as float16"),
    json_out: bool = typer.Option(False, "--json", help="print the run summary as JSON"),
    corpus_sources: str = typer.Option(None, "--corpus-sources",
                                       help="instead of SLIDES: every slide of these `corpus build` sources "
                                            "(name=path,... or a JSON/YAML file), named as the corpus records "
                                            "name them; give the corpus folder as --out"),
    secret_env: str = typer.Option("BREASTGPT_DEID_SECRET", "--secret-env",
                                   help="with --corpus-sources: the variable holding the build's secret"),
) -> None:
    """Tile every slide at a physical resolution, encode the tiles and write one feature file per slide.

    Resumable: verified outputs are skipped; unreadable slides are quarantined and the rest continue.
    With --corpus-sources, feature files get the keyed names of the corpus records (`features/Q….h5`) and no
    slide path or file name is written to the output folder."""
    from breastgpt.pathology.extract import ExtractConfig, extract_slides
    from breastgpt.pathology.tiling import TilingConfig

    config = ExtractConfig(encoder=encoder, weights=str(weights) if weights else None, mpp=mpp,
                           tiling=TilingConfig(target_mpp=target_mpp, tile_size=tile_size,
                                               min_tissue_fraction=min_tissue),
                           workers=workers, batch_size=batch_size, device=device,
                           feature_dtype="float16" if float16 else "float32")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=json_out) as bar:
        tasks: dict[str, int] = {}

        def hook(slide_id: str, done: int, total: int) -> None:
            if slide_id not in tasks:
                tasks[slide_id] = bar.add_task(slide_id, total=total)
            bar.update(tasks[slide_id], completed=done)

        try:
            paths, ids, mpps = _slide_inputs(slides, corpus_sources, secret_env)
            summary = extract_slides(paths, out, config, progress=hook, slide_ids=ids, mpps=mpps,
                                     keyed=corpus_sources is not None)
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
    if json_out:
        typer.echo(json.dumps(summary))
    else:
        counts = summary["counts"]
        typer.echo(f"done {counts['done']}, skipped {counts['skipped']}, quarantined {counts['quarantined']} "
                   f"→ {out / 'run_summary.json'}")
        for slide in summary["slides"]:
            if slide["status"] == "quarantined":
                typer.echo(f"  quarantined {slide['slide']}: {slide['error']['error']}: {slide['error']['problem']}")
    raise typer.Exit(1 if summary["counts"]["quarantined"] else 0)


def _slide_inputs(slides: list[Path] | None, corpus_sources: str | None, secret_env: str) -> tuple:
    """(paths, slide ids, µm/px overrides) from SLIDES or from the corpus sources (keyed ids)."""
    if bool(slides) == bool(corpus_sources):
        raise typer.BadParameter("give slide files or --corpus-sources, not both and not neither")
    if not corpus_sources:
        return slides, None, None
    from breastgpt.corpus.build import BuildError, load_pseudonymizer, parse_sources
    from breastgpt.corpus.slide_jobs import slide_jobs

    try:
        jobs = slide_jobs(parse_sources(corpus_sources), load_pseudonymizer(secret_env))
    except (BuildError, KeyError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not jobs:
        raise typer.BadParameter(f"the sources {corpus_sources!r} hold no slide")
    return [j.path for j in jobs], [j.feature_id for j in jobs], [j.mpp for j in jobs]


@app.command()
def overlay(
    features: Path = typer.Argument(..., help="a feature file from `slides extract`"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    indices: str = typer.Option(None, help="comma-separated tile indices to export"),
    scores: Path = typer.Option(None, help="per-tile scores (JSON list or one number per line)"),
    top: int = typer.Option(0, help="with --scores: export only the top-K tiles to GeoJSON (0 = all)"),
    slide: Path = typer.Option(None, help="the slide, when the feature file holds no thumbnail"),
    mpp: float = typer.Option(None, help="µm/px for --slide if the file lacks it"),
) -> None:
    """QuPath-compatible GeoJSON of chosen tiles (level-0 pixels) and a heatmap PNG over the thumbnail."""
    from breastgpt.pathology.features import load_features
    from breastgpt.pathology.overlay import heatmap_overlay, read_scores, tiles_geojson, write_json, write_png

    if (indices is None) == (scores is None):
        raise typer.BadParameter("give exactly one of --indices or --scores")
    data = load_features(features)
    n = len(data.coords)
    footprint = tuple(int(v) for v in data.attrs["footprint_level0"])
    if indices is not None:
        chosen = np.array([int(v) for v in indices.split(",") if v.strip()], dtype=np.int64)
        if len(chosen) == 0 or chosen.min() < 0 or chosen.max() >= n:
            raise typer.BadParameter(f"indices must lie in 0..{n - 1}")
        values = np.zeros(n)
        values[chosen] = 1.0
        tile_scores = None
    else:
        values = read_scores(scores, n)
        chosen = np.argsort(-values, kind="stable")[:top] if top > 0 else np.arange(n)
        tile_scores = values
    stem = features.stem
    write_json(out / f"{stem}.geojson", tiles_geojson(data.coords, footprint, chosen, tile_scores))
    thumbnail, downsample = _thumbnail(data, slide, mpp)
    write_png(out / f"{stem}.heatmap.png", heatmap_overlay(thumbnail, data.coords, values, footprint, downsample))
    typer.echo(f"{len(chosen)} tiles → {out / (stem + '.geojson')}, {out / (stem + '.heatmap.png')}")


def _thumbnail(data: object, slide: Path | None, mpp: float | None) -> tuple[np.ndarray, tuple[float, float]]:
    if getattr(data, "thumbnail") is not None:
        ds = data.attrs["thumbnail_downsample"]  # type: ignore[attr-defined]
        return data.thumbnail, (float(ds[0]), float(ds[1]))  # type: ignore[attr-defined]
    if slide is None:
        raise typer.BadParameter("the feature file holds no thumbnail; pass --slide")
    from breastgpt.io.wsi import open_slide

    with open_slide(slide, mpp=mpp, require_mpp=False) as reader:
        thumb = reader.thumbnail(1024)
        return thumb, (reader.dimensions[0] / thumb.shape[1], reader.dimensions[1] / thumb.shape[0])


@app.command("convert-weights")
def convert_weights(source: Path, target: Path,
                    key: str = typer.Option(None, help="nested state-dict key, e.g. state_dict")) -> None:
    """Convert a pickle checkpoint to safetensors once (weights_only load, sha256 of both recorded)."""
    from breastgpt.pathology.encoders import convert_checkpoint

    manifest = convert_checkpoint(source, target, key=key)
    typer.echo(json.dumps(manifest, indent=2))


@app.command("encoders")
def list_encoders() -> None:
    """List the registered tile encoders."""
    from breastgpt.pathology.encoders import encoder_names, get_spec

    for name in encoder_names():
        spec = get_spec(name)
        weights = "local weights required" if spec.needs_weights else "no weights"
        typer.echo(f"{name}: {spec.dim}-d, {spec.input_size} px, {weights} — {spec.description} [{spec.licence}]")
