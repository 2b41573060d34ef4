"""De-identify DICOM files: one file (`deidentify_file`) or a folder (`deidentify_folder`).

Outputs are named from pseudonymous keys only (`<patient key>/<study key>/<instance key>.dcm`) and written
atomically. Logs and the output folder's summary never contain a source path or source value; a source file is
referred to by a keyed reference (`F...`), and the mapping from references to source paths is written only where
the caller asks (`source_map`, which must lie outside the output folder).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import platform
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pydicom.dataset import Dataset

from breastgpt.artifacts import atomic_path, atomic_write_json as _write_json_atomically
from breastgpt.config import ConfigError, StrictConfig
from breastgpt.deid.dataset import PatientContext, deidentify_dataset, write_markers
from breastgpt.deid.pixels import BurnedInPolicy, black_out_outside, burned_in_risk, keep_regions_for
from breastgpt.deid.pseudonym import Pseudonymizer
from breastgpt.io.dicom import read_dataset
from breastgpt.io.errors import MedicalFileError, MissingMetadataError, UnsupportedFormatError
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits

log = logging.getLogger("breastgpt.deid")
SUMMARY_NAME = "deid_summary.json"
Status = Literal["written", "quarantined", "failed"]


@dataclass(frozen=True)
class DeidPolicy(StrictConfig):
    """What de-identification does beyond the fixed basic profile. `limits` is a runtime setting, not in files."""

    section = "de-identification policy"
    runtime_fields = ("limits",)

    source: str = "local"  # dataset name; namespaces patient and study keys
    shift_dates: bool = True  # Retain Longitudinal Temporal Information with Modified Dates
    burned_in: BurnedInPolicy = field(default_factory=BurnedInPolicy)
    max_age_years: int | None = 90  # ages at or above this are written as this value
    limits: ReadLimits = DEFAULT_LIMITS

    def validate(self) -> None:
        if not self.source.strip():
            raise ConfigError("DeidPolicy.source must name the dataset (it namespaces the pseudonymous keys)")

    def describe(self) -> dict:
        return self.to_dict()


@dataclass(frozen=True)
class DeidResult:
    """Outcome for one source file. `source` is the original path: sensitive, never written to the output tree."""

    status: Status
    source: str
    source_ref: str
    output: str | None = None
    reason: str = ""
    patient_key: str | None = None
    study_key: str | None = None
    error_kind: str | None = None

    def public_record(self, output_root: Path | None = None) -> dict:
        """The result without the source path, for the output folder's summary."""
        record = {key: value for key, value in asdict(self).items() if key != "source"}
        if self.output and output_root is not None:
            record["output"] = Path(self.output).relative_to(output_root).as_posix()
        return record


@dataclass
class DeidBatchReport:
    results: list[DeidResult]

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(result.status for result in self.results))


def deidentify_file(src: str | Path, dst_dir: str | Path, pseudonymizer: Pseudonymizer,
                    policy: DeidPolicy | None = None, *, patient_id: str | None = None) -> DeidResult:
    """De-identify one DICOM file into `dst_dir`; unreadable inputs give a `failed` result, not an exception.

    `patient_id` overrides the header's Patient ID as the key source (for datasets whose id lives in a table).
    """
    policy = policy or DeidPolicy()
    src, dst_dir = Path(src), Path(dst_dir)
    ref = file_ref(pseudonymizer, src)
    try:
        result = _deidentify(src, dst_dir, pseudonymizer, policy, patient_id, ref)
    except MedicalFileError as exc:
        result = DeidResult("failed", str(src), ref, reason=f"{exc.kind}: {exc.problem}", error_kind=exc.kind)
    _log_result(result, dst_dir)
    return result


def deidentify_folder(src_root: str | Path, dst_dir: str | Path, pseudonymizer: Pseudonymizer,
                      policy: DeidPolicy | None = None, *, source_map: str | Path | None = None,
                      patient_id_for: Callable[[Path], str | None] | None = None,
                      on_result: Callable[[DeidResult], None] | None = None) -> DeidBatchReport:
    """De-identify every file under `src_root`; bad files are recorded and the job carries on.

    `patient_id_for(path)` may supply a file's patient id (datasets whose headers were blanked keep the id in a
    table or a folder name); None falls back to the header. Writes `deid_summary.json` (no source paths) into
    `dst_dir`, and, if asked, the sensitive reference → source path map to `source_map`.
    """
    policy = policy or DeidPolicy()
    src_root, dst_dir = Path(src_root).resolve(), Path(dst_dir).resolve()
    _check_folders(src_root, dst_dir, source_map)
    results = []
    for path in sorted(p for p in src_root.rglob("*") if p.is_file()):
        patient_id = patient_id_for(path) if patient_id_for is not None else None
        results.append(deidentify_file(path, dst_dir, pseudonymizer, policy, patient_id=patient_id))
        if on_result is not None:
            on_result(results[-1])
    report = DeidBatchReport(results)
    _write_summary(dst_dir, report, pseudonymizer, policy)
    if source_map is not None:
        _write_source_map(Path(source_map), report)
    return report


