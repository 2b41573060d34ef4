"""Demo stages that make models: the demo tokenizer and initial checkpoint, then two CPU trainings on the same
records — BreastGPT with its slide branch, and the comparator that sees each slide as a thumbnail image through
the standard branch (same model config, same seed, same steps)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastgpt.demo.state import forget_other_runs, load_done, manifest_sha, save_done, source_digest, stage_key

# model name -> how slides reach the model (train.config.DataConfig.slide_mode)
MODELS: dict[str, str] = {"breastgpt": "features", "thumbnail": "thumbnail"}
ENCODER_RECIPE = "demo-encoders"  # recipes/demo.py: the encoder pre-training of either model


def model_recipe(name: str) -> str:
    """The recipe of demo model `name`'s language training (recipes/demo.py)."""
    return f"demo-{name}"


def corpus_texts(records_path: Path, volume_depth: int) -> list[str]:
    """What the demo tokenizer is trained on: the text of every corpus message *as the model reads it* — its
    content, its role header (``user\\n`` …) and, for each volume, the frame times the processor writes before
    each temporal patch (``<0.2 seconds>``; the corpus resamples every volume to ``volume_depth`` slices).

    Trained on the contents alone, the tokenizer spelled each frame time in 10 tokens and each role header in 4-5:
    a 7-sequence MRI study carried about 280 tokens of frame times for its 56 visual tokens. In the texts with
    their real frequencies, BPE gives them their own tokens and every sequence with a volume gets shorter.
    """
    from breastgpt.corpus.records import iter_jsonl
    from breastgpt.model.processing import frame_stamp_texts

    stamps = " ".join(frame_stamp_texts(volume_depth))
    texts = []
    for row in iter_jsonl(records_path):
        for message in row["messages"]:
            texts += [f"{message['role']}\n", message["content"]]
        texts += [stamps for medium in row.get("media", []) if medium.get("kind") == "volume"]
    return texts


def slide_feature_stats(paths: list[Path]) -> tuple[Any, Any]:
    """Per-dimension mean and std of the tile features of the given slides (the training slides)."""
    import numpy as np
    import torch

    from breastgpt.pathology.features import load_features

    tiles = np.concatenate([np.asarray(load_features(p).features, dtype=np.float64) for p in paths])
    return torch.from_numpy(tiles.mean(0)), torch.from_numpy(tiles.std(0))


def offset_patch_embedding(model: Any, seed: int, relative: float = 0.5) -> None:
    """Draw the ViT patch-embedding bias at `relative` × the scale of its response to a uniform patch.

    With a zero bias a uniform patch embeds as brightness × (W · 1), and the first LayerNorm is invariant to
    that scale: a randomly initialised ViT cannot tell a bright uniform region from a dark one. Pretrained
    Qwen3-VL weights have long learned this; a demo model trained from scratch for a few hundred CPU steps
    did not (a linear probe on its image tokens read the mammograms' density at chance, while the pixels
    alone separate the four ACR categories). A random bias makes brightness visible from the first step.
    """
    import torch

    proj = model.model.visual.patch_embed.proj
    response = proj.weight.detach().flatten(1).sum(1)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        proj.bias.copy_(torch.randn(proj.bias.shape, generator=generator) * relative * float(response.std()))


def write_initial_checkpoint(folder: Path, texts: list[str], settings: Any, slide_features: list[Path]) -> Path:
    """The `demo` flavour with seeded random weights and a BPE tokenizer trained on the corpus text; the slide
    branch's input projection standardises the training slides' features (`LongNetEncoder.standardise_inputs`).

    The processor keeps its default image sizes: the corpus's 96-px images are resized up to at least 64 × 32 × 32
    pixels before the ViT's 16-px patches, so a patch covers about 6 stored pixels and the selection picks the
    image's tokens among about 70 candidates. At the stored size (6-9 merged tokens an image) the quick demo's model
    read the type of mammographic finding on 64 % of its held-out questions instead of 96 %.
    """
    import torch

    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.model.flavours import demo, demo_tokenizer
    from breastgpt.model.processing import BreastGPTProcessor, qwen_image_processor, qwen_video_processor
    from breastgpt.train.model_setup import seeded_init

    config = demo()
    torch.manual_seed(settings.seed)
    model = BreastGPTForConditionalGeneration(config)
    seeded_init(model, settings.seed)
    offset_patch_embedding(model, settings.seed)
    if slide_features:
        model.model.slide_encoder.standardise_inputs(*slide_feature_stats(slide_features))
    sel = config.selection
    processor = BreastGPTProcessor(
        image_processor=qwen_image_processor(), tokenizer=demo_tokenizer(texts),
        video_processor=qwen_video_processor(), image_budget=sel.image_budget, volume_budget=sel.volume_budget,
        slide_budget=sel.slide_budget, slide_feature_dim=config.slide.feature_dim)
    from breastgpt.artifacts import atomic_dir

    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return folder


