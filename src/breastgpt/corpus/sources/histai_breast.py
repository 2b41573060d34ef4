"""HISTAI-breast: per-case folders of `.tiff` whole-slide images with a case metadata table (`metadata.csv` or
`*.json` beside the slides) giving the pathologist's diagnosis / conclusion text. The report text is kept
verbatim (answer provenance 'report'); no structured label is invented from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, cell, find_file, read_table

TEXT_KEYS = ("diagnosis", "conclusion", "report", "description", "micro_protocol", "diagnosis_text")
CASE_KEYS = ("case_id", "case", "case_mapping", "slide_case")


def _json_report(folder: Path) -> str | None:
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        parts = [str(data[k]).strip() for k in TEXT_KEYS if isinstance(data, dict) and data.get(k)]
        if parts:
            return "\n".join(parts)
    return None


@register
class HISTAIBreastAdapter:
    name = "histai_breast"
    modality = "pathology"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        reports = {}
        table_path = find_file(root, "metadata.csv")
        if table_path is not None:
            try:
                for _, row in read_table(table_path).iterrows():
                    case = cell(row, *CASE_KEYS)
                    text = "\n".join(cell(row, k) for k in TEXT_KEYS if cell(row, k))
                    if case and text:
                        reports[case] = text
            except TableError as exc:
                yield SourceProblem(self.name, str(table_path), str(exc))
        slides = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tiff", ".tif"))
        if not slides:
            yield SourceProblem(self.name, str(root), "no .tiff slides found")
        for slide in slides:
            case = slide.parent.name if slide.parent != root else slide.stem
            report = reports.get(case) or _json_report(slide.parent)
            rel = slide.relative_to(root).with_suffix("")
            yield checked_sample(self.name, str(slide), sample_id=safe_id(*rel.parts), patient_id=case,
                                 study_id=case, modality="pathology", kind="slide", media=[slide],
                                 labels={}, report=report)
