"""Slides in a corpus (issue 28 point 5, issue 27): `corpus verify` passes on a fresh build with slides and after
`slides extract --corpus-sources` adds their features; feature files are named by keyed ids, so no slide
barcode, case id or file stem reaches records, `.state/`, quarantine, summaries, extraction state, the console
or the log; and a feature file extracted from another slide fails verification."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastgpt.corpus.cli import app as corpus_app
from breastgpt.corpus.sources import SourceProblem, get_adapter
from breastgpt.pathology.cli import app as slides_app
from breastgpt.synth.cohort import generate
from tests.logtext import LogText

SECRET_ENV = "SLIDE_ITEMS_TEST_SECRET"
SOURCES = ("tcga_brca", "bcnb")


def _canaries(roots: dict[str, Path]) -> set[str]:
    """Every slide sample's raw ids and its file's stem and folder names (those with a digit, >= 4 chars)."""
    found = set()
    for name, root in roots.items():
        for sample in get_adapter(name).discover(root):
            assert not isinstance(sample, SourceProblem), sample
            relative = Path(sample.media[0]).relative_to(root)
            found |= {sample.sample_id, sample.patient_id, relative.stem, *relative.parent.parts}
    return {c for c in found if len(c) >= 4 and any(ch.isdigit() for ch in c)}


@pytest.fixture(scope="module")
def slide_corpus(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("slides")
    roots = generate(base / "raw", patients=3, sources=list(SOURCES), seed=3, workers=2)
    # a planted record-number-like BCNB id (the real ones are 1-1058, too short to search for)
    planted = roots["bcnb"] / "WSIs" / "48213.jpg"
    shutil.copy(next((roots["bcnb"] / "WSIs").glob("1.jpg")), planted)
    import pandas as pd

    table = roots["bcnb"] / "patient-clinical-data.xlsx"
    rows = pd.read_excel(table)
    pd.concat([rows, pd.DataFrame([rows.iloc[0]]).assign(**{"Patient ID": [48213]})]).to_excel(table, index=False)
    spec = ",".join(f"{name}={root}" for name, root in roots.items())
    out = base / "corpus"
    mp = pytest.MonkeyPatch()
    mp.setenv(SECRET_ENV, "slide-items-test-secret-0123456789")
    handler = LogText()
    logging.getLogger().addHandler(handler)
    try:
        build = CliRunner().invoke(corpus_app, ["build", "--sources", spec, "--out", str(out),
                                                "--secret-env", SECRET_ENV])
        fresh_verify = CliRunner().invoke(corpus_app, ["verify", str(out)])
        extract = CliRunner().invoke(slides_app, ["extract", "--corpus-sources", spec, "--out", str(out),
                                                  "--secret-env", SECRET_ENV, "--json"])
    finally:
        logging.getLogger().removeHandler(handler)
        mp.undo()
    return {"roots": roots, "out": out, "build": build, "fresh_verify": fresh_verify, "extract": extract,
            "log": handler.text, "canaries": _canaries(roots) | {"48213"}}


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_fresh_build_with_slides_verifies(slide_corpus):
    assert slide_corpus["build"].exit_code == 0, slide_corpus["build"].output
    assert slide_corpus["fresh_verify"].exit_code == 0, slide_corpus["fresh_verify"].output
    slides = [m for r in _records(slide_corpus["out"]) for m in r["media"] if m["kind"] == "slide"]
    assert len({m["path"] for m in slides}) == 7  # 3 TCGA + 3 BCNB + the planted BCNB case
    assert all(re.fullmatch(r"features/Q[A-Z2-7]{16}\.h5", m["path"]) for m in slides)


def test_extracted_features_carry_the_record_names_and_verify(slide_corpus):
    extract, out = slide_corpus["extract"], slide_corpus["out"]
    assert extract.exit_code == 0, extract.output
    summary = json.loads(extract.stdout)
    assert summary["counts"] == {"done": 7, "skipped": 0, "quarantined": 0}
    named = {m["path"] for r in _records(out) for m in r["media"] if m["kind"] == "slide"}
    assert {f"features/{p.name}" for p in (out / "features").glob("*.h5")} == named
    verify = CliRunner().invoke(corpus_app, ["verify", str(out)])
    assert verify.exit_code == 0, verify.output


def test_a_feature_file_of_another_slide_fails_verification(slide_corpus, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(slide_corpus["out"], copy)
    bench = sorted({m["path"] for r in _records(copy) if r["split"] == "bench" for m in r["media"]
                    if m["kind"] == "slide"})
    others = sorted({p.relative_to(copy).as_posix() for p in (copy / "features").glob("*.h5")} - set(bench))
    assert bench and others
    shutil.copy(copy / others[0], copy / bench[0])
    verify = CliRunner().invoke(corpus_app, ["verify", str(copy)])
    assert verify.exit_code == 1 and "extracted from another slide" in verify.output


def test_no_slide_identifier_in_any_output(slide_corpus):
    out, canaries = slide_corpus["out"], slide_corpus["canaries"]
    assert {"48213"} < canaries and any(c.startswith("TCGA-") for c in canaries)
    files = [p for p in sorted(out.rglob("*")) if p.is_file() and p.suffix != ".h5"]
    assert any(".state" in p.parts for p in files) and any(p.parts[-2] == "state" for p in files)
    texts = {str(p.relative_to(out)): str(p.relative_to(out)).lower() + "\n" + p.read_bytes().decode("latin-1").lower()
             for p in files}
    texts |= {"build console": slide_corpus["build"].output.lower(), "extract console": slide_corpus["extract"].output.lower(),
              "log": slide_corpus["log"].lower()}
    leaks = sorted((canary, where) for canary in canaries for where, text in texts.items()
                   if re.search(rf"(?<![a-z0-9]){re.escape(canary.lower())}(?![a-z0-9])", text))
    assert leaks == []
