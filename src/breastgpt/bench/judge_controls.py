"""Judge controls (SPEC §5): the same-family check, agreement between judges and with human grades.

Family: a judge tends to favour answers from its own model family. The judge's family comes from its model
name; the candidate's from its name, or — for a local checkpoint, whose name is only its folder — from the
checkpoint's own `config.json` (`_name_or_path`, `model_type`, `architectures`, the text config's `model_type`)
and a PEFT `adapter_config.json`'s `base_model_name_or_path`. When no family is recognised the check says
"unknown family": it never reports a difference it could not see.

Agreement: Spearman ρ and quadratic-weighted κ on the items both raters scored, each with a cluster-bootstrap
interval from the report's resampler (both are functions of the raters' joint count table, so they go through
the batched sums of statistics.py).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from breastgpt.bench.items import BenchDataError
from breastgpt.bench.judges import RUBRICS, JudgeScore
from breastgpt.bench.metrics import kappa_from_confusion, kappa_stats, spearman_from_confusion
from breastgpt.bench.statistics import ClusterResampler, MetricSpec
from breastgpt.config import StrictConfig

# Substrings of model names -> family. BreastGPT is built on Qwen3-VL, so it is a Qwen-family model.
MODEL_FAMILIES: dict[str, tuple[str, ...]] = {
    "qwen": ("qwen", "qwq", "breastgpt"),
    "openai-gpt": ("gpt", "chatgpt", "o1-", "o3-", "o4-"),
    "llama": ("llama",),
    "google": ("gemma", "gemini", "palm"),
    "anthropic-claude": ("claude",),
    "mistral": ("mistral", "mixtral", "pixtral", "ministral"),
    "deepseek": ("deepseek",),
    "microsoft-phi": ("phi-", "phi3", "phi4"),
    "internvl": ("internvl", "internlm"),
    "glm": ("glm",),
    "yi": ("yi-",),
}
_CONFIG_KEYS = ("_name_or_path", "model_type", "architectures")  # config.json fields read, in this order


def model_family(name: str) -> str | None:
    """The family of a model name by substring (e.g. 'Qwen3-VL-8B' -> 'qwen'); None when not recognised."""
    low = name.lower().rsplit("/", 1)[-1]
    for family, needles in MODEL_FAMILIES.items():
        if any(n in low for n in needles):
            return family
    return None


@dataclass(frozen=True)
class FamilyEvidence(StrictConfig):
    """A model's family (None = unknown) and what it was read from, for the report (run.json's model.family)."""

    section = "model family"

    family: str | None = None
    basis: str = ""

    def as_dict(self) -> dict[str, Any]:
        return self.to_dict()


def family_from_name(name: str) -> FamilyEvidence:
    return FamilyEvidence(model_family(name), f"model name {name!r}")


def checkpoint_family(folder: Path) -> FamilyEvidence:
    """Family of a local checkpoint from its base-model config; unknown when nothing in it is recognised.

    Only JSON is read (never code or weights). Several recognised families that disagree count as unknown."""
    found: list[tuple[str, str]] = []
    for name, value in _config_values(Path(folder)):
        family = model_family(value)
        if family is not None:
            found.append((family, f"{name} {value!r}"))
    families = {f for f, _ in found}
    if len(families) == 1:
        return FamilyEvidence(found[0][0], f"checkpoint {found[0][1]}")
    if families:
        return FamilyEvidence(None, f"checkpoint config names several families: {', '.join(b for _, b in found)}")
    return FamilyEvidence(None, f"checkpoint {Path(folder).name!r}: no known family in config.json / "
                                f"adapter_config.json")


def _config_values(folder: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    config = _read_json(folder / "config.json", "checkpoint config")
    for source in (config, config.get("text_config") if isinstance(config.get("text_config"), dict) else {}):
        prefix = "config.json" if source is config else "config.json text_config"
        for key in _CONFIG_KEYS:
            values = source.get(key)
            for v in values if isinstance(values, list) else [values]:
                if isinstance(v, str) and v:
                    out.append((f"{prefix} {key}", v))
    base = _read_json(folder / "adapter_config.json", "checkpoint config").get("base_model_name_or_path")
    if isinstance(base, str) and base:
        out.append(("adapter_config.json base_model_name_or_path", base))
    return out


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchDataError(f"{path}: unreadable {what} ({exc}); the judge family check reads it") from None
    return data if isinstance(data, dict) else {}


def candidate_family(run_dir: Path, model_name: str) -> FamilyEvidence:
    """The family `bench run` recorded in run.json; else the local checkpoint's config; else the model name."""
    model = _read_json(Path(run_dir) / "run.json", "run manifest").get("model", {})
    if isinstance(model.get("family"), dict):
        return FamilyEvidence.from_dict(model["family"], f"{Path(run_dir) / 'run.json'}: model.family")
    spec = str(model.get("spec", ""))
    if spec.startswith("local:") and Path(spec[len("local:"):]).is_dir():
        return checkpoint_family(Path(spec[len("local:"):]))
    return family_from_name(model_name)


