"""Corpus statistics: counts per stage / modality / family / source / template, answer-letter balance and
answer-provenance shares; saved as JSON plus a PNG chart."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

from breastgpt.corpus.records import Record, atomic_write_bytes, atomic_write_json, read_records_jsonl


def letter_balance(records: Iterable[Record], *, margin: float = 0.05, alpha: float = 1e-3) -> list[dict[str, Any]]:
    """Per option count n: how often each letter is correct. A group is flagged when some letter's share
    exceeds 1/n + margin AND a one-sided binomial test says the excess is not chance (p < alpha), so small
    corpora are not flagged for noise while a systematic bias (e.g. always 'A') is caught at once."""
    from scipy.stats import binomtest

    groups: dict[int, Counter] = defaultdict(Counter)
    for r in records:
        if r.task_family == "closed_vqa":
            groups[len(r.label["options"])][r.label["answer_index"]] += 1
    out = []
    for n, counts in sorted(groups.items()):
        total = sum(counts.values())
        letter, top = max(((i, counts.get(i, 0)) for i in range(n)), key=lambda kv: kv[1])
        p_value = binomtest(top, total, 1 / n, alternative="greater").pvalue
        share = top / total
        out.append({"n_options": n, "items": total,
                    "shares": {"ABCDEF"[i]: round(counts.get(i, 0) / total, 4) for i in range(n)},
                    "max_letter": "ABCDEF"[letter], "max_share": round(share, 4), "limit": round(1 / n + margin, 4),
                    "p_value": float(p_value), "flagged": bool(share > 1 / n + margin and p_value < alpha)})
    return out


def option_set_leak(records: Iterable[Record], *, margin: float = 0.10, alpha: float = 1e-3) -> list[dict[str, Any]]:
    """Per closed template: does the option set tell the answer to a reader that never looks at the media?

    Two text-only baselines answer every closed record outside the training split: the template's most frequent
    training answer ("prior"), and the *offered* option most often correct in training ("offered-option prior").
    They differ only where an option set drawn around the answer carries it (a value shown is likelier to be the
    answer than one left out; docs/corpus.md, "Option sets"). A template is flagged when the offered-option prior
    beats the prior by more than `margin` AND a one-sided sign test over the items where the two disagree says the
    excess is not chance (p < alpha), so a few lucky items in a small corpus are not flagged.
    """
    from scipy.stats import binomtest

    closed = [r for r in records if r.task_family == "closed_vqa"]
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in closed:
        if r.split == "train":
            counts[r.template_id][r.label["options"][r.label["answer_index"]]] += 1
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # items, prior, offered, wins, losses
    for r in closed:
        if r.split == "train" or not counts.get(r.template_id):
            continue
        seen = counts[r.template_id]
        answer = r.label["options"][r.label["answer_index"]]
        prior = max(seen, key=lambda a: (seen[a], a)) == answer
        offered = max(r.label["options"], key=lambda o: (seen.get(o, 0), o)) == answer
        t = tallies[r.template_id]
        t[0], t[1], t[2], t[3], t[4] = t[0] + 1, t[1] + prior, t[2] + offered, t[3] + (offered and not prior), \
            t[4] + (prior and not offered)
    out = []
    for template, (items, prior, offered, wins, losses) in sorted(tallies.items()):
        gain = (offered - prior) / items
        p_value = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
        out.append({"template": template, "items": items, "prior": round(prior / items, 4),
                    "offered_option_prior": round(offered / items, 4), "gain": round(gain, 4),
                    "p_value": float(p_value), "flagged": bool(gain > margin and p_value < alpha)})
    return out


def corpus_stats(records: list[Record]) -> dict[str, Any]:
    def count(key) -> dict[str, int]:
        return dict(sorted(Counter(key(r) for r in records).items()))

    provenance = count(lambda r: r.answer_provenance.kind)
    total = max(len(records), 1)
    return {
        "records": len(records),
        "patients": len({(r.source, r.patient_key) for r in records}),
        "media": len({m.sha256 or m.path for r in records for m in r.media}),
        "by_stage": count(lambda r: r.stage), "by_modality": count(lambda r: r.modality),
        "by_family": count(lambda r: r.task_family), "by_source": count(lambda r: r.source),
        "by_split": count(lambda r: r.split), "by_template": count(lambda r: r.template_id),
        "by_stage_modality": count(lambda r: f"{r.stage}/{r.modality}"),
        "provenance": provenance, "provenance_share": {k: round(v / total, 4) for k, v in provenance.items()},
        "letter_balance": letter_balance(records),
    }


def plot_stats(stats: dict[str, Any], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("by stage / modality", stats["by_stage_modality"]), ("by task family", stats["by_family"]),
              ("by source", stats["by_source"]), ("answer provenance", stats["provenance"])]
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.5))
    for ax, (title, data) in zip(axes, panels):
        ax.barh(list(data), list(data.values()), color="#4c72b0")
        ax.set_title(title)
        ax.invert_yaxis()
    ax = axes[-1]
    for group in stats["letter_balance"]:
        letters = list(group["shares"])
        ax.plot(letters, list(group["shares"].values()), marker="o", label=f"n={group['n_options']}")
        ax.axhline(group["limit"], linestyle=":", linewidth=0.8)
    ax.set_title("closed answers: share correct per letter")
    ax.legend(fontsize=8)
    fig.suptitle(f"BreastStage corpus: {stats['records']} records, {stats['patients']} patients")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def write_stats(corpus_dir: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """Compute stats of a build folder; write corpus_stats.json and corpus_stats.png next to it (or in out_dir)."""
    corpus_dir = Path(corpus_dir)
    path = corpus_dir / "records.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found — point `corpus stats` at a folder written by `corpus build`")
    stats = corpus_stats(read_records_jsonl(path))
    out_dir = Path(out_dir or corpus_dir)
    atomic_write_json(out_dir / "corpus_stats.json", stats)
    plot_stats(stats, out_dir / "corpus_stats.png")
    return stats
