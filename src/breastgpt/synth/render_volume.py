"""Volumes whose voxels carry the labels: breast MRI sequences with an enhancing lesion (mass / non-mass /
focus, with a persistent / plateau / washout time course) and chest CT in Hounsfield units with CT-RATE findings."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from breastgpt.synth.render import smooth_noise

CURVES = {"persistent": (1.0, 1.35, 1.6), "plateau": (1.0, 1.55, 1.55), "washout": (1.0, 1.7, 1.2)}
CT_DRAWN = ("lung_nodule", "pleural_effusion", "cardiomegaly", "emphysema", "consolidation",
            "arterial_wall_calcification", "pericardial_effusion", "atelectasis")


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    zz, yy, xx = np.ogrid[0:shape[0], 0:shape[1], 0:shape[2]]
    return (((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
            + ((xx - centre[2]) / radii[2]) ** 2) <= 1.0


def mri_lesion_mask(rng, shape, side: str, lesion_type: str) -> np.ndarray:
    z, y, x = shape
    cx = x * (0.28 if side == "R" else 0.72)  # radiological convention: patient right on image left
    centre = (z / 2 + rng.uniform(-2, 2), y * 0.4, cx + rng.uniform(-4, 4))
    if lesion_type == "none":
        return np.zeros(shape, bool)
    if lesion_type == "focus":
        return _ellipsoid(shape, centre, (1.2, 2.0, 2.0))
    if lesion_type == "non_mass_enhancement":
        clumps = smooth_noise(rng, shape, 2.0) > 0.6
        return clumps & _ellipsoid(shape, centre, (z * 0.3, y * 0.12, x * 0.16))
    mask = _ellipsoid(shape, centre, (z * 0.18, y * 0.1, x * 0.07))
    return ndimage.binary_opening(mask) | mask


def render_mri(rng: np.random.Generator, shape: tuple[int, int, int], side: str, lesion_type: str,
               curve: str, malignant: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({sequence name: float32 volume (Z,Y,X)}, uint8 label map with 1 = lesion)."""
    z, y, x = shape
    body = _ellipsoid(shape, (z / 2, y * 0.95, x / 2), (z, y * 0.55, x * 0.48))
    breasts = _ellipsoid(shape, (z / 2, y * 0.5, x * 0.28), (z, y * 0.35, x * 0.22)) | \
        _ellipsoid(shape, (z / 2, y * 0.5, x * 0.72), (z, y * 0.35, x * 0.22))
    tissue = (body | breasts).astype(np.float32)
    texture = 1 + 0.1 * smooth_noise(rng, shape, 2.0)
    lesion = mri_lesion_mask(rng, shape, side, lesion_type) & (body | breasts)
    base = 300 * tissue * texture
    volumes = {"T1": base.copy()}
    for phase, gain in enumerate(CURVES[curve]):
        seq = base * (1.05 if phase else 1.0)
        seq[lesion] *= gain * (1.0 if phase else 1.0)
        volumes[f"T1_dyn{phase}"] = seq
    t2 = base.copy()
    t2[lesion] *= 0.8 if malignant else 1.8
    dwi = 150 * tissue * texture
    dwi[lesion] *= 2.5 if malignant else 1.1
    adc = 1400 * tissue * texture
    adc[lesion] *= 0.55 if malignant else 1.1
    volumes.update({"T2": t2, "DWI": dwi, "ADC": adc})
    noisy = {k: (v + rng.normal(0, 6, shape)).clip(0).astype(np.float32) for k, v in volumes.items()}
    return noisy, lesion.astype(np.uint8)


def render_ct(rng: np.random.Generator, shape: tuple[int, int, int], findings: dict[str, bool]) -> np.ndarray:
    """A chest CT in HU (int16) with the drawn subset of CT-RATE abnormalities set in `findings`."""
    z, y, x = shape
    hu = np.full(shape, -1000.0)
    hu[_ellipsoid(shape, (z / 2, y / 2, x / 2), (z, y * 0.42, x * 0.47))] = 30.0
    lungs = [(z / 2, y * 0.48, x * 0.3), (z / 2, y * 0.48, x * 0.7)]
    for centre in lungs:
        hu[_ellipsoid(shape, centre, (z * 0.48, y * 0.3, x * 0.15))] = -850.0
    heart_r = 0.16 if findings.get("cardiomegaly") else 0.1
    heart = _ellipsoid(shape, (z * 0.6, y * 0.55, x * 0.52), (z * 0.25, y * heart_r, x * heart_r))
    hu[heart] = 40.0
    if findings.get("pericardial_effusion"):
        rim = _ellipsoid(shape, (z * 0.6, y * 0.55, x * 0.52), (z * 0.28, y * (heart_r + 0.03), x * (heart_r + 0.03)))
        hu[rim & ~heart] = 12.0
    _draw_lung_findings(rng, hu, shape, lungs, findings)
    hu += rng.normal(0, 12, shape)
    return hu.clip(-1024, 3000).astype(np.int16)


def _draw_lung_findings(rng, hu, shape, lungs, findings) -> None:
    z, y, x = shape
    lung = hu < -700
    if findings.get("emphysema"):
        hu[lung & (smooth_noise(rng, shape, 1.5) > 0.8)] = -980.0
    if findings.get("pleural_effusion"):
        hu[lung & (np.arange(y)[None, :, None] > y * 0.66)] = 10.0
    if findings.get("consolidation"):
        hu[lung & _ellipsoid(shape, (z * 0.4, y * 0.45, lungs[0][2]), (z * 0.15, y * 0.1, x * 0.08))] = -50.0
    if findings.get("atelectasis"):
        hu[lung & _ellipsoid(shape, (z * 0.75, y * 0.6, lungs[1][2]), (z * 0.08, y * 0.05, x * 0.1))] = 20.0
    if findings.get("lung_nodule"):
        c = lungs[int(rng.integers(0, 2))]
        hu[_ellipsoid(shape, (c[0] + rng.uniform(-3, 3), c[1] - y * 0.08, c[2]), (2.2, 2.5, 2.5))] = 45.0
    if findings.get("arterial_wall_calcification"):
        aorta = _ellipsoid(shape, (z / 2, y * 0.62, x * 0.45), (z, y * 0.05, x * 0.05))
        inner = _ellipsoid(shape, (z / 2, y * 0.62, x * 0.45), (z, y * 0.035, x * 0.035))
        hu[aorta & ~inner] = 600.0
