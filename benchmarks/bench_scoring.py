"""Benchmark: score a bench-sized synthetic run (12,182 items, ~3,000 patients) with 10,000 patient resamples.

Compares the vectorised batched bootstrap with a naive per-resample Python-loop bootstrap computing the same
intervals, measured on a few resamples in the same run and extrapolated linearly to 10,000 (said so in the output).
Embedding similarity is timed separately on a sample of open answers and extrapolated, because its cost is the
sentence model's, not the scorer's.

    python benchmarks/bench_scoring.py            # writes benchmarks/results/bench_scoring.json
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from breastgpt.bench.aggregate import GROUPINGS, METRICS, aggregate, full_rows  # noqa: E402
from breastgpt.bench.items import item_from_record, write_jsonl_atomic  # noqa: E402
from breastgpt.bench.report import write_report  # noqa: E402
from breastgpt.bench.scoring import ScoreConfig, load_run, score_responses  # noqa: E402
from breastgpt.bench.text_metrics import embedding_cosine  # noqa: E402

N_ITEMS, N_PATIENTS, N_RESAMPLES, NAIVE_RESAMPLES = 12_182, 3_000, 10_000, 20
CELLS = [("screening", "ultrasound", "bus_cot", 0.17), ("screening", "ct", "ct_rate", 0.12),
         ("screening", "mammography", "vindr", 0.29), ("diagnosis", "ultrasound", "bus_cot", 0.08),
         ("diagnosis", "mammography", "cbis_ddsm", 0.18), ("diagnosis", "mri", "institutional", 0.10),
         ("treatment", "mri", "institutional", 0.03), ("treatment", "pathology", "tcga_brca", 0.03)]
FAMILIES = [("closed_vqa", 0.62), ("open_vqa", 0.2), ("grounding", 0.1), ("report", 0.08)]
BIRADS = {"name": "birads", "kind": "ordinal", "option_values": [1, 2, 3, 4, 5], "positive_threshold": 4}
FINDINGS = ["oval mass", "circumscribed margin", "posterior shadowing", "calcifications", "no axillary lymphadenopathy"]


def synth_records(rng: np.random.Generator) -> tuple[list[dict], np.ndarray]:
    cell_idx = rng.choice(len(CELLS), size=N_PATIENTS, p=[c[3] for c in CELLS])
    patient = rng.integers(0, N_PATIENTS, N_ITEMS)
    family = rng.choice([f for f, _ in FAMILIES], size=N_ITEMS, p=[p for _, p in FAMILIES])
    records = []
    for i in range(N_ITEMS):
        stage, modality, source, _ = CELLS[cell_idx[patient[i]]]
        rec = {"id": f"i{i:05d}", "source": source, "patient_key": f"p{patient[i]:04d}", "stage": stage,
               "modality": modality, "task_family": str(family[i]), "template_id": f"t{i % 136}",
               "answer_provenance": "label" if family[i] in ("closed_vqa", "grounding") else (
                   "generated" if i % 3 else "report"),
               "messages": [{"role": "user", "content": f"<image>question {i}"}], "images": [f"x/{i}.png"]}
        rec["label"] = _label(str(family[i]), i, rng)
        records.append(rec)
    return records, patient


def _label(family: str, i: int, rng: np.random.Generator) -> dict:
    if family == "closed_vqa":
        if i % 4 == 0:
            return {"options": [f"BI-RADS {k}" for k in range(1, 6)], "answer_index": int(rng.integers(0, 5)),
                    "clinical_target": BIRADS}
        return {"options": ["Benign", "Malignant", "Normal", "Indeterminate"], "answer_index": int(rng.integers(0, 4))}
    if family == "grounding":
        x, y = rng.integers(0, 700, 2)
        return {"box": [int(x), int(y), int(x + 200), int(y + 200)]}
    picked = [FINDINGS[k] for k in rng.choice(len(FINDINGS), 2, replace=False)]
    return {"answer": "The image shows an " + " and ".join(picked) + ".", "key_findings": picked}


def synth_responses(records: list[dict], patient: np.ndarray, rng: np.random.Generator) -> list[dict]:
    skill = rng.normal(0.8, 1.0, N_PATIENTS)  # patient random effect on the logit of answering right
    rows = []
    for rec, p in zip(records, patient):
        right = rng.random() < 1 / (1 + np.exp(-skill[p]))
        lab = rec["label"]
        if rec["task_family"] == "closed_vqa":
            k = lab["answer_index"] if right else (lab["answer_index"] + 1) % len(lab["options"])
            text = "I cannot tell." if rng.random() < 0.03 else f"Answer: {'ABCDE'[k]}"
            row = {"item_id": rec["id"], "response": text, "model": "synthetic-8b"}
            if "clinical_target" in lab:
                row["score"] = float(np.clip((k + rng.normal(0, 1)) / 4, 0, 1))
            rows.append(row)
            if rng.random() < 0.3:
                rows.append({"item_id": rec["id"], "response": f"Answer: {'ABCD'[int(rng.integers(0, 4))]}",
                             "model": "synthetic-8b", "variant": "no_image"})
        elif rec["task_family"] == "grounding":
            b = lab["box"]
            shift = 20 if right else 150
            rows.append({"item_id": rec["id"], "model": "synthetic-8b",
                         "response": f"[{b[0] + shift},{b[1]},{b[2] + shift},{b[3]}]"})
        else:
            text = lab["answer"] if right else "No abnormality is seen."
            rows.append({"item_id": rec["id"], "response": text, "model": "synthetic-8b"})
    return rows


def naive_bootstrap(full, n_resamples: int, seed: int) -> float:
    """The straightforward implementation: per resample, draw patients, gather their items, recompute every
    group × metric mean in Python/numpy. Returns seconds."""
    patients = full["patient_key"].to_numpy()
    by_patient: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        by_patient.setdefault(p, []).append(i)
    keys = sorted(by_patient)
    groups = []
    for cols in GROUPINGS.values():
        for key in ([()] if not cols else sorted(set(map(tuple, full[list(cols)].to_numpy().tolist())))):
            mask = np.ones(len(full), bool)
            for c, v in zip(cols, key):
                mask &= full[c].to_numpy() == v
            groups.append(mask)
    columns = [full[c].to_numpy(float) for c in METRICS.values()]
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(n_resamples):
        picks = rng.integers(0, len(keys), len(keys))
        idx = np.array([i for k in picks for i in by_patient[keys[k]]])
        for mask in groups:
            sel = idx[mask[idx]]
            for values in columns:
                v = values[sel]
                v = v[np.isfinite(v)]
                _ = v.mean() if v.size else np.nan
    return time.perf_counter() - start


def main() -> None:
    rng = np.random.default_rng(8)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    records, patient = synth_records(rng)
    responses = synth_responses(records, patient, rng)
    timings["generate_s"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        write_jsonl_atomic(Path(tmp) / "bench.jsonl", records)
        write_jsonl_atomic(run_dir / "responses.jsonl", responses)
        config = ScoreConfig(n_resamples=N_RESAMPLES, seed=0, embeddings=False)
        t = time.perf_counter()
        items = [item_from_record(r) for r in records]
        run = load_run(run_dir, items)
        timings["load_s"] = time.perf_counter() - t
        t = time.perf_counter()
        df = score_responses(items, run, config)
        timings["score_items_s"] = time.perf_counter() - t
        t = time.perf_counter()
        scores = aggregate(items, run, df, config)
        timings["aggregate_with_intervals_s"] = time.perf_counter() - t
        t = time.perf_counter()
        write_report(scores, Path(tmp) / "report", [Path(tmp) / "bench.jsonl", *run.files])
        timings["write_report_s"] = time.perf_counter() - t
    timings["total_s"] = sum(v for k, v in timings.items() if k != "generate_s")
    full = full_rows(df, items)
    naive_s = naive_bootstrap(full, NAIVE_RESAMPLES, seed=0)
    n_intervals = len(scores.groups)
    labels = {rec["id"]: rec["label"] for rec in records}
    sample = [(r["response"], labels[r["item_id"]]["answer"]) for r in responses
              if "answer" in labels[r["item_id"]]][:300]
    embedding_cosine(sample[:4], [b for _, b in sample[:4]])  # load the model outside the timing
    t = time.perf_counter()
    embedding_cosine([a for a, _ in sample], [b for _, b in sample])
    emb_per_pair = (time.perf_counter() - t) / len(sample)
    n_open = int(full["task_family"].isin(["open_vqa", "report"]).sum())
    result = {
        "benchmark": "bench_scoring",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m": os.getloadavg()[0]},
        "workload": {"items": len(items), "patients": int(full["patient_key"].nunique()),
                     "responses": len(responses), "bootstrap_resamples": N_RESAMPLES,
                     "group_metric_intervals": n_intervals, "clinical_targets": len(scores.clinical),
                     "shortcut_gaps": len(scores.shortcuts)},
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "target_total_s": 30.0,
        "baseline_naive_loop": {
            "resamples_measured": NAIVE_RESAMPLES, "seconds_measured": round(naive_s, 3),
            "extrapolated_seconds_for_10000": round(naive_s * N_RESAMPLES / NAIVE_RESAMPLES, 1),
            "note": "linear extrapolation from the measured resamples; same groups × metrics as the batched path",
            "speedup_vs_batched_aggregate": round(naive_s * N_RESAMPLES / NAIVE_RESAMPLES
                                                  / timings["aggregate_with_intervals_s"], 1)},
        "embedding_similarity": {"pairs_measured": len(sample), "seconds_per_pair": round(emb_per_pair, 5),
                                 "open_items": n_open,
                                 "extrapolated_seconds_for_open_items": round(emb_per_pair * n_open, 1),
                                 "note": "timed separately (embeddings=False above); CPU sentence-model cost"},
        "paper_row": {k: (None if v is None else round(100 * v["point"], 2)) for k, v in scores.paper_row.items()},
    }
    out = Path(__file__).resolve().parent / "results" / "bench_scoring.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(".bench_scoring.json.partial")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    tmp_out.replace(out)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
