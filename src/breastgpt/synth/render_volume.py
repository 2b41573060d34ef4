"""Volumes whose voxels carry the labels: breast MRI sequences with an enhancing lesion (mass / non-mass /
focus, with a persistent / plateau / washout time course) and chest CT in Hounsfield units with CT-RATE findings."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from breastgpt.synth.render import smooth_noise

# Lesion signal per dynamic phase (pre-contrast, early, delayed) relative to the unenhanced tissue. Enhancing
# cancers reach 2-3x their pre-contrast signal in the early phase; the three time courses differ in the
# delayed phase (still rising, flat, falling), by at least 0.45 of the baseline so that they survive 8-bit
# windowing at the CPU demo's size.
CURVES = {"persistent": (1.0, 1.9, 2.5), "plateau": (1.0, 2.4, 2.4), "washout": (1.0, 2.7, 1.9)}
BLOOD_POOL = 3.2  # the heart / blood pool after contrast: the brightest structure of every post-contrast phase
# The dynamic series is fat-suppressed, as breast DCE protocols are: the breast's fat-dominated background keeps
# this fraction of its plain-T1 signal while the lesion (no fat) keeps its own, so an enhancing lesion is the
# brightest thing in the breast. Without suppression the parenchymal pattern is as bright as the lesion, and the
# CPU demo's small model cannot find the lesion from its ~40 training studies.
FAT_SAT = 0.4
CT_DRAWN = ("lung_nodule", "pleural_effusion", "cardiomegaly", "emphysema", "consolidation",
            "arterial_wall_calcification", "pericardial_effusion", "atelectasis")


def _ellipsoid(shape, centre, radii, wobble: np.ndarray | float = 0.0) -> np.ndarray:
    zz, yy, xx = np.ogrid[0:shape[0], 0:shape[1], 0:shape[2]]
    return (((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
            + ((xx - centre[2]) / radii[2]) ** 2) <= 1.0 + wobble


def mri_lesion_mask(rng, shape, side: str, lesion_type: str, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The lesion in the breast on `side`; `shift` is that breast's (y, x) offset as fractions of the volume."""
    z, y, x = shape
    cx = x * ((0.28 if side == "R" else 0.72) + shift[1])  # radiological convention: patient right on image left
    centre = (z / 2 + rng.uniform(-2, 2), y * (0.4 + shift[0]), cx + rng.uniform(-4, 4))
    if lesion_type == "none":
        return np.zeros(shape, bool)
    # Sizes keep each lesion type visible at the 64 px in-plane volumes of the CPU demo; each lesion has its own
    # size within its type (reports then state different measurements, as real ones do).
    k = rng.uniform(0.8, 1.25)
    if lesion_type == "focus":
        return _ellipsoid(shape, centre, (2.0, y * 0.05 * k, x * 0.04 * k))
    if lesion_type == "non_mass_enhancement":
        clumps = smooth_noise(rng, shape, 2.0) > 0.4
        return clumps & _ellipsoid(shape, centre, (z * 0.35, y * 0.2 * k, x * 0.2 * k))
    mask = _ellipsoid(shape, centre, (z * 0.25, y * 0.16 * k, x * 0.12 * k))
    return ndimage.binary_opening(mask) | mask