def train_slide_features(ctx: Any) -> list[Path]:
    """The feature files of the slides in the training conversations (never a bench slide)."""
    from breastgpt.corpus.records import iter_jsonl

    paths = {p for row in iter_jsonl(ctx.state["task_set"] / "train_conversations.jsonl") for p in row["slides"]}
    return [ctx.state["corpus"] / p for p in sorted(paths)]


def stage_model(ctx: Any) -> dict[str, Any]:
    """The `demo` model flavour (LLM 2 x 128, ViT 2 x 64, LongNet 1 x 64) and a 1,024-token BPE tokenizer."""
    folder = ctx.out / "init"
    # The model and training code decide what this stage and the trainings after it produce (their keys chain
    # through this manifest), so a change to either redoes them, not only a new version number.
    key = stage_key("model", ctx.settings.as_dict(), manifest_sha(ctx.out, "corpus"),
                    (ctx.state["corpus"] / "manifest.json").read_text(), source_digest("breastgpt.model"),
                    source_digest("breastgpt.train"), source_digest("breastgpt.demo"))
    done = load_done(ctx.out, "model", key)
    if done is None:
        write_initial_checkpoint(folder, corpus_texts(ctx.state["corpus"] / "records.jsonl",
                                                          ctx.settings.volume_depth), ctx.settings,
                                 train_slide_features(ctx))
        config = json.loads((folder / "config.json").read_text())
        from breastgpt.model import BreastGPTForConditionalGeneration

        params = sum(p.numel() for p in BreastGPTForConditionalGeneration.from_pretrained(folder).parameters())
        done = {"flavour": "demo", "parameters": params, "vocab": config["text_config"]["vocab_size"]}
        save_done(ctx.out, "model", key, sorted(p for p in folder.iterdir() if p.is_file()), done)
    ctx.state["init"] = folder
    return done


