"""PHI scanner throughput: milliseconds per record text with the values of a few thousand patients loaded.

Ours (`PhiScanner.check_text`: one prefix-tree alternation per boundary class) against the obvious baseline, one
compiled regex per value with the same boundaries, measured in the same run on the same texts, rounds interleaved
(order rotated), medians; the load average is recorded and the result marked noisy above the core count. Which texts are
flagged is compared too: a faster scanner that missed a leak would be worthless.

    python benchmarks/deid_scanner.py [--patients 2000] [--texts 200]   # minutes: the baseline is slow
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_record, time_interleaved, write_result  # noqa: E402

from breastgpt.deid.phi_values import normalise  # noqa: E402
from breastgpt.deid.scanner import _BOUNDARIES, PhiScanner, _shape  # noqa: E402

SYLLABLES = ["ka", "lo", "mir", "ven", "dor", "sa", "tel", "quin", "bra", "the", "wick", "an", "ros", "mel", "gar"]
WORDS = ["the", "left", "breast", "shows", "a", "mass", "with", "spiculated", "margins", "birads", "density",
         "no", "calcification", "axillary", "node", "benign", "follow", "up", "in", "months", "2.25.1234", "0.5"]


def fake_name(rng: random.Random) -> str:
    return "^".join("".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize() for _ in range(2))


def build_scanner(patients: int, rng: random.Random) -> tuple[PhiScanner, list[str]]:
    scanner, planted = PhiScanner(), []
    for index in range(patients):
        name, patient_id = fake_name(rng), f"MRN{rng.randrange(10**6, 10**7)}"
        birth = f"{rng.randrange(1930, 2000)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        for kind, value in (("patient_name", name), ("patient_id", patient_id), ("birth_date", birth)):
            scanner.add_value(kind, value)
        if index % 50 == 0:
            planted.append(patient_id)
    return scanner, planted


def build_texts(count: int, planted: list[str], rng: random.Random) -> list[str]:
    texts = []
    for index in range(count):
        words = [rng.choice(WORDS) for _ in range(50)]
        if index % 10 == 0:
            words.insert(rng.randrange(len(words)), planted[index % len(planted)])
        texts.append(" ".join(words))
    return texts


def baseline_patterns(scanner: PhiScanner) -> list[re.Pattern[str]]:
    return [re.compile(_BOUNDARIES[_shape(value, kind)][0] + re.escape(value) + _BOUNDARIES[_shape(value, kind)][1])
            for value, kind in scanner._kinds.items()]


def flagged_baseline(patterns: list[re.Pattern[str]], texts: list[str]) -> list[bool]:
    flags = []
    for text in texts:
        normalised = normalise(text)
        flags.append(any(pattern.search(normalised) for pattern in patterns))
    return flags


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    scanner, planted = build_scanner(args.patients, rng)
    texts = build_texts(args.texts, planted, rng)
    start = time.perf_counter()
    scanner.check_text("warm")  # compiles the prefix-tree patterns
    compile_seconds = time.perf_counter() - start
    patterns = baseline_patterns(scanner)
    ours_flags = [bool(scanner.check_text(text)) for text in texts]
    base_flags = flagged_baseline(patterns, texts)
    assert ours_flags == base_flags, "the scanners disagree on which texts leak"
    loads = [os.getloadavg()[0]]
    times = time_interleaved({"ours": lambda: [scanner.check_text(text) for text in texts],
                              "baseline": lambda: flagged_baseline(patterns, texts)}, args.repeats)
    loads.append(os.getloadavg()[0])
    ours, base = times["ours"], times["baseline"]
    ours_ms = statistics.median(ours) / len(texts) * 1000
    base_ms = statistics.median(base) / len(texts) * 1000
    payload = {"values": len(scanner), "texts": len(texts), "flagged_texts": sum(ours_flags),
               "same_texts_flagged": True, "compile_seconds": round(compile_seconds, 3),
               "ms_per_text": {"ours_prefix_tree": round(ours_ms, 4), "baseline_regex_per_value": round(base_ms, 4)},
               "speedup": round(base_ms / ours_ms, 1), "rounds": args.repeats, **load_record(loads)}
    print(payload)
    print("wrote", write_result("deid_scanner", payload))


if __name__ == "__main__":
    main()
