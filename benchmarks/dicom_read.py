"""Milliseconds per mammogram-sized DICOM (3328×2560, 16-bit) to a display-ready 8-bit image.

Ours (`breastgpt.io.dicom.read_display_image`: declared decoder, one combined look-up table for modality LUT,
VOI window and MONOCHROME1 inversion) against a plain pydicom pipeline (`pixel_array` → `apply_modality_lut` →
`apply_voi_lut` → invert → scale to 8 bit) measured in the same run, on the same files. Outputs are compared too:
a faster path that changed the picture would be worthless.

    python benchmarks/dicom_read.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import time_repeated, write_result  # noqa: E402

from breastgpt.io.dicom import read_display_image  # noqa: E402

ROWS, COLUMNS = 3328, 2560


def write_mammogram(path: Path, photometric: str, seed: int) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ROWS, 0:COLUMNS]
    breast = ((xx / COLUMNS) ** 2 + ((yy - ROWS / 2) / (ROWS / 2)) ** 2) < 0.8
    pixels = np.where(breast, 1800 + 600 * np.sin(xx / 97.0) * np.cos(yy / 131.0), 150)
    pixels = (pixels + rng.normal(0, 40, pixels.shape)).clip(0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "MG", ROWS, COLUMNS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.WindowCenter, ds.WindowWidth = 2000, 1800
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def baseline_display(path: Path) -> np.ndarray:
    """What a user writes with pydicom alone."""
    ds = pydicom.dcmread(path)
    values = apply_modality_lut(ds.pixel_array, ds)
    windowed = apply_voi_lut(values, ds)
    low, high = 0.0, float(2 ** int(ds.BitsStored) - 1)
    unit = np.clip((windowed - low) / (high - low), 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        unit = 1.0 - unit
    return np.round(unit * 255.0).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for photometric in ("MONOCHROME2", "MONOCHROME1"):
            path = write_mammogram(Path(folder) / f"{photometric}.dcm", photometric, seed=1)
            ours_out, base_out = read_display_image(path), baseline_display(path)
            max_diff = int(np.abs(ours_out.astype(int) - base_out.astype(int)).max())
            ours = time_repeated(lambda: read_display_image(path), args.repeats)
            base = time_repeated(lambda: baseline_display(path), args.repeats)
            results[photometric] = {
                "ours_ms_median": round(1000 * statistics.median(ours), 1),
                "baseline_ms_median": round(1000 * statistics.median(base), 1),
                "speedup": round(statistics.median(base) / statistics.median(ours), 2),
                "max_abs_pixel_difference": max_diff,
                "repeats": args.repeats,
            }
            print(f"{photometric}: ours {results[photometric]['ours_ms_median']} ms, pydicom baseline "
                  f"{results[photometric]['baseline_ms_median']} ms, speed-up ×{results[photometric]['speedup']}, "
                  f"max |Δ| {max_diff} grey level(s)")
    target = write_result("dicom_read", {"image": f"{ROWS}x{COLUMNS} uint16 (12 bits stored), uncompressed, "
                                                  "window 2000/1800", "results": results,
                                         "note": "pixel difference: pydicom's windowing output range vs our [0,255] "
                                                 "formula can differ by rounding at most"})
    print(f"written {target}")


if __name__ == "__main__":
    main()
