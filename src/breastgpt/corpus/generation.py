"""Optional model-assisted rephrasing of templated answers through an OpenAI-compatible endpoint (off by default).

The paper's open-ended ground truth was largely model-written; here that is opt-in and visible: every rewritten
answer carries provenance `generated` with the model name and the sha256 of the exact prompt template, keeps the
label-derived answer in `label.source_answer`, and is accepted only if it still states every key finding
(otherwise the label-derived answer is kept and the rejection reported).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from breastgpt.corpus.records import Record

PROMPT_VERSION = "rephrase-v1"
SYSTEM_PROMPT = (
    "You rewrite answers of a breast-imaging instruction dataset. Rewrite the given answer as one or two fluent "
    "clinical sentences. Keep every listed finding word for word, add no finding, no measurement and no advice "
    "that is not in the answer. Reply with the rewritten answer only."
)
USER_TEMPLATE = "Question: {question}\nAnswer: {answer}\nFindings to keep verbatim: {findings}"


def prompt_sha256() -> str:
    """Identifies the exact instructions a generated answer came from."""
    return hashlib.sha256(f"{PROMPT_VERSION}\x00{SYSTEM_PROMPT}\x00{USER_TEMPLATE}".encode()).hexdigest()


@dataclass(frozen=True)
class GenerationConfig:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    families: tuple[str, ...] = ("open_vqa", "grounded_caption")
    temperature: float = 0.0
    max_tokens: int = 200
    timeout_s: float = 60.0
    max_retries: int = 2


@dataclass
class GenerationResult:
    records: list[Record]
    rewritten: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def make_client(config: GenerationConfig) -> Any:
    import openai

    return openai.OpenAI(base_url=config.base_url, api_key=os.environ.get(config.api_key_env) or "not-needed",
                         timeout=config.timeout_s, max_retries=config.max_retries)


def _question(rec: Record) -> str:
    text = rec.message("user")
    for token in ("<image>", "<video>", "<slide>"):
        text = text.replace(token, "")
    return text.strip()


def rephrase_one(rec: Record, client: Any, config: GenerationConfig) -> tuple[Record | None, str]:
    """The rewritten record, or None and the reason it was rejected."""
    findings = rec.label.get("key_findings", [])
    user = USER_TEMPLATE.format(question=_question(rec), answer=rec.message("assistant"), findings="; ".join(findings))
    response = client.chat.completions.create(
        model=config.model, temperature=config.temperature, max_tokens=config.max_tokens,
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}])
    text = (response.choices[0].message.content or "").strip()
    if not text:
        return None, "empty answer"
    missing = [f for f in findings if f.lower() not in text.lower()]
    if missing:
        return None, f"dropped findings {missing}"
    data = rec.to_dict()
    data["messages"] = [m if m["role"] != "assistant" else {"role": "assistant", "content": text}
                        for m in data["messages"]]
    data["label"] = dict(data["label"], answer=text, source_answer=rec.message("assistant"))
    data["answer_provenance"] = {"kind": "generated", "generator_model": config.model,
                                 "generator_prompt_sha256": prompt_sha256(), "generator_endpoint": config.base_url}
    return Record.from_dict(data), ""


def rephrase_records(records: Iterable[Record], config: GenerationConfig, client: Any = None) -> GenerationResult:
    """Rewrite label-derived answers of the configured families; everything else passes through unchanged."""
    import openai

    client = client or make_client(config)
    result = GenerationResult(records=[])
    for rec in records:
        if rec.task_family not in config.families or rec.answer_provenance.kind != "label":
            result.records.append(rec)
            continue
        try:
            new, reason = rephrase_one(rec, client, config)
        except openai.OpenAIError as exc:
            new, reason = None, f"endpoint error: {type(exc).__name__}: {exc}"
        if new is None:
            result.records.append(rec)
            result.rejected.append({"id": rec.id, "reason": reason})
        else:
            result.records.append(new)
            result.rewritten += 1
    return result


__all__ = ["GenerationConfig", "GenerationResult", "prompt_sha256", "rephrase_records"]
