"""Nothing silent: what each source of a build gave, what it lost and why, and whether the build accepts it.

A source's *cases* are the samples its adapter found plus the rows or files it could not use. A case is *lost*
when the adapter reported it as a problem or its item was quarantined. A source that yields no record, or loses
more than `MAX_LOST_FRACTION` of its cases, makes the build incomplete: `corpus build` writes the corpus, then
exits non-zero with this table unless `--allow-partial` accepts it.

Cases that keep their labels but miss an optional annotation (a ROI mask, a contour file) are not lost: they are
counted per annotation kind, because only the tasks that need the annotation (grounding) are missing for them.
Every text here comes from scrubbed quarantine rows and adapter counts: it names no case.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

MAX_LOST_FRACTION = 0.2
DISCOVERY_ERRORS = ("source_problem", "duplicate_sample_id")
REASON_CHARS = 140


@dataclass
class SourceOutcome:
    """One source's account in a build (all counts; reasons are scrubbed texts)."""

    samples: int = 0  # usable samples the adapter found
    unusable: int = 0  # rows/files the adapter reported as problems
    quarantined: int = 0  # samples whose item failed (unreadable file, PHI in a record, ...)
    records: int = 0
    missing_annotations: dict[str, int] = field(default_factory=dict)  # kind -> samples kept without it
    reasons: dict[str, int] = field(default_factory=dict)  # "error: problem" -> count, most frequent first

    @property
    def cases(self) -> int:
        return self.samples + self.unusable

    @property
    def lost(self) -> int:
        return self.unusable + self.quarantined

    @property
    def lost_fraction(self) -> float:
        return self.lost / self.cases if self.cases else 1.0

    def verdict(self, max_lost: float = MAX_LOST_FRACTION) -> str:
        """'ok', or why the source makes the build incomplete."""
        if self.records == 0:
            return "no records"
        if self.lost_fraction > max_lost:
            return f"lost {self.lost_fraction:.0%} of its cases (limit {max_lost:.0%})"
        return "ok"

    def as_dict(self, max_lost: float = MAX_LOST_FRACTION) -> dict[str, Any]:
        return asdict(self) | {"cases": self.cases, "lost": self.lost, "lost_fraction": round(self.lost_fraction, 4),
                               "verdict": self.verdict(max_lost)}


def source_outcomes(names: Iterable[str], samples: Iterable[Any], quarantine: Iterable[dict[str, Any]],
                    records: Iterable[Any], missing: Mapping[str, Counter[str]] | None = None
                    ) -> dict[str, SourceOutcome]:
    """Per-source counts from the discovered samples, the (scrubbed) quarantine rows and the final records.
    `missing`: annotations lacking per source, as the items found them (default: as discovery found them)."""
    outcomes = {name: SourceOutcome() for name in names}
    reasons: dict[str, Counter[str]] = {name: Counter() for name in outcomes}
    for sample in samples:
        outcomes[sample.source].samples += 1
    if missing is None:
        missing = {name: Counter() for name in outcomes}
        for sample in samples:
            missing[sample.source].update(getattr(sample, "missing", ()))
    for row in quarantine:
        outcome = outcomes[row["source"]]
        if row["error"] in DISCOVERY_ERRORS:
            outcome.unusable += 1
        else:
            outcome.quarantined += 1
        reasons[row["source"]][f"{row['error']}: {row['problem']}"[:REASON_CHARS]] += 1
    for record in records:
        outcomes[record.source].records += 1
    for name, outcome in outcomes.items():
        outcome.missing_annotations = dict(sorted(missing.get(name, Counter()).items()))
        outcome.reasons = dict(sorted(reasons[name].items(), key=lambda kv: (-kv[1], kv[0])))
    return outcomes


def incomplete_sources(outcomes: dict[str, SourceOutcome], max_lost: float = MAX_LOST_FRACTION) -> list[str]:
    return [name for name, outcome in outcomes.items() if outcome.verdict(max_lost) != "ok"]


def outcome_table(outcomes: dict[str, dict[str, Any]], top_reasons: int = 3) -> str:
    """Plain-text table of `BuildSummary.sources` (the dicts of `SourceOutcome.as_dict`) with the top reasons."""
    lines = [f"{'source':<16} {'cases':>7} {'lost':>7} {'records':>8} {'no-annot':>8}  verdict"]
    for name, row in outcomes.items():
        no_annot = sum(row["missing_annotations"].values())
        lines.append(f"{name:<16} {row['cases']:>7} {row['lost']:>7} {row['records']:>8} {no_annot:>8}  "
                     f"{row['verdict']}")
        for kind, count in row["missing_annotations"].items():
            lines.append(f"{'':<18}kept without {kind}: {count} (grounding tasks not made for them)")
        for reason, count in list(row["reasons"].items())[:top_reasons]:
            lines.append(f"{'':<18}{count} x {reason}")
    return "\n".join(lines)