def train_config(ctx: Any, name: str) -> Any:
    """The training of demo model `name`: the `demo-NAME` recipe (recipes/demo.py) with this run's paths and
    settings filled in."""
    from dataclasses import replace

    from breastgpt.train.recipes import get_recipe

    s, corpus = ctx.settings, ctx.state["corpus"]
    base = get_recipe(model_recipe(name))
    return replace(
        base, name=name, seed=s.training_seed, output_dir=str(ctx.out / "runs" / name),
        data=replace(base.data, train=str(ctx.state["task_set"] / "train_conversations.jsonl"),
                     media_root=str(corpus), slide_root=str(corpus), slide_mode=MODELS[name]),
        model=replace(base.model, path=str(ctx.state.get(f"encoders:{name}", ctx.state["init"])),
                      trainable="language" if s.freeze_encoders else "all"),
        optim=replace(base.optim, lr=s.lr),
        schedule=replace(base.schedule, max_steps=s.train_steps, micro_batch_size=s.micro_batch),
        checkpoint=replace(base.checkpoint, every_steps=max(50, s.train_steps // 4)))


def _final_verifies(final: Path) -> bool:
    from breastgpt.artifacts import artifact_problems

    return not artifact_problems(final)


def encoder_config(ctx: Any, name: str) -> Any:
    """The encoder pre-training of demo model `name`: the `demo-encoders` recipe (recipes/demo.py) with this run's
    paths, the model's slide route, the settings' training seed, steps, learning rate and batch (two micro-batches), and
    every image at its stored size: at most `image_long_side` for the corpus's images, `thumbnail_px` for the slide
    thumbnails the comparator reads (a smaller bound would pre-train it on downscaled thumbnails)."""
    from dataclasses import replace

    from breastgpt.train.recipes import get_recipe

    s, corpus = ctx.settings, ctx.state["corpus"]
    base = get_recipe(ENCODER_RECIPE)
    return replace(
        base, name=f"encoders-{name}", seed=s.training_seed, output_dir=str(ctx.out / "runs" / f"encoders-{name}"),
        data=replace(base.data, train=str(ctx.state["task_set"] / "train.jsonl"), media_root=str(corpus),
                     slide_root=str(corpus), slide_mode=MODELS[name], mirror=s.encoder_mirror,
                     image_max_pixels=max(s.image_long_side, s.thumbnail_px) ** 2),
        model=replace(base.model, path=str(ctx.state["init"])),
        optim=replace(base.optim, lr=s.lr),
        schedule=replace(base.schedule, max_steps=s.encoder_steps, micro_batch_size=2 * s.micro_batch),
        checkpoint=replace(base.checkpoint, every_steps=max(50, s.encoder_steps // 2)))


Runner = Callable[[str, Any], "list[float]"]  # (recipe name, config) -> the run's losses


def in_process(progress: bool) -> Runner:
    """Train in this process (`train.loop.train`) on the threads torch has here."""

    def run(recipe: str, config: Any) -> list[float]:
        import torch

        from breastgpt.train.loop import train

        config.logging.progress = progress
        config.threads = torch.get_num_threads()
        return train(config, resume="auto").losses

    return run


def cli_process(threads: int, log: Path, started: Callable[[Any], None] = lambda process: None) -> Runner:
    """Train in another process with the public command, ``breastgpt train run --recipe NAME --set ...`` (the
    differences from the recipe), on `threads` threads, its output appended to `log`. A fresh interpreter, not a
    multiprocessing child: spawn and forkserver children re-import the caller's main module, which re-runs a script
    that calls `run_demo` without an ``if __name__ == "__main__"`` guard; fork after torch has started its OpenMP
    threads can hang."""

    def run(recipe: str, config: Any) -> list[float]:
        import subprocess
        import sys
        from dataclasses import replace

        from breastgpt.train import checkpoint as ckpt
        from breastgpt.train.config import overrides_between
        from breastgpt.train.recipes import get_recipe

        config = replace(config, threads=threads)
        sets = [arg for item in overrides_between(get_recipe(recipe), config) for arg in ("--set", item)]
        command = [sys.executable, "-m", "breastgpt.train.cli", "run", "--recipe", recipe, *sets, "--resume", "auto",
                   "--json"]
        with open(log, "a") as handle:
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
            started(process)
            code = process.wait()
        if code != 0:
            raise RuntimeError(f"`breastgpt train run --recipe {recipe}` for {config.name} exited with status {code} "
                               f"(its log: {log})")
        last = ckpt.list_checkpoints(Path(config.output_dir) / "checkpoints")[-1]
        return list(ckpt.load_trainer_state(last)["history"]["loss"])

    return run


def _run_training(ctx: Any, stage: str, recipe: str, config: Any, key: str, runner: Runner) -> dict[str, Any]:
    """Run `config` (resuming its last checkpoint), or reuse the stage's verified final model; the stage figures:
    steps, first loss and the mean of the last ten."""
    final = Path(config.output_dir) / "final"
    done = load_done(ctx.out, stage, key)
    if done is None or not _final_verifies(final):
        forget_other_runs(Path(config.output_dir), key)
        # the threads are the runner's: set after the stage key, so a different thread count does not redo a
        # finished training
        losses = runner(recipe, config)
        done = {"steps": config.schedule.max_steps, "first_loss": round(losses[0], 3) if losses else None,
                "final_loss_mean10": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 3) if losses else None}
        save_done(ctx.out, stage, key, [final / "manifest.json"], done)
    return done


def pretrain_for(ctx: Any, name: str, runner: Runner) -> dict[str, Any] | None:
    """With `encoder_steps`, pre-train the encoders of demo model `name` on the training labels (the training loop
    with objective=encoders, `encoder_config`) into runs/encoders-NAME/final, which its language training then starts
    from; None when the settings ask for none.

    Each model pre-trains the routes it will see: BreastGPT the vision tower on images and volumes and the slide
    branch on tile features; the comparator the vision tower on images, volumes and slide thumbnails. Pre-training
    per model keeps "same training" literal — each model's whole pipeline, run on its own inputs, and never
    BreastGPT's vision tower on thumbnails it does not see — at the cost of a second pre-training.
    """
    if ctx.settings.encoder_steps <= 0:
        return None
    config = encoder_config(ctx, name)
    stage = f"pretrain {name}"
    key = stage_key("pretrain", name, config.to_dict(), manifest_sha(ctx.out, "model"),
                    manifest_sha(ctx.out, "task set"))
    done = _run_training(ctx, stage, ENCODER_RECIPE, config, key, runner)
    ctx.state[f"encoders:{name}"] = Path(config.output_dir) / "final"
    return {**done, "slide_mode": config.data.slide_mode, "mirror": config.data.mirror}


def train_one(ctx: Any, name: str, runner: Runner) -> dict[str, Any]:
    """Train (or resume, or reuse a verified final model) one of the demo models, after its encoder pre-training."""
    encoders = pretrain_for(ctx, name, runner)
    config = train_config(ctx, name)
    key = stage_key("train", name, config.to_dict(), manifest_sha(ctx.out, "model"),
                    manifest_sha(ctx.out, f"pretrain {name}") if encoders is not None else "")
    done = _run_training(ctx, f"train {name}", model_recipe(name), config, key, runner)
    ctx.state[f"model:{name}"] = Path(config.output_dir) / "final"
    return done if encoders is None else {**done, "encoder_pretraining": encoders}


@dataclass
class _Running:
    """The comparator's trainings, run by a thread of this process through `cli_process`."""

    thread: Any
    log: Path
    threads: int
    outcome: dict[str, Any]


def start_comparator(ctx: Any, threads: int) -> _Running:
    """Start the comparator's pre-training and training in another process (`cli_process`), driven by a thread here
    that keeps the stage records; `finish_comparator` waits for it."""
    import threading
    import time

    folder = ctx.out / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "thumbnail.log"
    log.write_text("")
    outcome: dict[str, Any] = {}

    def keep(process: Any) -> None:
        outcome["process"] = process
        if outcome.get("stopped"):  # stopped before this training began
            process.kill()

    def work() -> None:
        started = time.perf_counter()
        try:
            outcome["done"] = train_one(ctx, "thumbnail", cli_process(threads, log, started=keep))
        except BaseException as error:  # handed to the stage that waits
            outcome["error"] = error
        outcome["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=work, name="comparator", daemon=True)
    thread.start()
    return _Running(thread, log, threads, outcome)


def stop_comparator(running: _Running) -> None:
    """Kill the comparator's current training process and wait for its thread (the parent's training failed)."""
    running.outcome["stopped"] = True
    process = running.outcome.get("process")
    if process is not None and process.poll() is None:
        process.kill()
    running.thread.join()


def finish_comparator(running: _Running) -> tuple[dict[str, Any], float]:
    """Wait for the comparator; its figures and seconds, or a `RuntimeError` naming its log."""
    running.thread.join()
    error = running.outcome.get("error")
    if error is not None or "done" not in running.outcome:
        raise RuntimeError(f"the comparator's training failed: {error} (its log: {running.log})") from error
    return running.outcome["done"], float(running.outcome["seconds"])


def _parallel_threads() -> tuple[int, int] | None:
    """(parent, child) intra-op threads when the two trainings can run side by side, else None (one core)."""
    import torch

    threads = torch.get_num_threads()
    return None if threads < 2 else (threads - threads // 2, threads // 2)


def stage_train_breastgpt(ctx: Any) -> dict[str, Any]:
    """CPU training of BreastGPT on the task set (slides as tile features through the slide branch).

    With the comparator and two or more threads, the comparator trains meanwhile in another process (`cli_process`),
    each training on half the threads. The small model's step gains little from a second thread (two trainings side
    by side on one thread each took 0.26 s a step where one on two threads took 0.17 s: 25 % less time for the pair),
    and every stage key and output stays as it is when they run one after the other.
    """
    import torch

    split = _parallel_threads() if ctx.settings.comparator else None
    if split is None:
        return train_one(ctx, "breastgpt", in_process(True))
    threads = torch.get_num_threads()
    torch.set_num_threads(split[0])
    running = start_comparator(ctx, split[1])
    ctx.state["comparator job"] = running
    try:
        done = train_one(ctx, "breastgpt", in_process(True))
    except BaseException:
        stop_comparator(running)
        ctx.state.pop("comparator job", None)
        raise
    finally:
        torch.set_num_threads(threads)
    return {**done, "threads": split[0], "comparator": f"trained meanwhile in another process on {split[1]} thread(s)"}


def stage_train_thumbnail(ctx: Any) -> dict[str, Any]:
    """The comparator: same model, records, seed and steps; slides as thumbnail images (standard branch)."""
    if not ctx.settings.comparator:
        return {"skipped": f"not part of the {ctx.settings.name} demo"}
    running = ctx.state.pop("comparator job", None)
    if running is None:
        return train_one(ctx, "thumbnail", in_process(True))
    with ctx.progress() as bar:
        bar.add_task("thumbnail (another process): waiting", total=None)
        done, seconds = finish_comparator(running)
    return {**done, "threads": running.threads, "process_seconds": round(seconds, 1),
            "parallel": "trained in another process while BreastGPT trained (`breastgpt train run`, log in "
                        "runs/thumbnail.log); this stage's time is the wait"}


__all__ = ["MODELS", "cli_process", "corpus_texts", "encoder_config", "in_process", "pretrain_for", "stage_model",
           "stage_train_breastgpt", "stage_train_thumbnail", "train_config", "write_initial_checkpoint"]

