"""The case report: `case_report.json` and `report.html` — each study's key pictures (images, a volume's middle
frame, a slide's thumbnail with the tiles the model kept), and every answer next to the question and media it came
from. No patient pseudonym, file name or date is written: studies are numbered and dated in days from the first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from breastgpt import RESEARCH_USE_NOTICE
from breastgpt.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text

_TEMPLATE = Path(__file__).with_name("templates") / "case_report.html.jinja"
PREVIEW_SIDE = 384


def _png(pixels: np.ndarray) -> bytes:
    import io

    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _kept_tiles(engine: Any, loaded: Any, study: Any, out: Path, number: int) -> list[str]:
    """Overlay of the slide tiles the model kept (selection depends on the visual input alone)."""
    from breastgpt.infer.engine import Conversation
    from breastgpt.infer.explain import selected_indices, write_slide_overlay

    if not loaded.slides:
        return []
    conversation = Conversation([{"role": "user", "content": [*loaded.parts, {"type": "text", "text": "."}]}],
                                stage=study.stage)
    selections = selected_indices(engine, conversation)["slides"]
    written = []
    for i, (slide, selection) in enumerate(zip(loaded.slides, selections), 1):
        folder = out / "slides" / f"study{number}_{i}"
        folder.mkdir(parents=True, exist_ok=True)
        write_slide_overlay(slide, selection, folder)
        if (folder / "selected_tiles.png").is_file():
            written.append(str((folder / "selected_tiles.png").relative_to(out)))
    return written


def _question_row(step: Any) -> dict[str, Any]:
    from breastgpt.bench.parsing import parse_choice

    row = {"question": step.question.text, "family": step.question.family, "answer": step.answer,
           "carried_forward": step.question.carry}
    if step.question.options:
        chosen = parse_choice(step.answer, list(step.question.options))
        row["options"] = list(step.question.options)
        row["chosen_option"] = None if chosen is None else step.question.options[chosen]
    return row


def _encoder(engine: Any) -> str | None:
    """The tile encoder slide media were read with: the checkpoint's (`slide_config.encoder_id`)."""
    from breastgpt.model.configuration import slide_encoder_id

    return slide_encoder_id(getattr(getattr(engine, "model", None), "config", None))


def build_report(case: Any, steps: list[Any], loaded: list[Any], engine: Any, out: Path, settings: Any) -> dict[str, Any]:
    studies = []
    for number, (study, media) in enumerate(zip(case.ordered(), loaded), 1):
        images = []
        for i, preview in enumerate(media.previews, 1):
            rel = f"images/study{number}_{i}.png"
            atomic_write_bytes(out / rel, _png(preview))
            images.append(rel)
        studies.append({
            "number": number, "stage": study.stage, "modality": study.modality, "day": case.day_of(study),
            "media_kinds": [m.kind for m in study.media], "clinical_text": study.clinical_text,
            "prior_report": study.prior_report, "images": images,
            "kept_tiles": _kept_tiles(engine, media, study, out, number),
            "questions": [_question_row(s) for s in steps if s.study_index == number - 1]})
    return {"format": "breastgpt-case-report", "version": 1, "notice": RESEARCH_USE_NOTICE,
            "model": getattr(engine, "name", "breastgpt"), "settings": {"answer_style": settings.answer_style,
                                                                         "encoder": settings.encoder or _encoder(engine),
                                                                         "max_new_tokens": settings.max_new_tokens},
            "questions": len(steps), "studies": studies}


def render_html(report: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE.read_text(encoding="utf-8")).render(report=report)


def write_report(report: dict[str, Any], out: Path) -> None:
    atomic_write_json(out / "case_report.json", report, sort_keys=False)
    atomic_write_text(out / "report.html", render_html(report))


__all__ = ["build_report", "render_html", "write_report"]
