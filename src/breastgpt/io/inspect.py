"""Identify any supported input by its content and describe it: `breastgpt inspect`.

The route (image | volume | slide) is decided from the bytes and structure, never from the file-name suffix
alone (SPEC §3.2). Descriptions carry no patient identifiers.
"""

from __future__ import annotations

from pathlib import Path

from breastgpt.io.errors import CorruptFileError, UnsupportedFormatError
from breastgpt.io.files import check_regular_file, read_head
from breastgpt.io.limits import DEFAULT_LIMITS, ReadLimits

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "bigtiff"),
    (b"MM\x00+", "bigtiff"),
    (b"BM", "bmp"),
    (b"P2", "pnm"),
    (b"P5", "pnm"),
    (b"P3", "pnm"),
    (b"P6", "pnm"),
    (b"NRRD", "nrrd"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
)


def sniff_format(path: str | Path, limits: ReadLimits = DEFAULT_LIMITS) -> str:
    """The container format from the first bytes: dicom, png, jpeg, tiff, bigtiff, bmp, pnm, webp, nifti, nrrd, hdf5
    (slide feature file), dicom-series. A FIFO, device or socket is refused without being opened."""
    path = Path(path)
    if path.is_dir():
        return "dicom-series"
    # Slides may exceed max_file_bytes (they are read region by region): size is each reader's business.
    check_regular_file(path, ReadLimits(max_file_bytes=2**62))
    head = read_head(path, 352)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":  # RIFF alone is also WAV/AVI
        return "webp"
    from breastgpt.io.dicom import _is_raw_dataset
    from breastgpt.io.volume import sniff_volume_format

    volume_format = sniff_volume_format(path)
    if volume_format:
        return volume_format
    if _is_raw_dataset(path):
        return "dicom"
    raise UnsupportedFormatError(path, "unrecognised file type (not DICOM, NIfTI, NRRD, TIFF/SVS, PNG, JPEG, PGM, BMP or WebP)",
                                 "convert it to a supported format")


def is_slide_tiff(path: Path) -> bool:
    """A TIFF is a slide when a slide library recognises a vendor format or it is tiled with a pyramid."""
    import tifffile

    try:
        import openslide

        vendor = openslide.OpenSlide.detect_format(str(path))
        if vendor not in (None, "generic-tiff"):
            return True
    except Exception:  # OpenSlide missing or refusing: fall through to the TIFF structure
        pass
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return bool(tif.pages[0].is_tiled) and (len(series.levels) > 1 or tif.pages[0].imagewidth > 20_000)
    except Exception as exc:
        raise CorruptFileError(path, f"malformed TIFF structure ({type(exc).__name__}: {exc})",
                               "re-export or re-download it") from exc


def inspect_path(path: str | Path, *, mpp: float | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, object]:
    """Normalised metadata of a file or DICOM series folder: kind, modality, dimensions, spacing/µm per pixel, ..."""
    path = Path(path)
    fmt = sniff_format(path, limits)
    if fmt == "dicom":
        from breastgpt.io.dicom import describe_dataset, read_dataset
        from breastgpt.io.dicom_checks import pixel_geometry

        header = read_dataset(path, header_only=True, limits=limits)
        pixel_geometry(path, header, limits)  # an object without an image, or beyond the limits, is refused here
        return {"path": str(path), **describe_dataset(header, path)}
    if fmt == "hdf5":
        from breastgpt.io.feature_file import describe_feature_file

        return {"path": str(path), **describe_feature_file(path, limits=limits)}
    if fmt == "dicom-series":
        from breastgpt.io.dicom_series import describe_dicom_series

        return {"path": str(path), **describe_dicom_series(path, limits=limits)}
    if fmt in {"nifti", "nrrd"}:
        from breastgpt.io.volume import describe_volume_file

        return {"path": str(path), **describe_volume_file(path, limits=limits)}
    if fmt in {"tiff", "bigtiff"} and is_slide_tiff(path) or (mpp is not None and fmt in {"jpeg", "png", "tiff"}):
        from breastgpt.io.wsi import open_slide

        # Describing a slide does not need its µm/px; tiling it does (and says so).
        with open_slide(path, mpp=mpp, limits=limits, require_mpp=False) as slide:
            return {"path": str(path), **slide.describe()}
    from breastgpt.io.raster import raster_info

    return {"path": str(path), **raster_info(path, limits=limits)}


def decode_path(path: str | Path, *, mpp: float | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> object:
    """Fully decode any supported input (used to validate files): a display-ready array for images, a `Volume` for
    volumes, a bounded thumbnail for slides (the pyramid itself is read region by region, never whole) and the
    checked arrays (`FeatureArrays`) of a slide feature file."""
    path = Path(path)
    description = inspect_path(path, mpp=mpp, limits=limits)
    fmt, kind = description["format"], description["kind"]
    if fmt == "dicom" and kind == "image":
        from breastgpt.io.dicom import read_display_image

        return read_display_image(path, limits=limits)
    if kind == "volume":
        from breastgpt.io.volume import read_volume

        if fmt == "dicom":
            from breastgpt.io.dicom import read_dicom_image

            return read_dicom_image(path, limits=limits).modality_values()
        return read_volume(path, limits=limits)
    if fmt == "hdf5":
        from breastgpt.io.feature_file import read_feature_file

        return read_feature_file(path, limits=limits)
    if kind == "slide":
        from breastgpt.io.wsi import open_slide

        with open_slide(path, mpp=mpp, limits=limits) as slide:
            return slide.thumbnail(1024)
    from breastgpt.io.raster import read_raster

    return read_raster(path, limits=limits)
