"""INbreast: `AllDICOMs/<File Name>_<patient hash>_MG_<L|R>_<CC|ML>_ANON.dcm`, `INbreast.csv` (`;`-separated;
`Laterality;View;Acquisition date;File Name;ACR;Bi-Rads`, Patient ID/age columns are 'removed' in the public
release) or `INbreast.xls`, and `AllXML/<File Name>.xml` (Apple plist: Images → ROIs → Name, Point_px '(x, y)')."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

from breastgpt.corpus.sources.base import SourceProblem, SourceSample, checked_sample, register, safe_id
from breastgpt.corpus.sources.tables import TableError, cell, find_file, parse_birads, parse_density, read_table

ROI_KIND = {"mass": "mass", "calcification": "calcification", "cluster": "calcification",
            "distortion": "architectural_distortion", "asymmetry": "asymmetry", "spiculated region": "mass"}
POINT = re.compile(r"\(\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\)")
VIEW = {"CC": "CC", "MLO": "MLO", "ML": "ML"}


def read_rois(path: Path) -> list[dict]:
    """Boxes from an INbreast plist XML: one per ROI, from its Point_px polygon."""
    tree = ET.parse(path)  # stdlib parser: no DTD/entity expansion of external resources
    rois = []
    for roi in tree.iter("dict"):
        keys = list(roi)
        values = {k.text: keys[i + 1] for i, k in enumerate(keys[:-1]) if k.tag == "key"}
        if "Point_px" not in values or "Name" not in values:
            continue
        points = [POINT.match(s.text or "") for s in values["Point_px"].iter("string")]
        xs = [float(m.group(1)) for m in points if m]
        ys = [float(m.group(2)) for m in points if m]
        if not xs:
            continue
        name = (values["Name"].text or "").strip()
        rois.append({"box": [int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1], "label": name.lower()})
    return rois


@register
class INbreastAdapter:
    name = "inbreast"
    modality = "mammography"

    def discover(self, root: Path) -> Iterator[SourceSample | SourceProblem]:
        table_path = find_file(root, "INbreast.csv", "INbreast.xls", "INbreast.xlsx")
        try:
            if table_path is None:
                raise TableError(f"{root}: INbreast.csv / INbreast.xls not found")
            table = read_table(table_path, sep=";", required=("File Name", "Bi-Rads"))
        except TableError as exc:
            yield SourceProblem(self.name, str(root), str(exc))
            return
        base = table_path.parent  # AllDICOMs/ and AllXML/ sit beside the table
        dicoms = {p.name.split("_")[0]: p for p in (base / "AllDICOMs").glob("*.dcm") if not p.name.startswith(".")}
        root = base
        for i, row in table.iterrows():
            if cell(row, "File Name"):
                yield self._sample(root, table_path.name, i, row, dicoms)

    def _sample(self, root, table_name, i, row, dicoms) -> SourceSample | SourceProblem:
        where = f"{table_name}:{i + 2}"
        file_id = cell(row, "File Name").split(".")[0]
        path = dicoms.get(file_id)
        if path is None:
            return SourceProblem(self.name, where, f"no AllDICOMs/{file_id}_*.dcm")
        parts = path.stem.split("_")
        try:
            labels = {"laterality": cell(row, "Laterality") or parts[3], "view": VIEW[cell(row, "View") or parts[4]],
                      "birads": parse_birads(cell(row, "Bi-Rads"))}
            density = parse_density(cell(row, "ACR"))
            if density:
                labels["density"] = density
            xml = root / "AllXML" / f"{file_id}.xml"
            if xml.is_file():
                labels["boxes"] = read_rois(xml)
                kinds = [ROI_KIND.get(b["label"], "other") for b in labels["boxes"]]
                labels["abnormality"] = kinds[0] if kinds else "none"
        except (KeyError, ValueError, IndexError, ET.ParseError) as exc:
            return SourceProblem(self.name, where, f"{type(exc).__name__}: {exc}")
        return checked_sample(self.name, where, sample_id=safe_id(file_id), patient_id=parts[1],
                              study_id=parts[1], modality="mammography", kind="image", media=[path],
                              labels=labels, meta={"view": labels["view"]},
                              missing=[] if (root / "AllXML").is_dir() else ["roi_contour"])