def family_check(judge_model: str, candidate: FamilyEvidence) -> dict[str, Any]:
    """status same | different | unknown, and the sentence the report prints."""
    judge = family_from_name(judge_model)
    if judge.family is None or candidate.family is None:
        who = [f"judge ({judge.basis})"] * (judge.family is None) + [f"candidate ({candidate.basis})"] * (
            candidate.family is None)
        return {"status": "unknown", "text": f"unknown family: no family recognised for the {' and the '.join(who)}; "
                                             f"the same-family check could not be made"}
    if judge.family == candidate.family:
        return {"status": "same", "text": f"same family: judge {judge_model!r} and the candidate "
                                          f"({candidate.basis}) are both {judge.family}-family models; same-family "
                                          f"judges tend to favour their own family, use a judge from another family"}
    return {"status": "different", "text": f"different family: judge {judge.family}, candidate {candidate.family} "
                                           f"({candidate.basis})"}


# ---------------------------------------------------------------------------------------------- agreement


def ok_scores(scores: Iterable[JudgeScore]) -> dict[str, int]:
    """item id -> integer score for the parsed judgements of one candidate."""
    return {s.item_id: s.score for s in scores if s.status == "ok" and s.score is not None}


def agreement(a: dict[str, int], b: dict[str, int], rubric: str, item_ids: list[str],
              rs: ClusterResampler) -> dict[str, Any]:
    """ρ and quadratic κ of two raters on the items both scored, with cluster-bootstrap intervals.

    `item_ids` is the resampler's item order; items either rater left out are masked out of every resample."""
    lo, hi = RUBRICS[rubric]
    for who, scores in (("a", a), ("b", b)):
        bad = sorted(k for k, v in scores.items() if not lo <= v <= hi)
        if bad:
            raise BenchDataError(f"agreement: rater {who} has scores outside the {rubric} rubric for {bad[:5]}")
    mask = np.array([i in a and i in b for i in item_ids])
    level_a = np.array([a.get(i, lo) - lo for i in item_ids])
    level_b = np.array([b.get(i, lo) - lo for i in item_ids])
    k = hi - lo + 1
    stats = kappa_stats(level_a, level_b, k)
    table = lambda t: t.reshape(t.shape[:-1] + (k, k))  # noqa: E731 (a reshape, named for the two metrics)
    specs = {"spearman": MetricSpec(stats, lambda t: spearman_from_confusion(table(t)), mask),
             "kappa_quadratic": MetricSpec(stats, lambda t: kappa_from_confusion(table(t), "quadratic"), mask)}
    out = {name: iv.as_dict() for name, iv in rs.bootstrap_batch(specs).items()}
    return {"n": int(mask.sum()), **out}


def judge_summary(judgements: list[JudgeScore], candidate: FamilyEvidence, item_ids: list[str],
                  rs: ClusterResampler, human_grades: dict[str, int] | None, primary: str | None) -> dict[str, Any]:
    """Per judge: counts, mean score with interval, family check; agreement of every pair and with humans."""
    unknown = sorted(set(human_grades or {}) - set(item_ids))
    if unknown:
        raise BenchDataError(f"human grades for items not in the bench: {unknown[:5]}; grade this bench's items")
    by_judge: dict[str, list[JudgeScore]] = {}
    for j in judgements:
        by_judge.setdefault(j.judge_model, []).append(j)
    if not by_judge:
        return {"judges": [], "judge_agreement": []}
    primary = primary or next(iter(by_judge))
    judges = [_judge_row(model, scores, candidate, item_ids, rs, model == primary)
              for model, scores in by_judge.items()]
    pairs = [{"a": a, "b": b, **agreement(ok_scores(by_judge[a]), ok_scores(by_judge[b]), by_judge[a][0].rubric,
                                          item_ids, rs)}
             for a, b in itertools.combinations(by_judge, 2) if by_judge[a][0].rubric == by_judge[b][0].rubric]
    out: dict[str, Any] = {"judges": judges, "judge_agreement": pairs}
    if human_grades:
        out["human_agreement"] = [{"judge_model": m, **agreement(ok_scores(s), human_grades, s[0].rubric, item_ids,
                                                                 rs)} for m, s in by_judge.items()]
    return out


def _judge_row(model: str, scores: list[JudgeScore], candidate: FamilyEvidence, item_ids: list[str],
               rs: ClusterResampler, primary: bool) -> dict[str, Any]:
    first = scores[0]
    by_item = {s.item_id: s.normalised for s in scores if s.normalised is not None}
    values = np.array([by_item.get(i, np.nan) for i in item_ids], dtype=float)
    mean = rs.bootstrap_batch({"mean": MetricSpec.mean(values)})["mean"].as_dict() if by_item else None
    return {"judge_model": model, "primary": primary, "prompt_version": first.prompt_version,
            "prompt_sha256": first.prompt_sha256, "rubric": first.rubric, "n": len(scores),
            "n_unparseable": sum(s.status == "unparseable" for s in scores),
            "n_error": sum(s.status == "error" for s in scores), "mean_score": mean,
            "family_check": family_check(model, candidate)}
