"""Build: outputs, quarantine, zero-work re-runs, determinism (acceptance 6) and kill/resume (acceptance 4)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breastgpt.corpus.build import (BuildConfig, BuildError, IncompleteBuildError, SourceSpec, build_corpus,
                                    parse_sources, verify_build)
from breastgpt.corpus.records import read_records_jsonl, read_records_parquet
from breastgpt.corpus.splits import verify_manifest
from tests.corpus.fixtures import FULL_LABELS, SECRET, adapters_for, make_source, png_normaliser

REPO = Path(__file__).resolve().parents[2]
ENV = "CORPUS_TEST_SECRET"


def _cases(prefix: str, n: int, modality: str = "mammography") -> list[dict]:
    out = []
    for i in range(n):
        labels = dict(FULL_LABELS[modality]) if i % 2 == 0 else {"density": "ABCD"[i % 4], "birads": i % 6}
        out.append({"id": f"{prefix}{i:03d}", "patient": f"{prefix.upper()}-PAT-{i // 2:04d}", "modality": modality,
                    "labels": labels, "report": "Routine screening, no suspicious finding." if i % 3 == 0 else None})
    return out


@pytest.fixture()
def sources(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_source(src / "alpha", "alpha", _cases("a", 12))
    cases = _cases("b", 8, "ultrasound")
    cases.append({"id": "b-broken", "patient": "B-PAT-9999", "modality": "ultrasound", "bytes": b"not a png"})
    cases.append({"id": "b-badrow", "patient": "x", "bad_row": "BI-RADS code '7x' unknown"})
    make_source(src / "beta", "beta", cases)
    return src


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv(ENV, SECRET)


def config(src: Path, out: Path, **kw) -> BuildConfig:
    return BuildConfig(out=out, sources=(SourceSpec("alpha", src / "alpha"), SourceSpec("beta", src / "beta")),
                       secret_env=ENV, **kw)


def build(src: Path, out: Path, **kw):
    return build_corpus(config(src, out, **kw), adapters=adapters_for("alpha", "beta"), normaliser=png_normaliser)


def corpus_files(out: Path) -> dict[str, str]:
    """sha256 of every file of the corpus except the run summary and the private state."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
            if p.is_file() and ".state" not in p.parts and p.name != "build_summary.json"}


