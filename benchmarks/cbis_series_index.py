"""CBIS-DDSM series resolution: seconds to find every CSV path's series in a download.

The adapter (`cbis_ddsm.SeriesIndex`) finds a series by folder name (NBIA descriptive / classic layouts: one
header per series confirms), else by DICOM header, reading headers only (no pixel data) once per file and caching
them by path, size and mtime. Measured in the same run, in interleaved rounds (median of `--rounds`), resolving
the full-mammogram and ROI-mask paths of every case:

- `names_cold`: NBIA descriptive folder names, empty header cache;
- `headers_cold`: folders named anything (`exported case 0007/series 123/1-1.dcm`), empty header cache — every
  header of the tree is read once;
- `headers_warm`: the same tree again in the same process (cached headers: a second `discover`, e.g. the
  slide/feature job listing or a resumed build);
- `full_read_baseline`: the same lookup from an index built by reading every DICOM whole with pydicom (matching
  series by opening each file, without the header-only read).
Files are in the OS page cache after the first round, so this measures parsing, not disk: on a cold disk the
full read also pays for every pixel byte.

Threads are pinned to 1; the load average is recorded and the result marked noisy when it exceeds the cores.

    python benchmarks/cbis_series_index.py [--cases 20] [--size 3328x2560] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import numpy as np  # noqa: E402
import pydicom  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402

from breastgpt.corpus.sources import cbis_ddsm, get_adapter  # noqa: E402

UID = "1.3.6.1.4.1.9590.100.1.2."
HEADER = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id", "abnormality type",
          "mass shape", "mass margins", "assessment", "pathology", "subtlety", "image file path",
          "cropped image file path", "ROI mask file path"]


def _dicom(path: Path, pixels: np.ndarray, series: str, study: str, patient: str) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID, ds.Modality = study, series, patient, "MG"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def write_tree(root: Path, cases: int, shape: tuple[int, int], renamed: bool) -> None:
    """`cases` mass cases, each a full mammogram and a ROI mask series, in NBIA or arbitrary folder names."""
    rng = np.random.default_rng(0)
    full = (rng.integers(200, 3000, shape)).astype(np.uint16)
    lesion = np.zeros(shape, np.uint8)
    lesion[100:180, 120:200] = 255
    rows = []
    for i in range(cases):
        case = f"Mass-Training_P_{i:05d}_LEFT_CC"
        study, series = f"{UID}{10_000_000 + i}1", f"{UID}{20_000_000 + i}2"
        roi_study, roi_series = f"{UID}{30_000_000 + i}3", f"{UID}{40_000_000 + i}4"
        for pixels, c, st, se, what in ((full, case, study, series, "full mammogram images"),
                                        (lesion, f"{case}_1", roi_study, roi_series, "ROI mask images")):
            folder = (Path(f"exported case {i:04d}") / f"{what} {se[-3:]}" if renamed
                      else Path(c) / f"07-20-2016-DDSM-NA-{st[-5:]}" / f"1.000000-{what}-{se[-5:]}")
            _dicom(root / "CBIS-DDSM" / folder / "1-1.dcm", pixels, se, st, c)
        rows.append(",".join([f"P_{i:05d}", "2", "LEFT", "CC", "1", "mass", "OVAL", "CIRCUMSCRIBED", "3", "BENIGN", "4",
                              f"{case}/{study}/{series}/000000.dcm", f"{case}_1/{roi_study}/{roi_series}/000001.dcm",
                              f"{case}_1/{roi_study}/{roi_series}/000000.dcm"]))
    (root / "mass_case_description_train_set.csv").write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")


def csv_paths(root: Path) -> list[str]:
    import csv

    with open(root / "mass_case_description_train_set.csv", newline="") as handle:
        return [row[key] for row in csv.DictReader(handle) for key in ("image file path", "ROI mask file path")]


def resolve(root: Path, cold: bool) -> int:
    if cold:
        cbis_ddsm._HEADERS.clear()
    index = cbis_ddsm.SeriesIndex(root)
    found = [index.files(path) for path in csv_paths(root)]
    assert all(len(files) == 1 for files in found), "every series should have been found"
    return len(found)


def resolve_full_read(root: Path) -> int:
    by_series: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.dcm")):
        by_series.setdefault(str(pydicom.dcmread(path).SeriesInstanceUID), []).append(path)
    found = [by_series.get(path.split("/")[2], []) for path in csv_paths(root)]
    assert all(len(files) == 1 for files in found)
    return len(found)


def discover_count(root: Path) -> int:
    cbis_ddsm._HEADERS.clear()
    samples = [s for s in get_adapter("cbis_ddsm").discover(root) if hasattr(s, "labels")]
    assert all(s.box_masks and not s.missing for s in samples), "every ROI mask should have been found"
    return len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--size", default="3328x2560")  # a CBIS-DDSM-sized film
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.size.split("x"))
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        names, renamed = Path(folder) / "names", Path(folder) / "renamed"
        write_tree(names, args.cases, shape, renamed=False)
        write_tree(renamed, args.cases, shape, renamed=True)
        runs = {"names_cold": lambda: resolve(names, True), "headers_cold": lambda: resolve(renamed, True),
                "headers_warm": lambda: resolve(renamed, False), "full_read_baseline": lambda: resolve_full_read(renamed)}
        assert discover_count(names) == discover_count(renamed) == args.cases  # also warms the OS file cache
        timings: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                timings[name].append(time.perf_counter() - start)
        size_mb = sum(p.stat().st_size for p in renamed.rglob("*.dcm")) / 1e6
    load_end = os.getloadavg()[0]
    medians = {name: statistics.median(values) for name, values in timings.items()}
    baseline = medians["full_read_baseline"]
    results = {name: {"seconds_median": round(value, 4), "seconds": [round(v, 4) for v in timings[name]],
                      "x_faster_than_full_read": round(baseline / value, 2)} for name, value in medians.items()}
    cores = os.cpu_count() or 1
    noisy = max(load_start, load_end) > cores
    for name, row in results.items():
        print(f"{name:>20}: {row['seconds_median']:.3f} s (x{row['x_faster_than_full_read']} vs full read)")
    print(f"load {load_start:.2f} -> {load_end:.2f} on {cores} cores{' (noisy)' if noisy else ''}")
    target = write_result("cbis_series_index", {
        "cases": args.cases, "dicom_files": 2 * args.cases, "image": f"{shape[0]}x{shape[1]} uint16 full + uint8 mask",
        "measures": "resolving every full-image and ROI-mask CSV path (SeriesIndex + files), page-cached files",
        "tree_mb": round(size_mb, 1), "rounds": args.rounds, "threads": 1, "results": results,
        "load_average": [round(load_start, 2), round(load_end, 2)], "noisy": noisy})
    print(f"written {target}")


if __name__ == "__main__":
    main()
