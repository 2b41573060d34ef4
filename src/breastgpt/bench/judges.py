"""LLM-as-judge scoring of open-ended answers through any OpenAI-compatible endpoint.

Every score carries the judge model, the prompt version and the sha256 of the exact prompt template, so a number
in a report can always be traced to the judge that produced it. The judge must end its reply with one line
`SCORE: <integer>` inside the rubric range; anything else is recorded as `unparseable` (never guessed) and an
endpoint failure as `error`. Each judge's scores are saved next to the run (`judgements_<judge>.jsonl`, one file
per judge), so re-scoring is offline.

The prompt tells the judge where the reference came from (answer provenance: a label, a report, a model, or
unknown), so a model-written reference is never presented as expert-written. The controls (same-family check,
agreement between judges and with human grades) are in `judge_controls.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable

from breastgpt.bench.items import BenchDataError, BenchItem, SavedResponse, read_jsonl, write_jsonl_atomic
from breastgpt.config import ConfigError, StrictConfig

RUBRICS: dict[str, tuple[int, int]] = {"0-10": (0, 10), "1-5": (1, 5)}

# Versioned prompt templates. Never edit a published version: add a new key, so old scores stay traceable.
_V1 = (
    "You are grading an answer to a breast-imaging question against a reference answer written by experts.\n"
    "Judge clinical correctness and completeness of the key findings; ignore style and length.\n"
    "Rubric: {lo} = wrong or unrelated, {hi} = clinically equivalent to the reference.\n\n"
    "Question:\n{question}\n\nReference answer:\n{reference}\n\nKey findings the answer should state:\n"
    "{findings}\n\nCandidate answer:\n{candidate}\n\n"
    "Give a one-sentence justification, then finish with exactly one line of the form\n"
    "SCORE: <integer from {lo} to {hi}>"
)
_V2 = (
    "You are grading an answer to a breast-imaging question against a reference answer.\n"
    "{provenance}\n"
    "Judge clinical correctness and completeness of the key findings; ignore style and length.\n"
    "Rubric: {lo} = wrong or unrelated, {hi} = clinically equivalent to the reference.\n\n"
    "Question:\n{question}\n\nReference answer:\n{reference}\n\nKey findings the answer should state:\n"
    "{findings}\n\nCandidate answer:\n{candidate}\n\n"
    "Give a one-sentence justification, then finish with exactly one line of the form\n"
    "SCORE: <integer from {lo} to {hi}>"
)
JUDGE_PROMPTS: dict[str, str] = {"v1": _V1, "v2": _V2}
# What a prompt version tells the judge about where the reference came from (SPEC §4.2 answer provenance).
PROVENANCE_STATEMENTS: dict[str, dict[str, str]] = {
    "v2": {
        "label": "Reference provenance: derived by rule from a human annotation (a structured label), so it is "
                 "terse and may omit findings that were not annotated.",
        "report": "Reference provenance: taken from a clinician's written report.",
        "generated": "Reference provenance: written by a language model{generator}, not by an expert, and not "
                     "checked by one; it may be wrong or incomplete, so do not treat its wording as ground truth.",
        "unknown": "Reference provenance: unknown; it may have been written by a language model, so do not assume "
                   "an expert wrote or checked it.",
    },
}
# Versions kept only so that old judgements stay traceable; they cannot judge new answers.
RETIRED_PROMPTS: dict[str, str] = {
    "v1": "it calls every reference 'written by experts', including model-written ones",
}
DEFAULT_PROMPT = "v2"


@dataclass(frozen=True)
class JudgeConfig(StrictConfig):
    section = "judge config"

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    prompt_version: str = DEFAULT_PROMPT
    rubric: str = "0-10"
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 120.0
    max_retries: int = 2

    def validate(self) -> None:
        if self.prompt_version not in JUDGE_PROMPTS:
            raise ConfigError(f"unknown judge prompt version {self.prompt_version!r}; known: {sorted(JUDGE_PROMPTS)}")
        if self.prompt_version in RETIRED_PROMPTS:
            raise ConfigError(f"judge prompt {self.prompt_version} is retired: "
                              f"{RETIRED_PROMPTS[self.prompt_version]}; use {DEFAULT_PROMPT}")
        if self.rubric not in RUBRICS:
            raise ConfigError(f"unknown rubric {self.rubric!r}; known: {sorted(RUBRICS)}")


@dataclass(frozen=True)
class JudgeScore:
    item_id: str
    candidate_model: str
    score: int | None
    status: str  # ok | unparseable | error
    raw: str
    judge_model: str
    prompt_version: str
    prompt_sha256: str
    rubric: str

    @property
    def normalised(self) -> float | None:
        """Score mapped to 0-1 (None unless status is ok)."""
        if self.score is None:
            return None
        lo, hi = RUBRICS[self.rubric]
        return (self.score - lo) / (hi - lo)


def prompt_sha256(version: str) -> str:
    """sha256 of everything a version can say: its template, and its provenance statements when it has them."""
    text = JUDGE_PROMPTS[version]
    if version in PROVENANCE_STATEMENTS:
        text += "\n" + json.dumps(PROVENANCE_STATEMENTS[version], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def provenance_statement(item: BenchItem, version: str = DEFAULT_PROMPT) -> str:
    statements = PROVENANCE_STATEMENTS.get(version)
    if statements is None:
        return ""
    generator = f" ({item.answer_generator})" if item.answer_generator else ""
    return statements[item.answer_provenance].format(generator=generator)


def render_prompt(item: BenchItem, candidate: str, version: str = DEFAULT_PROMPT, rubric: str = "0-10") -> str:
    lo, hi = RUBRICS[rubric]
    findings = "\n".join(f"- {f}" for f in item.key_findings) or "- (none listed)"
    return JUDGE_PROMPTS[version].format(question=item.question, reference=item.answer or "", findings=findings,
                                         candidate=candidate, lo=lo, hi=hi,
                                         provenance=provenance_statement(item, version))


_SCORE_LINE = re.compile(r"(?im)^[ \t*]*score[ \t*]*:[ \t*]*(\S+?)[ \t*.]*$")


def parse_judge_output(text: str, rubric: str = "0-10") -> int | None:
    """The integer on the single `SCORE:` line, inside the rubric range; None for anything else."""
    matches = _SCORE_LINE.findall(text or "")
    if len(matches) != 1 or not re.fullmatch(r"\d+", matches[0]):
        return None
    value = int(matches[0])
    lo, hi = RUBRICS[rubric]
    return value if lo <= value <= hi else None


class Judge:
    """Scores candidate answers with one judge model; `client` may be injected (an `openai.OpenAI`)."""

    def __init__(self, config: JudgeConfig, client: Any = None) -> None:
        self.config = config
        self.client = client or _make_client(config)
        self.prompt_sha256 = prompt_sha256(config.prompt_version)

    def score(self, item: BenchItem, response: SavedResponse) -> JudgeScore:
        cfg = self.config
        prompt = render_prompt(item, response.response, cfg.prompt_version, cfg.rubric)
        try:
            reply = self.client.chat.completions.create(
                model=cfg.model, messages=[{"role": "user", "content": prompt}],
                temperature=cfg.temperature, max_tokens=cfg.max_tokens)
            raw = reply.choices[0].message.content or ""
        except Exception as exc:  # the endpoint's failure is data about this item, not a crash of the batch
            return self._record(item, response, None, "error", f"{type(exc).__name__}: {exc}")
        value = parse_judge_output(raw, cfg.rubric)
        return self._record(item, response, value, "ok" if value is not None else "unparseable", raw)

    def _record(self, item: BenchItem, response: SavedResponse, value: int | None, status: str,
                raw: str) -> JudgeScore:
        return JudgeScore(item_id=item.id, candidate_model=response.model, score=value, status=status, raw=raw,
                          judge_model=self.config.model, prompt_version=self.config.prompt_version,
                          prompt_sha256=self.prompt_sha256, rubric=self.config.rubric)

    def score_many(self, items: list[BenchItem], responses: Iterable[SavedResponse],
                   on_done: Callable[[int], None] | None = None) -> list[JudgeScore]:
        """Judge the open-ended, full-variant responses among `responses` (closed/grounding ones are skipped)."""
        by_id = {it.id: it for it in items}
        out = []
        for r in responses:
            item = by_id.get(r.item_id)
            if r.variant != "full" or item is None or item.answer is None:
                continue
            out.append(self.score(item, r))
            if on_done is not None:
                on_done(len(out))
        return out


def _make_client(config: JudgeConfig) -> Any:
    import openai

    key = "EMPTY"
    if config.api_key_env:
        key = os.environ.get(config.api_key_env, "")
        if not key:
            raise BenchDataError(f"judge API key: environment variable {config.api_key_env} is not set; export it "
                                 f"or set api_key_env to null for a local endpoint")
    return openai.OpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout_s,
                         max_retries=config.max_retries)


# ------------------------------------------------------------------------------------------ saving / loading


JUDGEMENT_GLOB = "judgements*.jsonl"  # what `bench score` reads from a run directory


def judgement_file(judge_model: str) -> str:
    """The file one judge's scores go to in a run directory: one per judge, so a second judge never overwrites."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", judge_model).strip("._-") or "judge"
    return f"judgements_{slug}.jsonl"


def save_judgements(path: Path, scores: list[JudgeScore]) -> None:
    write_jsonl_atomic(path, [asdict(s) for s in scores])


def load_judgements(path: Path) -> list[JudgeScore]:
    names = {f.name for f in fields(JudgeScore)}
    out = []
    for n, obj in read_jsonl(Path(path)):
        if set(obj) != names:
            raise BenchDataError(f"{path}:{n}: judgement keys {sorted(obj)} differ from {sorted(names)}")
        out.append(JudgeScore(**obj))
    return out
