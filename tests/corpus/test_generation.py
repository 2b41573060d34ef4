"""Optional model-assisted rephrasing against a local stub OpenAI-compatible server."""

from __future__ import annotations

from breastgpt.corpus.generation import GenerationConfig, prompt_sha256, rephrase_records
from tests.bench.stub_openai import StubOpenAI
from tests.corpus.test_records import sample_records


def test_rephrase_marks_generated_provenance_and_guards_findings():
    records = sample_records()
    targets = [r for r in records if r.task_family in ("open_vqa", "grounded_caption")]

    def answer(body):
        user = body["messages"][1]["content"]
        findings = user.split("Findings to keep verbatim: ")[1]
        if "spiculated" in findings:
            return "A lesion is present."  # drops a finding: must be rejected
        return "Rewritten: " + findings

    with StubOpenAI(answer) as stub:
        config = GenerationConfig(base_url=stub.base_url, model="stub-model")
        result = rephrase_records(records, config)
    assert len(stub.requests) == len(targets) > 3
    assert stub.requests[0]["temperature"] == 0.0 and stub.requests[0]["model"] == "stub-model"
    assert len(result.records) == len(records)
    generated = [r for r in result.records if r.answer_provenance.kind == "generated"]
    assert result.rewritten == len(generated) == len(targets) - len(result.rejected)
    assert result.rejected and all("dropped findings" in r["reason"] for r in result.rejected)
    g = generated[0]
    assert g.answer_provenance.generator_model == "stub-model"
    assert g.answer_provenance.generator_prompt_sha256 == prompt_sha256()
    assert g.message("assistant").startswith("Rewritten: ") and g.label["answer"] == g.message("assistant")
    original = next(r for r in records if r.id == g.id)
    assert g.label["source_answer"] == original.message("assistant")
    untouched = [r for r in result.records if r.task_family == "closed_vqa"]
    assert all(r.answer_provenance.kind == "label" for r in untouched)


def test_endpoint_errors_keep_the_label_answer():
    records = [r for r in sample_records() if r.task_family == "open_vqa"][:2]
    with StubOpenAI([500, 500, 500, 500, 500, 500]) as stub:
        config = GenerationConfig(base_url=stub.base_url, model="m", max_retries=0)
        result = rephrase_records(records, config)
    assert result.rewritten == 0 and len(result.rejected) == 2
    assert "endpoint error" in result.rejected[0]["reason"]
    assert [r.to_dict() for r in result.records] == [r.to_dict() for r in records]
