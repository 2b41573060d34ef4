"""The de-identification showcase, the demo's first stages: DICOM studies with planted fake identifiers →
read every file → de-identify (PS3.15 basic profile, keyed pseudonyms) → PHI scan of everything written."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("breastgpt.demo")


def stage_synthesize(ctx: Any) -> dict[str, object]:
    """Synthetic screening mammography studies (CC + MLO per breast) as DICOM, with planted fake identifiers."""
    from breastgpt.synth.render import render_mammogram
    from breastgpt.synth.writers import write_dicom

    patients = ctx.settings.deid_patients
    rng = np.random.default_rng(7)
    raw = ctx.out / "raw_dicom"
    written = 0
    with ctx.progress() as progress:
        task = progress.add_task("synthesizing studies", total=patients * 4)
        for patient in range(patients):
            density = "ABCD"[patient % 4]
            for side in ("L", "R"):
                for view in ("CC", "MLO"):
                    pixels, _ = render_mammogram(rng, 256, 208, side, density)
                    key = f"demo-{patient:03d}-{side}{view}"
                    write_dicom(raw / f"patient{patient:03d}" / f"{side}_{view}.dcm", pixels, key=key,
                                laterality=side, view=view, window=(1200.0, 2400.0),
                                study_uid=None, patient_id=f"FAKEPHI-ID-{patient:05d}")
                    written += 1
                    progress.advance(task)
    ctx.state["raw"] = raw
    return {"patients": patients, "dicom_files": written}


def stage_inspect(ctx: Any) -> dict[str, object]:
    """Every file through the readers: metadata and a decoded, display-ready image."""
    from breastgpt.io import MedicalFileError, decode_path, inspect_path

    files = sorted(p for p in Path(ctx.state["raw"]).rglob("*.dcm"))
    kinds: Counter[str] = Counter()
    failures = 0
    with ctx.progress() as progress:
        task = progress.add_task("reading", total=len(files))
        for path in files:
            try:
                info = inspect_path(path)
                decode_path(path)
                kinds[f"{info['kind']}/{info['modality']}/{info['laterality']}"] += 1
            except MedicalFileError as error:
                failures += 1
                log.warning("unreadable: %s", error.as_record())
            progress.advance(task)
    return {"read": sum(kinds.values()), "failed": failures, "by_kind": dict(sorted(kinds.items()))}


def stage_deidentify(ctx: Any) -> dict[str, object]:
    """PS3.15 basic profile with keyed pseudonyms and per-patient date shifts."""
    from breastgpt.deid import DeidPolicy, Pseudonymizer, deidentify_folder

    out = ctx.out / "deidentified"
    files = sorted(Path(ctx.state["raw"]).rglob("*.dcm"))
    with ctx.progress() as progress:
        task = progress.add_task("de-identifying", total=len(files))
        report = deidentify_folder(ctx.state["raw"], out, Pseudonymizer(ctx.secret), DeidPolicy(source="demo"),
                                   on_result=lambda _: progress.advance(task))
    ctx.state["deidentified"] = out
    counts = report.counts
    patients = {result.patient_key for result in report.results if result.patient_key}
    if counts.get("written", 0) != len(files):
        raise RuntimeError(f"de-identification wrote {counts.get('written', 0)} of {len(files)} files: {counts}")
    return {**counts, "pseudonymous_patients": len(patients)}


def stage_phi_scan(ctx: Any) -> dict[str, object]:
    """Every identifying value of the source headers is looked for in every output file, name and log."""
    from breastgpt.deid import PhiScanner

    scanner = PhiScanner.from_files(sorted(Path(ctx.state["raw"]).rglob("*.dcm")))
    findings = scanner.scan_tree(ctx.state["deidentified"])
    log_path = ctx.out / "demo.log"
    if log_path.exists():
        findings += scanner.scan_file(log_path, ctx.out)
    if findings:
        raise RuntimeError(f"{len(findings)} identifying value(s) found in outputs: {[str(f) for f in findings[:5]]}")
    return {"identifying_values_checked": len(scanner), "leaks": 0}


__all__ = ["stage_deidentify", "stage_inspect", "stage_phi_scan", "stage_synthesize"]