def render_mri(rng: np.random.Generator, shape: tuple[int, int, int], side: str, lesion_type: str,
               curve: str, malignant: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({sequence name: float32 volume (Z,Y,X)}, uint8 label map with 1 = lesion)."""
    z, y, x = shape
    # Per-patient anatomy (body and breast size) and a smooth coil-sensitivity field: patients differ, so two
    # patients' scans are not perceptual near-duplicates (the corpus audit would rightly flag identical anatomy).
    # The ranges are wide enough that cohorts of several hundred patients have no two alike (issue 9's demo
    # audits 200+ MRI patients per cohort; narrower ranges gave a few pairs of near-identical anatomy).
    size = rng.uniform(0.75, 1.25)
    b = rng.uniform(0.7, 1.3, size=(2, 2))  # each breast's own height and width
    gy, gx = rng.uniform(-0.1, 0.1, size=2)  # where the patient lies in the coil
    shifts = [(gy + rng.uniform(-0.08, 0.08), gx + rng.uniform(-0.04, 0.04)) for _ in range(2)]  # right, left breast
    body = _ellipsoid(shape, (z / 2, y * (0.95 + gy), x * (0.5 + gx)), (z, y * 0.55 * size, x * 0.48 * size))
    breasts = np.zeros(shape, bool)
    for (dy, dx), cx, (sy, sx) in zip(shifts, (0.28, 0.72), b):
        breasts |= _ellipsoid(shape, (z / 2, y * (0.5 + dy), x * (cx + dx)), (z, y * 0.35 * sy, x * 0.22 * sx))
    tissue = (body | breasts).astype(np.float32)
    coil = 1 + 0.35 * smooth_noise(rng, shape, max(shape) / 3)
    parenchyma = 0.35 * smooth_noise(rng, shape, max(shape) / 12)  # each patient's own fibroglandular pattern
    texture = (1 + 0.1 * smooth_noise(rng, shape, 2.0) + parenchyma) * coil
    lesion = mri_lesion_mask(rng, shape, side, lesion_type, shifts[0 if side == "R" else 1]) & (body | breasts)
    base = 300 * tissue * texture
    # A lesion has its own, homogeneous signal (times the coil field, not the parenchymal pattern), so it stands
    # out from the fibroglandular tissue around it as an enhancing lesion does on a fat-suppressed scan.
    own = 300 * coil[lesion]
    # The heart behind the breasts: after contrast it is the brightest structure, so each post-contrast phase's
    # percentile window is set by the same blood pool and the lesion's grey level from phase to phase follows its
    # time course (without it the lesion itself sets the window of every phase and the course is lost).
    heart = _ellipsoid(shape, (z / 2, y * (0.9 + gy), x * (0.5 + gx)), (z * 0.45, y * 0.1, x * 0.13)) & body
    volumes = {"T1": base.copy()}
    for phase, gain in enumerate(CURVES[curve]):
        seq = base * (FAT_SAT * (1.05 if phase else 1.0))
        seq[lesion] = own * gain
        if phase:
            seq[heart] = 300 * BLOOD_POOL * coil[heart]
        volumes[f"T1_dyn{phase}"] = seq
    # Cancers: dark on T2, restricted diffusion (bright DWI, dark ADC); benign lesions: bright on T2 (oedema,
    # fibroadenoma), no restriction.
    t2 = base.copy()
    t2[lesion] = own * (0.55 if malignant else 2.0)
    dwi = 150 * tissue * texture
    dwi[lesion] = own / 2 * (3.0 if malignant else 1.0)
    adc = 1400 * tissue * texture
    adc[lesion] = own * 1400 / 300 * (0.45 if malignant else 1.2)
    volumes.update({"T2": t2, "DWI": dwi, "ADC": adc})
    noisy = {k: (v + rng.normal(0, 6, shape)).clip(0).astype(np.float32) for k, v in volumes.items()}
    return noisy, lesion.astype(np.uint8)


def render_ct(rng: np.random.Generator, shape: tuple[int, int, int], findings: dict[str, bool]) -> np.ndarray:
    """A chest CT in HU (int16) with the drawn subset of CT-RATE abnormalities set in `findings`."""
    z, y, x = shape
    hu = np.full(shape, -1000.0)
    # Per-patient body habitus and lung size (patients differ; see render_mri).
    body, lung = rng.uniform(0.7, 1.3, size=2), rng.uniform(0.65, 1.25, size=2)
    dy, dx = rng.uniform(-0.15, 0.15, size=2)  # where the patient lies on the table
    outline = 0.4 * smooth_noise(rng, shape, max(shape) / 6)  # each patient's own body outline
    hu[_ellipsoid(shape, (z / 2, y * (0.5 + dy), x * (0.5 + dx)), (z, y * 0.42 * body[0], x * 0.47 * body[1]),
                  outline)] = 30.0
    lungs = [(z / 2, y * (0.48 + dy), x * (0.3 + dx)), (z / 2, y * (0.48 + dy), x * (0.7 + dx))]
    wobble = 0.2 * smooth_noise(rng, shape, max(shape) / 8)  # irregular lung outlines, one per patient
    for centre, scale in zip(lungs, lung):
        hu[_ellipsoid(shape, centre, (z * 0.48, y * 0.3 * scale, x * 0.15 * scale), wobble)] = -850.0
    soft = hu > -500  # soft-tissue density varies between patients, coarse and fine
    hu += (60.0 * smooth_noise(rng, shape, max(shape) / 3) + 40.0 * smooth_noise(rng, shape, max(shape) / 12)) * soft
    heart_r = 0.16 if findings.get("cardiomegaly") else 0.1
    heart_c = (z * 0.6, y * (0.55 + dy), x * (0.52 + dx))
    heart = _ellipsoid(shape, heart_c, (z * 0.25, y * heart_r, x * heart_r))
    hu[heart] = 40.0
    if findings.get("pericardial_effusion"):
        rim = _ellipsoid(shape, heart_c, (z * 0.28, y * (heart_r + 0.03), x * (heart_r + 0.03)))
        hu[rim & ~heart] = 12.0
    _draw_lung_findings(rng, hu, shape, lungs, findings)
    # A slightly rotated patient (±20° in-plane): with position and habitus, scans of different patients stay
    # perceptually distinct even in cohorts of hundreds (the corpus audit compares them pairwise).
    hu = ndimage.rotate(hu, rng.uniform(-20, 20), axes=(1, 2), reshape=False, order=1, cval=-1000.0)
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
        hu[_ellipsoid(shape, (c[0] + rng.uniform(-3, 3), c[1] - y * 0.08, c[2]), (2.5, y * 0.05, x * 0.05))] = 45.0
    if findings.get("arterial_wall_calcification"):
        aorta = _ellipsoid(shape, (z / 2, y * 0.62, x * 0.45), (z, y * 0.05, x * 0.05))
        inner = _ellipsoid(shape, (z / 2, y * 0.62, x * 0.45), (z, y * 0.035, x * 0.035))
        hu[aorta & ~inner] = 600.0
