"""Milliseconds per mammogram-sized DICOM (3328×2560, 16-bit) to a display-ready 8-bit image.

Two comparisons, each in the same run with rounds interleaved (order rotated), medians, single-threaded:
- end to end: ours (`breastgpt.io.dicom.read_display_image`: declared decoder, one combined look-up table for
  modality LUT, VOI window and MONOCHROME1 inversion) against a plain pydicom pipeline (`pixel_array` →
  `apply_modality_lut` → `apply_voi_lut` → invert → scale to 8 bit);
- the display step alone (`DicomImage.display` on a decoded image): the block-wise table look-up against the
  previous one-pass `table[stored]` indexing, everything else equal.
Outputs are compared too: a faster path that changed the picture would be worthless.

    python benchmarks/dicom_read.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("OMP_NUM_THREADS", "1")

from _common import load_record, time_interleaved, write_result  # noqa: E402

from breastgpt.io import voi  # noqa: E402
from breastgpt.io.dicom import read_dicom_image, read_display_image  # noqa: E402

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


def one_pass_look_up(table: np.ndarray, stored: np.ndarray, offset: int) -> np.ndarray:
    """The display step's look-up before it went block-wise: one fancy-indexing pass over the whole image."""
    return table[stored] if offset == 0 else table[stored.astype(np.int32) - offset]


def display_with(look_up, image) -> np.ndarray:
    kept = voi._look_up
    voi._look_up = look_up
    try:
        return image.display()
    finally:
        voi._look_up = kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (median taken)")
    args = parser.parse_args()
    results, loads = {}, [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as folder:
        for photometric in ("MONOCHROME2", "MONOCHROME1"):
            path = write_mammogram(Path(folder) / f"{photometric}.dcm", photometric, seed=1)
            ours_out, base_out = read_display_image(path), baseline_display(path)
            max_diff = int(np.abs(ours_out.astype(int) - base_out.astype(int)).max())
            image, block_wise = read_dicom_image(path), voi._look_up
            same_step = bool(np.array_equal(display_with(block_wise, image), display_with(one_pass_look_up, image)))
            times = time_interleaved({"ours": lambda: read_display_image(path), "pydicom": lambda: baseline_display(path),
                                      "step_block_wise": lambda: display_with(block_wise, image),
                                      "step_one_pass": lambda: display_with(one_pass_look_up, image)}, args.repeats)
            loads.append(os.getloadavg()[0])
            ms = {name: round(1000 * statistics.median(values), 2) for name, values in times.items()}
            results[photometric] = {
                "ours_ms_median": ms["ours"], "baseline_ms_median": ms["pydicom"],
                "speedup": round(ms["pydicom"] / ms["ours"], 2), "max_abs_pixel_difference": max_diff,
                "display_step": {"block_wise_ms_median": ms["step_block_wise"],
                                 "one_pass_ms_median": ms["step_one_pass"],
                                 "speedup": round(ms["step_one_pass"] / ms["step_block_wise"], 2),
                                 "identical_output": same_step},
                "rounds": args.repeats,
            }
            step = results[photometric]["display_step"]
            print(f"{photometric}: ours {ms['ours']} ms, pydicom baseline {ms['pydicom']} ms, speed-up "
                  f"×{results[photometric]['speedup']}, max |Δ| {max_diff} grey level(s); display step "
                  f"{step['block_wise_ms_median']} ms vs {step['one_pass_ms_median']} ms one-pass "
                  f"(×{step['speedup']}, identical {same_step})")
    target = write_result("dicom_read", {"image": f"{ROWS}x{COLUMNS} uint16 (12 bits stored), uncompressed, "
                                                  "window 2000/1800", "results": results, **load_record(loads),
                                         "note": "pixel difference: pydicom's windowing output range vs our [0,255] "
                                                 "formula can differ by rounding at most"})
    print(f"written {target}")


if __name__ == "__main__":
    main()
