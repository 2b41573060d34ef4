"""`breastgpt case run`: walk one patient's studies stage by stage with the model and write the case report.

Each study is asked its stage's questions — the ones the pathway records train (`corpus/templates/data/pathway.json`):
BI-RADS on screening, benign or malignant on diagnostic work-up, receptor status and the treatment question it
raises on the biopsy slide; any other study an open description. Every request carries the system prompt of the
study's own stage and, as earlier conversation turns, each earlier study's media, question and the model's answer
— the layout of the multi-turn pathway records the model is trained on.

Answers are saved after each question (`out/.state/answers.json`, keyed by the case file, the checkpoint and the
settings), so an interrupted run resumes where it stopped; the report is written when every question is answered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from breastgpt.artifacts import atomic_write_json
from breastgpt.case.schema import CASE_FILE, Case, CaseStudy, load_case
from breastgpt.corpus.pathway import closed_question, pathway_templates

STATE = Path(".state") / "answers.json"
OPEN_QUESTION = "Describe the findings of this {modality} study."


@dataclass(frozen=True)
class Question:
    text: str
    family: str  # closed_vqa | open_vqa
    options: tuple[str, ...] = ()
    carry: bool = True  # becomes a turn of the history of later studies


@dataclass(frozen=True)
class CaseSettings:
    encoder: str | None = None  # tile encoder for `slide` media: None = the checkpoint's (another one is refused)
    encoder_weights: str | None = None
    slide_mpp: float | None = None  # µm/px for slides whose file does not record it
    max_new_tokens: int = 64
    answer_style: str = "letter"  # closed questions: "letter" or "text" (as the checkpoint's corpus was built)
    device: str | None = None


def study_questions(study: CaseStudy, answer_style: str = "letter") -> list[Question]:
    """The questions asked about one study (in order)."""
    data = pathway_templates()
    if study.stage == "treatment" and study.modality == "pathology":
        return [Question(closed_question(t["question"], [t["options"]["true"], t["options"]["false"]], answer_style),
                         "closed_vqa", (t["options"]["true"], t["options"]["false"]), carry=False)
                for t in data["templates"]]
    spec = data["turns"].get(study.stage, {}).get(study.modality)
    if spec is not None:
        return [Question(spec["question"], "open_vqa")]
    return [Question(OPEN_QUESTION.format(modality=study.modality), "open_vqa")]


def _context(study: CaseStudy, question: Question) -> str:
    notes = [f"Clinical information: {study.clinical_text}"] if study.clinical_text else []
    notes += [f"Prior report: {study.prior_report}"] if study.prior_report else []
    return "\n".join([*notes, question.text])


@dataclass
class LoadedStudy:
    parts: list[dict[str, Any]]  # processor parts of the study's media
    previews: list[np.ndarray]  # RGB pictures for the report (an image, a volume's middle frame, a slide thumbnail)
    slides: list[Any]  # SlideInput of each slide, for the kept-tile overlay


def load_study(case: Case, study: CaseStudy, engine: Any, settings: CaseSettings) -> LoadedStudy:
    """Read every medium of a study through the readers (`breastgpt.infer.inputs`), prepared with the checkpoint's
    preprocessing settings as `ask` prepares them (images by the study's modality)."""
    from breastgpt.infer.ask import trained_encoder
    from breastgpt.infer.inputs import encode_slide, image_modality, load_image, load_slide_features, load_volume
    from breastgpt.model.configuration import slide_encoder_id
    from breastgpt.preprocessing import IMAGE_MODALITIES

    prep = getattr(engine, "preprocessing", None)
    loaded = LoadedStudy([], [], [])
    dim = getattr(engine.processor, "slide_feature_dim", None)
    for media in study.media:
        path = case.folder / media.path
        if media.kind == "image":
            given = study.modality if study.modality in IMAGE_MODALITIES else None
            image = load_image(path, settings=prep, modality=image_modality(path, given))
            loaded.parts.append({"type": "image", "image": image})
            loaded.previews.append(image)
        elif media.kind == "volume":
            frames, _ = load_volume(path, settings=prep)
            loaded.parts.append({"type": "volume", "volume": frames})
            loaded.previews.append(frames[len(frames) // 2])
        else:
            slide = load_slide_features(path, expect_dim=dim, expect_encoder=slide_encoder_id(engine.model.config)) \
                if media.kind == "slide_features" else \
                encode_slide(path, encoder=trained_encoder(engine, settings.encoder), weights=settings.encoder_weights,
                             mpp=settings.slide_mpp, expect_dim=dim)
            loaded.parts.append(slide.part())
            loaded.slides.append(slide)
            if slide.thumbnail is not None:
                loaded.previews.append(np.asarray(slide.thumbnail))
    return loaded


def run_key(case: Case, model: Path, settings: CaseSettings) -> str:
    """What the saved answers depend on: the case file's bytes, the checkpoint's files and the settings."""
    from breastgpt.bench.clients import checkpoint_fingerprint

    payload = [hashlib.sha256((case.folder / CASE_FILE).read_bytes()).hexdigest(), checkpoint_fingerprint(model),
               json.dumps(asdict(settings), sort_keys=True)]
    return hashlib.sha256("\x00".join(payload).encode()).hexdigest()


def _saved(out: Path, key: str) -> dict[str, str]:
    path = out / STATE
    if not path.is_file():
        return {}
    state = json.loads(path.read_text(encoding="utf-8"))
    return state["answers"] if state.get("key") == key else {}


@dataclass
class Step:
    study_index: int
    question_index: int
    question: Question
    answer: str
    reused: bool


def walk(case: Case, engine: Any, settings: CaseSettings, out: Path, key: str,
         on_step: Callable[[Step, int], None] | None = None) -> tuple[list[Step], list[LoadedStudy]]:
    """Ask every question in pathway order, carrying earlier studies forward as turns; save after each answer."""
    from breastgpt.infer.engine import Conversation, GenerationParams

    saved = _saved(out, key)
    ordered = case.ordered()
    total = sum(len(study_questions(s, settings.answer_style)) for s in ordered)
    params = GenerationParams(max_new_tokens=settings.max_new_tokens)
    history: list[dict[str, Any]] = []
    steps, loaded = [], []
    for s_index, study in enumerate(ordered):
        media = load_study(case, study, engine, settings)
        loaded.append(media)
        for q_index, question in enumerate(study_questions(study, settings.answer_style)):
            user = {"role": "user", "content": [*media.parts, {"type": "text", "text": _context(study, question)}]}
            slot = f"{s_index}:{q_index}"
            reused = slot in saved
            if not reused:
                task = "closed_vqa_text" if question.family == "closed_vqa" and settings.answer_style == "text" \
                    else question.family
                conversation = Conversation([*history, user], stage=study.stage, task=task)
                saved[slot] = engine.generate([conversation], params)[0].text.strip()
                atomic_write_json(out / STATE, {"key": key, "answers": saved})
            step = Step(s_index, q_index, question, saved[slot], reused)
            steps.append(step)
            if on_step:
                on_step(step, total)
            if question.carry:
                history += [user, {"role": "assistant", "content": step.answer}]
    return steps, loaded


def run_case(case_dir: str | Path, model: str | Path, out: str | Path, settings: CaseSettings = CaseSettings(),
             on_step: Callable[[Step, int], None] | None = None, engine: Any = None) -> dict[str, Any]:
    """Run the case and write `out/case_report.json` and `out/report.html`; returns the report."""
    from breastgpt.case.report import build_report, write_report
    from breastgpt.infer.engine import Engine

    case, model, out = load_case(case_dir), Path(model), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    engine = engine or Engine.from_pretrained(model, device=settings.device)
    key = run_key(case, model, settings)
    steps, loaded = walk(case, engine, settings, out, key, on_step)
    report = build_report(case, steps, loaded, engine, out, settings)
    write_report(report, out)
    return report


__all__ = ["CaseSettings", "Question", "Step", "run_case", "study_questions", "walk"]