def test_build_outputs_quarantine_and_zero_work_rerun(sources, tmp_path):
    out = tmp_path / "out"
    first = build(sources, out)
    assert (first.discovered, first.processed, first.reused) == (21, 21, 0)
    assert first.quarantined == 2
    for name in ("records.jsonl", "records.parquet", "manifest.json", "bench_manifest.json", "quarantine.jsonl",
                 "build_summary.json"):
        assert (out / name).is_file(), name
    quarantine = [json.loads(l) for l in (out / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(q["error"] for q in quarantine) == ["corrupt_file", "source_problem"]
    records = read_records_jsonl(out / "records.jsonl")
    assert len(records) == first.records > 0
    assert [r.to_dict() for r in read_records_parquet(out / "records.parquet")] == [r.to_dict() for r in records]
    assert [(r.source, r.id) for r in records][:1][0][0] == "alpha"
    raw = (out / "records.jsonl").read_text()
    assert "PAT-" not in raw  # raw patient ids never written; keys are pseudonyms
    assert all(r.patient_key.startswith("P") and len(r.patient_key) == 17 for r in records)
    for r in records:
        for m in r.media:
            assert hashlib.sha256((out / m.path).read_bytes()).hexdigest() == m.sha256
    assert verify_build(out) == []
    assert verify_manifest(out / "bench_manifest.json", records, media_root=out).ok
    before = corpus_files(out)
    second = build(sources, out)
    assert (second.processed, second.reused) == (0, 21)
    assert json.loads((out / "build_summary.json").read_text())["work_done"] == 0
    assert corpus_files(out) == before


def test_unchanged_rerun_restores_the_summary_and_a_touched_output_is_rebuilt(sources, tmp_path):
    """An unchanged re-run skips assembling the corpus and restores the summary; an output file that changed
    since (or a changed setting) makes it assemble again."""
    from dataclasses import asdict

    out = tmp_path / "out"
    first = build(sources, out)
    fields = ("quarantined", "records", "splits", "phi_gate", "sources", "incomplete")
    assert (out / ".state" / "finalised.json").is_file()
    second = build(sources, out)
    assert second.processed == 0 and {f: asdict(second)[f] for f in fields} == {f: asdict(first)[f] for f in fields}
    before = corpus_files(out)
    (out / "records.jsonl").write_text("damaged\n")
    third = build(sources, out)
    assert third.processed == 0 and corpus_files(out) == before  # assembled again, the same bytes
    assert verify_build(out) == []
    assert first.incomplete == []
    with pytest.raises(IncompleteBuildError) as refused:  # a setting the assembly reads: assembled again
        build(sources, out, max_lost=0.05)
    assert refused.value.summary.incomplete == ["beta"] and refused.value.summary.processed == 0


def test_changed_input_redoes_only_that_item(sources, tmp_path):
    out = tmp_path / "out"
    build(sources, out)
    rows = json.loads((sources / "alpha" / "cases.json").read_text())
    rows[0]["labels"] = {"density": "D"}
    (sources / "alpha" / "cases.json").write_text(json.dumps(rows))
    again = build(sources, out)
    assert (again.processed, again.reused) == (1, 20)
    assert verify_build(out) == []


def test_same_inputs_and_seed_give_identical_corpus_hashes(sources, tmp_path):
    """Acceptance 6, also across executors and worker counts (ordering independent of scheduling)."""
    a = build(sources, tmp_path / "a", seed=3)
    b = build(sources, tmp_path / "b", seed=3, workers=2)
    manifest = lambda d: json.loads((d / "manifest.json").read_text())["corpus_sha256"]
    assert manifest(tmp_path / "a") == manifest(tmp_path / "b")
    assert corpus_files(tmp_path / "a") == corpus_files(tmp_path / "b")
    c = build(sources, tmp_path / "c", seed=4)
    splits = lambda d: [r.split for r in read_records_jsonl(d / "records.jsonl")]
    assert a.records == c.records and splits(tmp_path / "a") != splits(tmp_path / "c")


def test_dask_executor_matches_local(sources, tmp_path):
    build(sources, tmp_path / "local")
    summary = build(sources, tmp_path / "dask", executor="dask", workers=2, dask_processes=False)
    assert summary.processed == 21
    assert corpus_files(tmp_path / "local") == corpus_files(tmp_path / "dask")


def test_verify_build_detects_tampering(sources, tmp_path):
    out = tmp_path / "out"
    build(sources, out)
    media = sorted((out / "media").rglob("*.png"))[0]
    media.write_bytes(media.read_bytes() + b"x")
    problems = verify_build(out)
    assert len(problems) == 1 and "sha256 differs" in problems[0]
    # the tampered media file is detected and rebuilt on the next run, because the item state is still valid
    # but the corpus verification is what users run; a fresh build restores the bytes
    media.unlink()
    again = build(sources, out)
    assert again.processed >= 1 and verify_build(out) == []


def test_missing_secret_and_bad_specs(sources, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV)
    with pytest.raises(BuildError, match=ENV):
        build(sources, tmp_path / "o")
    with pytest.raises(BuildError, match="name=path"):
        parse_sources("alpha")
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"sources": {"alpha": "src/alpha"}}))
    assert parse_sources(str(spec))[0].root == (tmp_path / "src" / "alpha").resolve()
    assert parse_sources("a=/x, b=/y")[1].name == "b"


def test_templates_per_sample_subsamples_deterministically(sources, tmp_path):
    one = build(sources, tmp_path / "one", templates_per_sample=2)
    two = build(sources, tmp_path / "two", templates_per_sample=2)
    assert one.records == 2 * 20 and corpus_files(tmp_path / "one") == corpus_files(tmp_path / "two")


