"""`breastgpt ask` and `breastgpt serve`: thin wrappers over `Engine` and `create_app`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from breastgpt import RESEARCH_USE_NOTICE

console = Console(stderr=True, soft_wrap=True)  # messages name paths: never break them


def ask(
    question: str = typer.Argument(..., help="The question to ask about the case."),
    model: Path = typer.Option(..., "--model", help="Checkpoint folder (local; nothing is downloaded)."),
    image: list[Path] = typer.Option([], "--image", help="2-D image: DICOM, PNG, JPEG, TIFF, PGM, BMP. Repeatable."),
    volume: Optional[Path] = typer.Option(None, "--volume", help="NIfTI/NRRD file or DICOM series folder."),
    modality: Optional[str] = typer.Option(
        None, "--modality", help="How --image files are prepared: mammography | ultrasound | other (default: from "
                                 "the DICOM Modality tag; rasters: other)."),
    window: Optional[str] = typer.Option(None, "--window", help="Volume window preset (default: the checkpoint's "
                                         "CT / MRI window, as its corpus was built)."),
    slide: Optional[Path] = typer.Option(None, "--slide", help="Whole-slide image, tiled and encoded now."),
    slide_features: Optional[Path] = typer.Option(
        None, "--slide-features", help="Tile-feature HDF5 from `slides extract`, TRIDENT, CLAM or hs2p."),
    tile_mpp: Optional[float] = typer.Option(
        None, "--tile-mpp", help="µm/px of the tiles in --slide-features, when the file does not record it."),
    tile_size_level0: Optional[float] = typer.Option(
        None, "--tile-size-level0", help="Tile side in level-0 pixels (the coords' frame) for --slide-features, "
                                         "when the file does not record it (CLAM feature files)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Tile encoder for --slide (default: the one the "
                                          "checkpoint's slide branch was trained on)."),
    encoder_weights: Optional[Path] = typer.Option(None, "--encoder-weights", help="Local weights for --encoder."),
    mpp: Optional[float] = typer.Option(None, "--mpp", help="µm/px for slides that do not declare it."),
    stage: str = typer.Option("diagnosis", "--stage", help="screening | diagnosis | treatment planning"),
    task: str = typer.Option("open_vqa", "--task", help="closed_vqa | open_vqa | grounding | grounded_caption | report "
                             "(selects the task line of the system prompt, as in training)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy (deterministic)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    explain: Optional[Path] = typer.Option(None, "--explain", help="Write which tokens/tiles were selected here."),
    history: Optional[Path] = typer.Option(
        None, "--history", help="JSON file of earlier turns (user/assistant, media by path; docs/pathway.md)."),
) -> None:
    """Ask the model about one case, from raw files; the answer streams to the terminal."""
    from breastgpt.infer.ask import AskInputs, run_ask
    from breastgpt.io import MedicalFileError

    try:
        inputs = AskInputs(images=list(image), volume=volume, window=window, modality=modality, slide=slide,
                           slide_features=slide_features, encoder=encoder, encoder_weights=encoder_weights, mpp=mpp,
                           tile_mpp=tile_mpp, tile_size_level0=tile_size_level0)
        for chunk in run_ask(model, question, inputs, stage=stage, task=task, max_new_tokens=max_new_tokens,
                             temperature=temperature, device=device, explain=explain, console=console,
                             history=history):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except (MedicalFileError, FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from error
    sys.stdout.write("\n")
    console.print(f"[dim]{RESEARCH_USE_NOTICE}[/dim]")


def predict(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder."),
    records: Path = typer.Option(..., "--records", help="Corpus or bench records (JSONL)."),
    out: Path = typer.Option(..., "--out", help="Output JSONL (ms-swift inference-result lines); resumed if present."),
    corpus_root: Optional[Path] = typer.Option(None, "--corpus-root", help="Folder media paths are relative to "
                                               "(default: the records file's folder)."),
    batch_size: int = typer.Option(4, "--batch-size"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Answer every record with the model, in batches; a re-run continues where the last one stopped."""
    from rich.progress import Progress

    from breastgpt.infer.engine import Engine, GenerationParams
    from breastgpt.infer.predict import predict_records

    engine = Engine.from_pretrained(model, device=device)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("predicting", total=None)
        counts = predict_records(engine, records, out, corpus_root=corpus_root, batch_size=batch_size,
                                 params=GenerationParams(max_new_tokens=max_new_tokens),
                                 progress=lambda done, total: progress.update(task, completed=done, total=total))
    console.print(f"{counts['written']} answered, {counts['skipped']} already done, {counts['total']} records → {out}")
    if counts["preprocessing"]["differences"]:
        console.print("[yellow]warning:[/yellow] the records' media were normalised unlike the model's training "
                      "corpus: " + "; ".join(counts["preprocessing"]["differences"]))


def serve(
    model: Path = typer.Option(..., "--model", help="Checkpoint folder."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, "--port"),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="Keys, one per line (else $BREASTGPT_API_KEY)."),
    media_root: Optional[Path] = typer.Option(None, "--media-root", help="Folder that file:// media may come from."),
    max_batch: int = typer.Option(8, "--max-batch"),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests held at once; more get 429."),
    max_media: int = typer.Option(32, "--max-media", help="Images, volumes and slide feature files per request."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds per request before 504."),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Serve the model with an OpenAI-compatible API (bearer key required; research use only)."""
    import uvicorn

    from breastgpt.infer.engine import Engine
    from breastgpt.serve.app import create_app
    from breastgpt.serve.config import ServeConfig, keys_from_env_or_file

    try:
        config = ServeConfig(model_dir=model, api_keys=keys_from_env_or_file(api_key_file), host=host, port=port,
                             media_root=media_root, max_batch=max_batch, max_queue=max_queue,
                             max_media_per_request=max_media, request_timeout_s=timeout, device=device)
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from error
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]binding to {host}: the API is reachable beyond this machine.")
    engine = Engine.from_pretrained(model, device=device)
    console.print(f"serving {model} on http://{host}:{port}/v1 — {RESEARCH_USE_NOTICE}")
    uvicorn.run(create_app(config, engine), host=host, port=port, log_level="info")
