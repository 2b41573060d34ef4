"""What a published item's media say about it: the input kind, the modalities it can be, its study.

Evidence, strongest first:
  DICOM header      `Modality` (MG, US, MR, CT, SM) fixes the modality; `StudyInstanceUID` gives the study;
                    multi-frame CT/MR is a volume, SM a slide;
  file content      sniffed by `breastgpt.io` (never by the name alone when the file is there): NIfTI/NRRD are
                    volumes (MRI or CT); a pyramidal or vendor TIFF is a slide (pathology); PNG/JPEG/BMP/PNM and
                    plain TIFF are 2-D images, which any modality can be;
  file type         when the file is not under the media root (or its content is not a medical format): the suffix
                    (`.h5`/`.hdf5` tile-feature files and `.svs`/`.ndpi`/`.mrxs`/`.scn` slides -> slide; `.nii`,
                    `.nii.gz`, `.nrrd`, `.mha`, `.npz` -> volume), else the ms-swift slot it sits in (`videos` ->
                    volume, `slides` -> slide, `images` -> 2-D image).
A volume is MRI or CT (the bench has no other 3-D modality); a slide is pathology. Bytes are read only through
`breastgpt.io` (DICOM headers, format sniffing, slide detection) and `artifacts.sha256_file` (hashing).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from breastgpt.artifacts import sha256_file
from breastgpt.io.errors import MedicalFileError

DICOM_MODALITIES = {"MG": "mammography", "US": "ultrasound", "MR": "mri", "CT": "ct", "SM": "pathology"}
KIND_MODALITIES: dict[str, frozenset[str] | None] = {  # None: the kind alone does not narrow the modality
    "image": None, "volume": frozenset({"mri", "ct"}), "slide": frozenset({"pathology"})}
SUFFIX_KINDS: dict[str, str] = {
    ".h5": "slide", ".hdf5": "slide", ".svs": "slide", ".ndpi": "slide", ".mrxs": "slide", ".scn": "slide",
    ".nii": "volume", ".nii.gz": "volume", ".nrrd": "volume", ".mha": "volume", ".npz": "volume",
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".bmp": "image", ".pgm": "image",
}
_RASTER_FORMATS = ("png", "jpeg", "bmp", "pnm", "tiff", "bigtiff")


@dataclass(frozen=True)
class MediaFacts:
    path: str
    kind: str  # image | volume | slide
    modalities: frozenset[str] | None  # the modalities this input can be; None = any
    evidence: str  # dicom | content | file type | slot
    sha256: str = ""  # "" when the file was not there to hash
    study: str | None = None  # pseudonymous study key from the DICOM header
    problem: str | None = None  # why the file could not be read, when it was there


def media_facts(path: str, slot_kind: str, media_root: Path | None) -> MediaFacts:
    """Facts about one entry of `images` (slot 'image'), `videos` ('volume') or `slides` ('slide')."""
    full = Path(media_root) / path if media_root is not None else None
    if full is not None and full.is_dir():
        return MediaFacts(path, "volume", KIND_MODALITIES["volume"], "content")  # a series or frame folder
    if full is not None and full.is_file():
        try:
            facts = _from_content(path, full)
        except MedicalFileError as exc:
            return _with(_from_name(path, slot_kind), sha256=sha256_file(full), problem=exc.problem)
        if facts is not None:
            return _with(facts, sha256=sha256_file(full))
        return _with(_from_name(path, slot_kind), sha256=sha256_file(full))
    return _from_name(path, slot_kind)


def _from_name(path: str, slot_kind: str) -> MediaFacts:
    low = path.lower()
    suffix = next((s for s in sorted(SUFFIX_KINDS, key=len, reverse=True) if low.endswith(s)), None)
    if suffix is not None:
        kind = SUFFIX_KINDS[suffix]
        return MediaFacts(path, kind, KIND_MODALITIES[kind], "file type")
    return MediaFacts(path, slot_kind, KIND_MODALITIES[slot_kind], "slot")


def _from_content(path: str, full: Path) -> MediaFacts | None:
    """Facts from the bytes; None when they are not a medical format `breastgpt.io` knows (e.g. HDF5, NPZ)."""
    from breastgpt.io.inspect import is_slide_tiff, sniff_format

    try:
        fmt = sniff_format(full)
    except MedicalFileError:
        return None
    if fmt == "dicom":
        return _from_dicom(path, full)
    if fmt in ("nifti", "nrrd"):
        return MediaFacts(path, "volume", KIND_MODALITIES["volume"], "content")
    if fmt in ("tiff", "bigtiff") and is_slide_tiff(full):
        return MediaFacts(path, "slide", KIND_MODALITIES["slide"], "content")
    if fmt in _RASTER_FORMATS:
        return MediaFacts(path, "image", None, "content")
    return None


def _from_dicom(path: str, full: Path) -> MediaFacts:
    from breastgpt.io.dicom import read_dataset

    header = read_dataset(full, header_only=True)
    code = str(header.get("Modality", "") or "").upper()
    modality = DICOM_MODALITIES.get(code)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    kind = "slide" if code == "SM" else "volume" if code in ("CT", "MR") and frames > 1 else "image"
    uid = str(header.get("StudyInstanceUID", "") or "")
    # the UID is an identifier: only a digest of it leaves this function
    study = f"dicom-study-{hashlib.sha256(uid.encode()).hexdigest()[:16]}" if uid else None
    return MediaFacts(path, kind, frozenset({modality}) if modality else None, "dicom", study=study)


def _with(facts: MediaFacts, **changes: object) -> MediaFacts:
    return MediaFacts(**{**facts.__dict__, **changes})
