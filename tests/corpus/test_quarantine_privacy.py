"""Issue 27: no raw identifier of a failed case reaches anything `corpus build` writes, logs or prints.

Every source adapter gets failing cases in its synthetic cohort (written in the dataset's own layout): every
input of one patient is truncated (the items fail), every input of a second patient is deleted (table-driven
adapters report the rows), and the institutional manifest gets a row with a canary MRN, study UID and case folder
whose files are missing, and one whose file is corrupt. The canaries are those cases' own raw identifiers: ids,
the file stems and folder names of their inputs that no other patient shares, and their DICOM header ids and UIDs.
The build runs through the CLI; every file of the output folder, the console output and the log are searched.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastgpt.corpus.cli import app
from breastgpt.corpus.sources import ADAPTERS, SourceProblem, get_adapter
from breastgpt.corpus.sources.base import safe_id
from breastgpt.synth.cohort import generate
from tests.logtext import LogText

SECRET_ENV = "QUARANTINE_TEST_SECRET"
MIN_CANARY = 5  # shorter ids (row numbers such as BCNB's "1") are not identifiers worth searching for
INSTITUTIONAL_CANARIES = {
    "missing": {"sample": "", "patient": "MRN-7731-CANARY", "study": "1.2.826.0.1.3680043.99.7731.1",
                "files": "CANARYCASE_7731/t1_7731.nii.gz"},
    "corrupt": {"sample": "CANARYSAMPLE_8842", "patient": "MRN-8842-CANARY",
                "study": "1.2.826.0.1.3680043.99.8842.1", "files": "CANARYFOLDER_8842/CANARYSTEM_8842.nii.gz"},
}


def _by_patient(name: str, root: Path) -> dict[str, list]:
    samples = defaultdict(list)
    for item in get_adapter(name).discover(root):
        assert not isinstance(item, SourceProblem), item
        samples[item.patient_id].append(item)
    return dict(sorted(samples.items()))


def _identifiers(samples: list, root: Path) -> set[str]:
    """Raw ids, input file stems and folder names, and DICOM header ids of some samples."""
    from breastgpt.io.dicom import read_dataset
    from breastgpt.io.errors import MedicalFileError

    found = set()
    for sample in samples:
        found |= {sample.sample_id, sample.patient_id, sample.study_id}
        for path in sample.media:
            relative = Path(path).relative_to(root)
            found |= {*relative.parent.parts, relative.stem, Path(relative.stem).stem}
            try:
                header = read_dataset(path, header_only=True)
            except (MedicalFileError, IsADirectoryError):
                continue
            found |= {str(header.get(k, "")) for k in ("PatientID", "AccessionNumber", "StudyInstanceUID",
                                                        "SeriesInstanceUID", "SOPInstanceUID")}
    # class and layout folders (benign/, train/) are words; every identifier of these datasets has a digit
    return {value for value in found if len(value) >= MIN_CANARY and any(ch.isdigit() for ch in value)}


def _fail_two_patients(name: str, root: Path) -> set[str]:
    """Corrupt the inputs of the first patient, delete those of the second; return their identifiers (those no
    other patient shares: layout folders such as `train/` are not identifiers)."""
    patients = list(_by_patient(name, root).values())
    ids = [_identifiers(samples, root) for samples in patients]
    canaries = set()
    for index in (0, 1):
        others = set().union(*(ids[i] for i in range(len(ids)) if i != index))
        canaries |= {c for c in ids[index] if not any(c in other for other in others)}
    tree = _tree_text(root)
    canaries = {c for c in canaries if c.lower() in tree}  # raw: written in the source tree (EMBED's ids are hashes)
    for sample in patients[0]:
        for path in sample.media:
            _corrupt(Path(path))
    for sample in patients[1]:
        for path in sample.media:
            shutil.rmtree(path) if Path(path).is_dir() else Path(path).unlink(missing_ok=True)
    return canaries


def _tree_text(root: Path) -> str:
    """Every path under `root` and every file's bytes, lower case."""
    paths = sorted(root.rglob("*"))
    text = " ".join(str(path.relative_to(root)) for path in paths)
    return (text + " ".join(p.read_bytes().decode("latin-1") for p in paths if p.is_file())).lower()


def _corrupt(path: Path) -> None:
    """Keep the format's magic bytes, break the rest (a truncated .nii.gz of 300 bytes is still read)."""
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            file.write_bytes(file.read_bytes()[:16] + b"\xff" * 48)