def _run_builder(src: Path, out: Path, env: dict, workers: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.corpus.build_runner", str(src), str(out), str(workers)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _state_count(out: Path) -> int:
    return sum(1 for _ in (out / ".state").rglob("*.json")) if (out / ".state").is_dir() else 0


@pytest.mark.slow
def test_sigkill_at_five_points_then_resume_is_byte_identical(sources, tmp_path):
    """Acceptance 4: SIGKILL a building subprocess at 5 random points, resume; same bytes as an uninterrupted
    build, and an unchanged re-run does zero work. Each kill waits until that run has saved new item state,
    then sleeps a random fraction of an item, so kills land inside processing (not during interpreter start)."""
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}", CORPUS_TEST_DELAY="0.05")
    reference = tmp_path / "reference"
    build(sources, reference)
    out = tmp_path / "killed"
    rng = random.Random(20240601)
    kills, progress = 0, [0]
    for point in range(5):
        before = _state_count(out)
        proc = _run_builder(sources, out, env, workers=1 + point % 2)
        deadline = time.monotonic() + 60
        while proc.poll() is None and _state_count(out) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.12))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        progress.append(_state_count(out))
    assert kills == 5, f"a run finished before it was killed (state files after each run: {progress})"
    assert 0 < progress[-1] < 20, progress  # killed runs left partial work behind
    final = _run_builder(sources, out, env)
    stdout, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr
    assert int(stdout.split()[0].split("=")[1]) == 20 - progress[-1] + 1  # redone: the unfinished items only
    assert corpus_files(out) == corpus_files(reference)
    rerun = _run_builder(sources, out, env)
    stdout, _ = rerun.communicate(timeout=120)
    assert stdout.strip().startswith("processed=0 reused=21")


def test_interrupted_build_resumes_in_process(sources, tmp_path, monkeypatch):
    """Fast companion of the SIGKILL test: a build that dies mid-way leaves state that the next run reuses."""
    calls = {"n": 0}

    def dying_normaliser(sample, out_dir, *, limits=None):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # not an Exception: escapes the per-item quarantine like a real interrupt
        return png_normaliser(sample, out_dir, limits=limits)

    dying_normaliser.__qualname__ = png_normaliser.__qualname__
    dying_normaliser.__module__ = png_normaliser.__module__
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build_corpus(config(sources, out), adapters=adapters_for("alpha", "beta"), normaliser=dying_normaliser)
    assert not (out / "records.jsonl").exists() and _state_count(out) == 7
    resumed = build(sources, out)
    assert (resumed.processed, resumed.reused) == (14, 7)
    build(sources, tmp_path / "ref")
    assert corpus_files(out) == corpus_files(tmp_path / "ref")


def test_phi_gate_quarantines_own_ids_and_blocks_cross_sample_leaks(tmp_path):
    src = tmp_path / "src"
    cases = _cases("a", 4)
    cases[0]["report"] = f"Patient {cases[0]['patient']} has a benign-appearing mass, no further action needed."
    make_source(src / "alpha", "alpha", cases)
    make_source(src / "beta", "beta", _cases("b", 2, "ultrasound"))
    out = tmp_path / "out"
    summary = build(src, out, allow_partial=True)  # one of alpha's four cases is lost
    quarantine = [json.loads(l) for l in (out / "quarantine.jsonl").read_text().splitlines()]
    assert [q["error"] for q in quarantine] == ["phi_leak"] and summary.phi_gate == "passed"
    assert "patient_id" in quarantine[0]["problem"] and cases[0]["patient"] not in (out / "quarantine.jsonl").read_text()
    # a report naming *another* patient of the build passes the per-item check but not the corpus gate
    cases[0]["report"] = f"Compared with the study of {cases[2]['patient']}, the mass is unchanged in size and shape."
    make_source(src / "alpha", "alpha", cases)
    with pytest.raises(BuildError, match="PHI gate"):
        build(src, out, allow_partial=True)
    assert not (out / "records.jsonl").read_text().count(cases[2]["patient"])


def test_phi_gate_ignores_short_row_number_ids_but_not_record_numbers(tmp_path):
    """BCNB-style patient ids (row numbers 1-1058) match sizes and counts in other patients' reports; a real
    record number (5+ digits) in a report still stops the build."""
    src = tmp_path / "src"
    cases = _cases("a", 4)
    for i, case in enumerate(cases):
        case["patient"] = str(103 + i)
    cases[1]["report"] = "Oval mass measuring 105 x 104 mm, follow-up study 106 of the programme."
    make_source(src / "alpha", "alpha", cases)
    make_source(src / "beta", "beta", _cases("b", 2, "ultrasound"))
    summary = build(src, tmp_path / "out")
    assert summary.phi_gate == "passed" and summary.quarantined == 0
    for i, case in enumerate(cases):
        case["patient"] = str(480230 + i)
    cases[1]["report"] = "Compared with the study of 480232, the mass is unchanged in size and shape."
    make_source(src / "alpha", "alpha", cases)
    with pytest.raises(BuildError, match="PHI gate"):
        build(src, tmp_path / "out2")
