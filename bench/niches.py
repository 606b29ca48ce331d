"""Niches with real labels for the synthesis / steering benches: seeds, a corpus, and judge training data that is
disjoint from both (so a judge never saw a seed or a corpus row).

Debian niches (from the local apt lists; `qscope.data.debian`):
- hamradio     section hamradio (+ tag hardware::hamradio): the demo's 20 seeds and 1,500-row corpus
- electronics  section electronics (+ tag field::electronics): 20 seeds, the demo corpus
- biology      tag field::biology (incl. bioinformatics): 20 seeds, the demo corpus
sae-probes niche:
- sports_news  AG News sports (162_agnews_1): 20 seeds, a 600-row AG News corpus (~25% sports)

Judge data: every other Debian package (one per first paragraph, as in scripts/build_demo_data.py), positives =
the niche's label, negatives = the rest capped at 25 per section (~1,200 rows) (so libs / python do not make "not a
library" the judge's rule); packages that carry the niche's tag outside its section count as positives.

    from niches import load_niche
    n = load_niche("hamradio")      # n.seeds, n.corpus, n.judge_texts, n.judge_labels, n.what, ...

The benches over niches keep their records under CACHE and end alike (`write_records`).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("QSCOPE_HOME", Path.home() / ".cache" / "qscope")).expanduser() / "bench"
MAX_CHARS = 1500
NEG_PER_SECTION = 25
N_JUDGE_PROBE = 500  # judge rows per class for sae-probes niches


@dataclass
class Niche:
    name: str
    seeds: list[dict]
    """{id, text}: the 16-20 examples a user would bring."""
    corpus: list[dict]
    """{id, text, label (bool: in the niche)}: background for targets / the seed classifier, and mining."""
    judge_texts: list[str]
    judge_labels: list[int]
    what: str = "Debian package descriptions"
    example_template: str = "Description: {text}"
    prompt_template: str = "Here are some {what}.\n\n{examples}\n\nDescription:"
    topic: str = ""
    """How a user would name the niche in a prompt ("software for amateur (ham) radio")."""
    stop_strings: list[str] = field(default_factory=lambda: ["\n\n", "Description:"])


def _cap(text: str, n: int = MAX_CHARS) -> str:
    if len(text) <= n:
        return text
    cut = text.rfind(" ", n * 3 // 4, n)
    return text[: cut if cut > 0 else n].rstrip()


def debian_packages() -> list[dict]:
    """All packages with a long description (cached as JSONL: reading the apt lists takes ~30 s)."""
    path = CACHE / "debian_packages.jsonl"
    if not path.exists():
        from qscope.data.debian import load_debian_packages

        recs = load_debian_packages()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for r in recs:
                f.write(
                    json.dumps({k: r[k] for k in ("package", "section", "tags", "text", "long_description")}) + "\n"
                )
        os.replace(tmp, path)
    return [json.loads(x) for x in open(path)]


def _dedup(records: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in records:
        key = " ".join(r["long_description"].split("\n\n", 1)[0].lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in open(path)]


DEBIAN = {
    "hamradio": dict(section="hamradio", tags=("hardware::hamradio",), topic="software for amateur (ham) radio"),
    "electronics": dict(
        section="electronics", tags=("field::electronics",), topic="software for electronics design and simulation"
    ),
    "biology": dict(
        section=None,
        tags=("field::biology", "field::biology:bioinformatics"),
        topic="software for biology and bioinformatics",
    ),
}


def _debian_niche(name: str) -> Niche:
    spec = DEBIAN[name]
    demo_seeds = _jsonl(REPO / "data/demo/seeds.jsonl")
    demo_corpus = _jsonl(REPO / "data/demo/corpus.jsonl")
    classify = _jsonl(REPO / "data/demo/classify_seeds.jsonl")
    pkgs = _dedup(debian_packages())

    def is_pos(r):
        return (spec["section"] is not None and r["section"] == spec["section"]) or any(
            t in r["tags"] for t in spec["tags"]
        )

    used = {r["id"] for r in demo_seeds + demo_corpus + classify}
    by_id = {r["package"]: r for r in pkgs}
    corpus = [
        {
            "id": r["id"],
            "text": r["text"],
            "label": is_pos(by_id[r["id"]]) if r["id"] in by_id else r["section"] == spec["section"],
        }
        for r in demo_corpus
    ]
    rng = random.Random(0)
    if name == "hamradio":
        seeds = [{"id": r["id"], "text": r["text"]} for r in demo_seeds]
    else:
        cand = [r for r in pkgs if is_pos(r) and r["package"] not in used]
        progs = [r for r in cand if "role::program" in r["tags"]]  # programs, not their -doc / -data packages
        rng.shuffle(progs)
        seeds = [{"id": r["package"], "text": _cap(r["text"])} for r in progs[:20]]
    used |= {s["id"] for s in seeds}
    pos = [r for r in pkgs if r["package"] not in used and is_pos(r)]
    neg_pool = [r for r in pkgs if r["package"] not in used and not is_pos(r)]
    rng.shuffle(neg_pool)
    per: dict[str, int] = {}
    neg = []
    for r in neg_pool:
        if per.get(r["section"], 0) < NEG_PER_SECTION:
            per[r["section"]] = per.get(r["section"], 0) + 1
            neg.append(r)
    texts = [_cap(r["text"]) for r in pos + neg]
    labels = [1] * len(pos) + [0] * len(neg)
    return Niche(name, seeds, corpus, texts, labels, topic=spec["topic"])


def _probe_niche(
    name: str, task: str, what: str, template: str, topic: str, n_corpus: int = 600, corpus_pos_fraction: float = 0.25
) -> Niche:
    sys.path.insert(0, str(REPO / "bench"))
    from efficacy import positive_label

    from qscope.data.probes import read_task

    rows = read_task(task)
    pos_label = positive_label([r["label"] for r in rows])
    rng = random.Random(0)
    idx = list(range(len(rows)))
    rng.shuffle(idx)
    pos = [i for i in idx if rows[i]["label"] == pos_label]
    neg = [i for i in idx if rows[i]["label"] != pos_label]
    seeds = [{"id": f"{task}:{i}", "text": rows[i]["text"]} for i in pos[:20]]
    n_pos = int(n_corpus * corpus_pos_fraction)
    c_idx = pos[20 : 20 + n_pos] + neg[: n_corpus - n_pos]
    rng.shuffle(c_idx)
    corpus = [{"id": f"{task}:{i}", "text": rows[i]["text"], "label": rows[i]["label"] == pos_label} for i in c_idx]
    j_idx = pos[20 + n_pos :][:N_JUDGE_PROBE] + neg[n_corpus - n_pos :][:N_JUDGE_PROBE]
    return Niche(
        name,
        seeds,
        corpus,
        [rows[i]["text"] for i in j_idx],
        [int(rows[i]["label"] == pos_label) for i in j_idx],
        what=what,
        example_template=template + " {text}",
        prompt_template="Here are some {what}.\n\n{examples}\n\n" + template,
        topic=topic,
        stop_strings=["\n\n", template],
    )


NICHES = ("hamradio", "electronics", "biology", "sports_news")


def load_niche(name: str) -> Niche:
    if name in DEBIAN:
        return _debian_niche(name)
    if name == "sports_news":
        return _probe_niche(name, "162_agnews_1", "news articles", "Article:", "sports news")
    raise KeyError(f"unknown niche {name!r}; choose from {NICHES}")


if __name__ == "__main__":
    for n in sys.argv[1:] or NICHES:
        x = load_niche(n)
        print(
            f"{n}: {len(x.seeds)} seeds, corpus {len(x.corpus)} ({sum(r['label'] for r in x.corpus)} in niche), "
            f"judge data {sum(x.judge_labels)} pos / {len(x.judge_labels) - sum(x.judge_labels)} neg"
        )


def write_records(
    records: list[dict], out: str | None, default: Path, report: Callable[[list[dict]], str], started: float
) -> None:
    """A bench's last step: its records as JSON to `out` (or `default`), then its report and a closing line."""
    path = Path(out) if out else default
    path.write_text(json.dumps(records, indent=1))
    print(report(records))
    print(f"\ntotal {time.time() - started:.0f}s; load average {os.getloadavg()[0]:.1f}; records in {path}")