def _bcnb(root: Path) -> set[str]:
    """BCNB numbers its patients 1-1058, too short to search for: two rows with record-number-like ids, one
    whose slide is missing and one whose slide is corrupt."""
    import pandas as pd

    table = root / "patient-clinical-data.xlsx"
    rows = pd.read_excel(table)
    planted = pd.DataFrame([rows.iloc[0]] * 2).assign(**{"Patient ID": [48213, 48217]})
    pd.concat([rows, planted]).to_excel(table, index=False)
    (root / "WSIs" / "48217.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 60)
    return {"48213", "48217"}


def _institutional(cohort: Path) -> tuple[Path, set[str]]:
    """An `institutional` source (the CT cohort's layout) with two canary rows that fail."""
    root = cohort / "institutional"
    shutil.copytree(cohort / "ct_cohort", root)
    with open(root / "manifest.csv", newline="") as handle:
        columns = next(csv.reader(handle))
    corrupt = root / INSTITUTIONAL_CANARIES["corrupt"]["files"]
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 60)  # a gzip header and nothing valid after it
    with open(root / "manifest.csv", "a", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        for row in INSTITUTIONAL_CANARIES.values():
            writer.writerow({**row, "modality": "ct", "kind": "volume", "split": "train"})
    canaries = {v for row in INSTITUTIONAL_CANARIES.values() for v in row.values() if v}
    canaries |= {part for row in INSTITUTIONAL_CANARIES.values() for part in Path(row["files"]).parts}
    return root, canaries | {Path(row["files"]).name.split(".")[0] for row in INSTITUTIONAL_CANARIES.values()}


@pytest.fixture(scope="module")
def failed_build(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("quarantine")
    roots = generate(base / "raw", patients=3, seed=5, workers=2)
    canaries = {name: _fail_two_patients(name, root) for name, root in roots.items()}
    canaries["bcnb"] |= _bcnb(roots["bcnb"])
    roots["institutional"], canaries["institutional"] = _institutional(base / "raw")
    spec = base / "sources.json"
    spec.write_text(json.dumps({name: str(root) for name, root in roots.items()}))
    out = base / "corpus"
    mp = pytest.MonkeyPatch()
    mp.setenv(SECRET_ENV, "quarantine-test-secret-0123456789")
    level, logger = logging.getLogger().level, _capture_logs()
    result = CliRunner().invoke(app, ["build", "--sources", str(spec), "--out", str(out), "--secret-env", SECRET_ENV,
                                          "--allow-partial"])
    logging.getLogger().removeHandler(logger)
    logging.getLogger().setLevel(level)
    mp.undo()
    return {"roots": roots, "canaries": canaries, "out": out, "console": result.output, "log": logger.text,
            "exit": result.exit_code}


def _capture_logs() -> LogText:
    handler = LogText()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    return handler


def _forms(value: str) -> set[str]:
    """The value in its usual written forms (lower case)."""
    value = value.lower()
    return {value, value.replace("_", " "), value.replace(" ", "_"), safe_id(value).lower()}


def _pattern(value: str) -> re.Pattern[str]:
    """The value in its usual written forms, not inside a longer run of letters and digits (a hash)."""
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, sorted(_forms(value)))) + r")(?![a-z0-9])")


def _quarantine(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]


def test_every_adapter_has_failed_cases_with_canaries(failed_build) -> None:
    assert failed_build["exit"] == 0, failed_build["console"]
    assert set(failed_build["canaries"]) == set(ADAPTERS)
    rows = _quarantine(failed_build["out"])
    assert sorted({row["source"] for row in rows}) == sorted(ADAPTERS)
    for name, canaries in failed_build["canaries"].items():
        assert len(canaries) >= 2, (name, canaries)


def test_no_canary_in_any_output_file_the_console_or_the_log(failed_build) -> None:
    out = failed_build["out"]
    files = [path for path in sorted(out.rglob("*")) if path.is_file()]
    assert any(".state" in path.parts for path in files) and (out / "quarantine.jsonl") in files
    texts = {str(path.relative_to(out)): str(path.relative_to(out)).lower() + "\n" +
             path.read_bytes().decode("latin-1").lower() for path in files}
    texts |= {"console": failed_build["console"].lower(), "log": failed_build["log"].lower()}
    patterns = {(name, canary): _pattern(canary) for name, canaries in failed_build["canaries"].items()
                for canary in canaries}
    # the regexes (with their look-arounds) run only where a plain substring search finds a canary's form
    forms = {form for _, canary in patterns for form in _forms(canary)}
    suspects = {where: text for where, text in texts.items() if any(form in text for form in forms)}
    leaks = {(*which, where) for which, pattern in patterns.items() for where, text in suspects.items()
             if pattern.search(text)}
    assert sorted(leaks) == [], '\n'.join(map(str, sorted(leaks)))


def test_quarantine_rows_stay_useful(failed_build) -> None:
    rows = _quarantine(failed_build["out"])
    for row in rows:
        assert row["key"].startswith("Q") and len(row["key"]) == 17
        assert row["source"] in ADAPTERS and row["error"] and row["problem"] and row["hint"]
        assert row["find"].startswith(f"breastgpt corpus quarantine-key --source {row['source']}")
    errors = {row["error"] for row in rows}
    assert "source_problem" in errors and errors & {"corrupt_file", "unsupported_format"}
    institutional = [row for row in rows if row["source"] == "institutional"]
    assert [row["error"] for row in institutional if row.get("table_row") == "manifest.csv:5"] == ["source_problem"]


def test_quarantine_key_finds_the_failed_inputs(failed_build, monkeypatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "quarantine-test-secret-0123456789")
    root = failed_build["roots"]["institutional"]
    corrupt = root / INSTITUTIONAL_CANARIES["corrupt"]["files"]
    result = CliRunner().invoke(app, ["quarantine-key", "--source", "institutional", "--root", str(root),
                                      "--secret-env", SECRET_ENV, str(corrupt), "manifest.csv:5"])
    assert result.exit_code == 0, result.output
    keys = [line.split()[0] for line in result.stdout.splitlines()]
    rows = {row["key"]: row for row in _quarantine(failed_build["out"]) if row["source"] == "institutional"}
    assert [rows[key].get("table_row") for key in keys] == [None, "manifest.csv:5"]
