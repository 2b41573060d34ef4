"""Write a synthetic cohort: one folder per source, each in that dataset's own on-disk layout, plus a manifest.

`generate(out, patients, sources, seed)` is deterministic: the same arguments give byte-identical label tables
and pixel content (file modification times aside)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Callable

from breastgpt.artifacts import atomic_write_json as _write_json
from breastgpt.synth.cases import SynthConfig, Truth
from breastgpt.synth.mammo_dicom import gen_bmcd, gen_cbis_ddsm, gen_embed, gen_inbreast, gen_rsna_screening, gen_vindr_mammo
from breastgpt.synth.mammo_raster import gen_cdd_cesm, gen_csaw_m, gen_dmid, gen_kau_bcmd, gen_mias
from breastgpt.synth.pathway import gen_pathway_cohort
from breastgpt.synth.slides import gen_bcnb, gen_histai_breast, gen_tcga_brca
from breastgpt.synth.ultrasound import gen_bus_cot, gen_busi
from breastgpt.synth.volumes import gen_ct_cohort, gen_ct_rate, gen_mri_cohort

Generator = Callable[[Path, SynthConfig], list[Truth]]
GENERATORS: dict[str, Generator] = {
    "cbis_ddsm": gen_cbis_ddsm, "vindr_mammo": gen_vindr_mammo, "inbreast": gen_inbreast, "embed": gen_embed,
    "rsna_screening": gen_rsna_screening, "csaw_m": gen_csaw_m, "cdd_cesm": gen_cdd_cesm, "dmid": gen_dmid,
    "kau_bcmd": gen_kau_bcmd, "mias": gen_mias, "bmcd": gen_bmcd, "bus_cot": gen_bus_cot, "busi": gen_busi,
    "ct_rate": gen_ct_rate, "tcga_brca": gen_tcga_brca, "bcnb": gen_bcnb, "histai_breast": gen_histai_breast,
    "mri_cohort_a": lambda root, config: gen_mri_cohort(root, config, stream=15),
    "mri_cohort_b": lambda root, config: gen_mri_cohort(root, config, stream=19),
    "ct_cohort": gen_ct_cohort,
    "pathway_cohort": gen_pathway_cohort,
}


def _generate_source(name: str, root: Path, config: SynthConfig) -> int:
    truths = GENERATORS[name](root, config)
    _write_json(root.parent / ".truth" / f"{name}.json", [t.as_dict() for t in truths])
    return len(truths)


def generate(out: Path, patients: int, sources: list[str] | None = None, seed: int = 0, full_size: bool = False,
             progress: Callable[[str], None] | None = None, workers: int = 1) -> dict[str, Path]:
    """Write `out/<source>/...` for each source (all by default); return {source: root}.

    Each source draws from its own seeded stream, so `workers` > 1 (sources in parallel processes) writes the
    same files as one worker.
    """
    names = list(GENERATORS) if not sources else list(sources)
    unknown = [n for n in names if n not in GENERATORS]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; known: {sorted(GENERATORS)}")
    config = SynthConfig(patients=patients, seed=seed, full_size=full_size)
    roots = {name: Path(out) / name for name in names}
    counts: dict[str, int] = {}
    if workers <= 1 or len(names) <= 1:
        for name in names:
            counts[name] = _generate_source(name, roots[name], config)
            if progress:
                progress(name)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(workers, len(names))) as pool:
            futures = {pool.submit(_generate_source, name, roots[name], config): name for name in names}
            for future in as_completed(futures):
                counts[futures[future]] = future.result()
                if progress:
                    progress(futures[future])
    _write_json(Path(out) / "synth_manifest.json", {
        "generator": "breastgpt.synth", "seed": seed, "patients_per_source": patients, "full_size": full_size,
        "sources": {n: {"root": str(roots[n]), "samples": counts[n]} for n in names},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}})
    return roots