def patient_id_from_folder(src_root: str | Path) -> Callable[[Path], str | None]:
    """Use the first folder level under `src_root` as the patient id (e.g. `train_images/<patient>/<image>.dcm`)."""
    root = Path(src_root).resolve()

    def patient_id(path: Path) -> str | None:
        parts = Path(path).resolve().relative_to(root).parts
        return parts[0] if len(parts) > 1 else None

    return patient_id


def file_ref(pseudonymizer: Pseudonymizer, path: Path) -> str:
    """A keyed reference to a source file, safe to log (the path may contain a name)."""
    return "F" + pseudonymizer.instance_key("file:" + str(Path(path).resolve()))[1:13]


def _deidentify(src: Path, dst_dir: Path, pseudonymizer: Pseudonymizer, policy: DeidPolicy,
                patient_id: str | None, ref: str) -> DeidResult:
    dataset = read_dataset(src, limits=policy.limits)
    patient_id = patient_id or str(dataset.get("PatientID", "")).strip()
    study_uid, sop_uid = (str(dataset.get(name, "")).strip() for name in ("StudyInstanceUID", "SOPInstanceUID"))
    empty = [name for name, value in (("Patient ID", patient_id), ("Study Instance UID", study_uid),
                                      ("SOP Instance UID", sop_uid)) if not value]
    if empty:
        raise MissingMetadataError(src, f"{', '.join(empty)} empty in the header",
                                   "supply the patient id from the dataset's table (patient_id=, or "
                                   "--patient-id-from-folder) — UIDs cannot be invented without breaking studies")
    patient_key = pseudonymizer.patient_key(policy.source, patient_id)
    study_key = pseudonymizer.study_key(policy.source, study_uid)
    keys = {"patient_key": patient_key, "study_key": study_key}
    risk = burned_in_risk(dataset)
    pixels_cleaned = False
    if risk is not None:
        regions = keep_regions_for(dataset, policy.burned_in)
        if not regions:
            return DeidResult("quarantined", str(src), ref, reason=f"{risk}; no keep regions apply — supply keep "
                              "regions (or ultrasound regions for US) to clean it", **keys)
        try:
            black_out_outside(dataset, regions, src, policy.limits)
        except UnsupportedFormatError as exc:
            return DeidResult("quarantined", str(src), ref, reason=f"{risk}; {exc.problem}", **keys)
        dataset.BurnedInAnnotation = "NO"
        pixels_cleaned = True
    shift = pseudonymizer.date_shift_days(policy.source, patient_id) if policy.shift_dates else None
    deidentify_dataset(dataset, PatientContext(pseudonymizer, patient_key, shift, policy.max_age_years))
    write_markers(dataset, dates_shifted=shift is not None, pixels_cleaned=pixels_cleaned)
    output = dst_dir / patient_key / study_key / f"{pseudonymizer.instance_key(sop_uid)}.dcm"
    _save_atomically(dataset, output)
    return DeidResult("written", str(src), ref, output=str(output), **keys)


def _save_atomically(dataset: Dataset, output: Path) -> None:
    with atomic_path(output) as temporary:
        dataset.save_as(temporary, enforce_file_format=True)


def _log_result(result: DeidResult, dst_dir: Path) -> None:
    if result.status == "written":
        log.info("deid %s: written %s", result.source_ref, Path(result.output or "").relative_to(dst_dir))
    elif result.status == "quarantined":
        log.warning("deid %s: quarantined (%s)", result.source_ref, result.reason)
    else:
        log.warning("deid %s: failed (%s)", result.source_ref, result.error_kind)


def _check_folders(src_root: Path, dst_dir: Path, source_map: str | Path | None) -> None:
    if not src_root.is_dir():
        raise NotADirectoryError(f"{src_root}: source folder not found — check the path")
    if dst_dir == src_root or src_root in dst_dir.parents:
        raise ValueError(f"{dst_dir}: output folder lies inside the source folder — choose a folder outside it")
    if source_map is not None and dst_dir in Path(source_map).resolve().parents:
        raise ValueError(f"{source_map}: the source map holds source paths and must not lie inside the output "
                         "folder — write it next to the source data")


def _write_summary(dst_dir: Path, report: DeidBatchReport, pseudonymizer: Pseudonymizer,
                   policy: DeidPolicy) -> None:
    records = []
    for result in report.results:
        record = result.public_record(dst_dir)
        if result.output:
            record["sha256"] = hashlib.sha256(Path(result.output).read_bytes()).hexdigest()
        records.append(record)
    summary = {"kind": "breastgpt.deid.summary", "version": 1, "created": dt.datetime.now(dt.UTC).isoformat(),
               "machine": platform.platform(), "secret_fingerprint": pseudonymizer.fingerprint(),
               "policy": policy.describe(), "counts": report.counts, "files": records}
    _write_json_atomically(dst_dir / SUMMARY_NAME, summary)


def _write_source_map(path: Path, report: DeidBatchReport) -> None:
    mapping = {result.source_ref: {"source": result.source, "status": result.status, "output": result.output,
                                   "reason": result.reason} for result in report.results}
    _write_json_atomically(path, {"kind": "breastgpt.deid.source_map", "version": 1, "files": mapping})
